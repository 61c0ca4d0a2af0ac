"""`llmscen report`: re-render saved results offline, optionally with other SLOs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from junitparser import JUnitXml
from test_report_samples import build_results, three_slos

from llmscen.cli.main import cli
from llmscen.metrics.results import RunResults


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "results.json"
    build_results(slos=three_slos()[:2]).save(path)
    return path


def test_rerenders_every_output(saved: Path, tmp_path: Path) -> None:
    html, junit, md = tmp_path / "r.html", tmp_path / "j.xml", tmp_path / "s.md"
    result = invoke("report", str(saved), "--html", str(html), "--junit", str(junit),
                    "--summary", str(md))
    assert result.exit_code == 0, result.output
    assert "PASSED: 2 SLOs, 1 expectations, 2 requests" in result.output
    assert '<div class="word">PASSED</div>' in html.read_text()
    # the run, two SLOs, two requests and one expectation
    assert next(iter(JUnitXml.fromfile(str(junit)))).tests == 6
    assert md.read_text().startswith("## ✅ PASSED: synthetic")


def test_without_outputs_writes_report_html_beside_the_results(saved: Path) -> None:
    result = invoke("report", str(saved))
    assert result.exit_code == 0, result.output
    assert (saved.parent / "report.html").exists()
    assert f"wrote {saved.parent / 'report.html'}" in result.output


def test_saved_failures_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    build_results(slos=three_slos()).save(path)
    result = invoke("report", str(path), "--html", str(tmp_path / "r.html"))
    assert result.exit_code == 1
    assert "FAILED: 1 of 3 SLOs failed" in result.output


def test_slos_file_rejudges_the_run(saved: Path, tmp_path: Path) -> None:
    slos = tmp_path / "slos.yaml"
    slos.write_text("slos:\n"
                    "  - latency.p95 < 1s\n"
                    "  - {assert: 'ttft.p99 < 10ms', phase: steady, request: chat}\n"
                    "  - {assert: 'error_rate < 1%', window: 2s}\n")
    junit = tmp_path / "j.xml"
    result = invoke("report", str(saved), "--slos", str(slos), "--junit", str(junit))
    assert result.exit_code == 1, result.output
    assert "FAILED: 1 of 3 SLOs failed" in result.output
    cases = [c for c in next(iter(JUnitXml.fromfile(str(junit)))) if c.classname.endswith(".slo")]
    assert [(c.name, c.is_passed) for c in cases] == [
        ("latency.p95 < 1s", True),
        ("ttft.p99 < 10ms [phase=steady, request=chat]", False),
        ("error_rate < 1% [window=2.0]", True)]
    assert RunResults.load(saved).slos[0].text == "latency.p95 < 5s"   # the file is untouched


def test_slos_file_passing_exits_0(saved: Path, tmp_path: Path) -> None:
    slos = tmp_path / "slos.yaml"
    slos.write_text("slos: ['latency.p99 < 10s', {assert: 'throughput > 1/s', phase: ramp}]\n")
    result = invoke("report", str(saved), "--slos", str(slos), "--html",
                    str(tmp_path / "r.html"))
    assert result.exit_code == 0, result.output


def test_a_scenario_file_works_as_slos_file(tmp_path: Path) -> None:
    results = build_results(phases=(("warmup", 2.0, True), ("ramp", 2.0, False),
                                     ("peak", 2.0, False), ("soak", 2.0, False)),
                            requests=("codegen", "short-answer"))
    path = tmp_path / "results.json"
    results.save(path)
    result = invoke("report", str(path), "--slos", "scenarios/peak.yaml", "--html",
                    str(tmp_path / "r.html"))
    assert result.exit_code == 0, result.output
    assert "PASSED: 6 SLOs" in result.output


def test_bad_slos_file_lists_every_problem_with_positions(saved: Path, tmp_path: Path) -> None:
    slos = tmp_path / "slos.yaml"
    slos.write_text("slos:\n"
                    "  - latncy.p95 < 1s\n"
                    "  - {assert: 'ttft.p99 < 1s', phase: stedy}\n"
                    "  - {assert: 'itl.p50 < 1s', reqest: chat}\n"
                    "  - 5\n")
    result = invoke("report", str(saved), "--slos", str(slos))
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    out = result.output
    assert f"{slos}:2:5: unknown metric 'latncy'; did you mean latency?" in out
    assert f"{slos}:3:38: unknown phase 'stedy'; did you mean 'steady'?" in out
    assert "(these results have: ramp, steady, warmup)" in out
    assert f"{slos}:4:30: unknown key 'reqest'" in out
    assert f"{slos}:5:5: expected a string or a mapping, got 5" in out
    assert "4 problems in the SLO file" in out
    assert "Traceback" not in out
    assert not (saved.parent / "report.html").exists()


@pytest.mark.parametrize(("content", "message"), [
    ("latency.p95 < 1s\n", "expected an `slos:` list"),
    ("slos: {a: 1}\n", "expected an `slos:` list"),
    ("slos: [\n", "slos.yaml:"),
])
def test_slos_file_must_hold_a_list(saved: Path, tmp_path: Path, content: str,
                                    message: str) -> None:
    slos = tmp_path / "slos.yaml"
    slos.write_text(content)
    result = invoke("report", str(saved), "--slos", str(slos))
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.parametrize(("content", "message"), [
    (None, "No such file or directory"),
    (b"{not json", "not valid JSON"),
    (b'{"meta": {}}', "not an llmscen results file"),
    (b'{"schema_version": 99, "meta": {"scenario": "x"}}', "upgrade llmscen"),
    (b'{"schema_version": 1, "meta": {}}', "invalid results file"),
])
def test_unreadable_results_exit_2(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "results.json"
    if content is not None:
        path.write_bytes(content)
    result = invoke("report", str(path))
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_unwritable_output_exits_2(saved: Path, tmp_path: Path) -> None:
    result = invoke("report", str(saved), "--html", str(tmp_path / "missing" / "r.html"))
    assert result.exit_code == 2
    assert "cannot write" in result.output


def test_report_runs_as_a_real_subprocess(saved: Path, tmp_path: Path) -> None:
    html = tmp_path / "r.html"
    proc = subprocess.run([sys.executable, "-m", "llmscen.cli.main", "report", str(saved),
                           "--html", str(html)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert html.stat().st_size > 10_000


def test_slos_may_name_a_flow_by_its_steps_prefix(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    build_results(requests=("login-flow.login", "login-flow.models")).save(path)
    slos = tmp_path / "slos.yaml"
    slos.write_text("slos: [{assert: 'latency.p99 < 10s', request: login-flow}]\n")
    result = invoke("report", str(path), "--slos", str(slos), "--junit", str(tmp_path / "j.xml"))
    assert result.exit_code == 0, result.output


def test_slos_file_is_checked_like_a_scenarios_slos(saved: Path, tmp_path: Path) -> None:
    """Windows, units and scopes: what `validate` refuses, `report --slos` refuses too, before
    judging anything (these windows used to pass and then crash)."""
    slos = tmp_path / "slos.yaml"
    slos.write_text("slos:\n"
                    "  - {assert: itl.p95 < 50ms, window: 10s}\n"
                    "  - {assert: error_rate < 1%, window: 0.5s}\n"
                    "  - latency.p95 < 2000\n"
                    "  - error_rate < 1\n"
                    "  - {assert: latency.p95 < 1s, window: 2s, phase: steady}\n")
    result = invoke("report", str(saved), "--slos", str(slos))
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"llmscen: {slos}:2:14: itl is not kept per second, so it cannot have a window; "
        "windows take: check_failure_rate, error_rate, goodput, latency, "
        "output_token_throughput, success_rate, throughput, ttft",
        f"{slos}:3:39: a window is a whole number of seconds (1s or more), not 0.5s",
        f"{slos}:4:19: latency is a duration and its threshold needs a unit: write 2000ms or 2s",
        f"{slos}:5:18: error_rate is a fraction and 1 means 100 %: write 1% or 100%",
        "4 problems in the SLO file"]
    assert not (saved.parent / "report.html").exists()


def test_a_scenario_serves_as_the_slo_file_whatever_its_other_sections_hold(
        saved: Path, tmp_path: Path) -> None:
    """Only `slos:` is read: an unset variable elsewhere is not the report's business."""
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("targets: {chat: {plugin: openai, url: '${LLMSCEN_TEST_UNSET_URL}'}}\n"
                        "phases: not even a list\n"
                        "slos:\n  - latency.p95 < 10s\n  - {assert: error_rate < 5%, "
                        "window: 2s}\n")
    result = CliRunner().invoke(cli, ["report", str(saved), "--slos", str(scenario)],
                                env={"LLMSCEN_TEST_UNSET_URL": None})
    assert result.exit_code == 0, result.output
    assert "PASSED: 2 SLOs" in result.output
    scenario.write_text("slos:\n  - latency.p95 < ${LLMSCEN_TEST_UNSET_MS}\n")
    result = CliRunner().invoke(cli, ["report", str(saved), "--slos", str(scenario)],
                                env={"LLMSCEN_TEST_UNSET_MS": None})
    assert result.exit_code == 2
    assert f"{scenario}:2:19: environment variable LLMSCEN_TEST_UNSET_MS is not set" in \
        result.output
    assert "1 problem in the SLO file" in result.output
