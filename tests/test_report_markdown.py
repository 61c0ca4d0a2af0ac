"""The Markdown summary for CI step summaries."""

from __future__ import annotations

from pathlib import Path

from test_report_samples import XSS_OUTPUT, build_results, three_slos

from llmscen.report.markdown import cell, fenced, summary_markdown, write_summary


def test_summary_has_verdict_slos_phases_and_failures() -> None:
    results = build_results(errors_every=9, failing_check=True, slos=three_slos(),
                            notes=("load generator saturated",))
    text = summary_markdown(results)
    lines = text.splitlines()
    assert lines[0] == "## ❌ FAILED: synthetic"
    assert "2 of 3 SLOs failed" in lines[2]
    assert "> **Note:** load generator saturated" in text
    assert "| ✅ | `latency.p95 < 5s` | whole run |" in text
    assert "| ❌ | `ttft.p99 < 10ms` | phase steady, request chat |" in text
    assert "| **whole run** | 200 |" in text
    assert "| warmup | 40 |" in text and "| steady | 120 |" in text
    assert "### Failed expectations" in text and "**chat · contains**: 3 of" in text
    assert "### Errors" in text and "| chat | http 503 | 13 | warmup, ramp, steady |" in text


def test_untrusted_text_cannot_inject_markup_or_break_tables() -> None:
    results = build_results(errors_every=9, failing_check=True)
    text = summary_markdown(results)
    outside_fences = text.split("```")[::2]
    for part in outside_fences:
        assert "<script>" not in part and "<b>" not in part
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert f"```text\n{XSS_OUTPUT}\n```" in text
    assert cell("a | b\nc") == "a \\| b c"


def test_a_fence_is_longer_than_any_backtick_run_inside() -> None:
    block = fenced("```python\nx = 1\n```")
    assert block.startswith("````text\n") and block.endswith("\n````")


def test_write_summary_appends(tmp_path: Path) -> None:
    results = build_results()
    path = tmp_path / "step-summary.md"
    path.write_text("# earlier step\n")
    write_summary(results, path)
    text = path.read_text()
    assert text.startswith("# earlier step\n## ✅ PASSED: synthetic")
