"""The HTML report: self-contained, escaped, and showing what the results hold."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_report_samples import XSS_OUTPUT, build_results, slo, three_slos

from llmscen.assertions.verdict import conclude
from llmscen.metrics.results import Meta, PhaseInfo, Reason, RunResults, TargetInfo
from llmscen.report.html import render_html, write_html


class Page(HTMLParser):
    """Tags with their attributes, and each text with the classes of its enclosing tags."""

    VOID = frozenset({"meta", "br", "img", "input", "link", "hr", "source", "wbr"})

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[tuple[str, tuple[str, ...]]] = []
        self._open: list[tuple[str, str]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self._open.append((tag, dict(attrs).get("class") or ""))

    def handle_endtag(self, tag: str) -> None:
        if any(t == tag for t, _ in self._open):
            while self._open.pop()[0] != tag:
                pass

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.texts.append((data, tuple(c for _, c in self._open)))

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for t, attrs in self.tags if t == tag]


@pytest.fixture(scope="module")
def failing() -> RunResults:
    return build_results(errors_every=9, failing_check=True, slos=three_slos(),
                         notes=("load generator saturated",))


@pytest.fixture(scope="module")
def failing_html(failing: RunResults) -> str:
    return render_html(failing)


def test_nothing_is_fetched(failing_html: str) -> None:
    page = Page(failing_html)
    assert not page.named("link")
    assert not page.named("img") and not page.named("iframe") and not page.named("object")
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert "://" not in (value or ""), (tag, name, value)
            assert name not in ("src", "srcset", "action", "formaction"), (tag, name)
    scripts = page.named("script")
    assert len(scripts) == 1 and "src" not in scripts[0]
    for style in re.findall(r"<style>(.*?)</style>", failing_html, re.S):
        assert "url(" not in style and "@import" not in style


def test_urls_appear_only_as_text_in_samples_or_run_details(failing_html: str) -> None:
    page = Page(failing_html)
    for text, classes in page.texts:
        if "http://" in text or "https://" in text:
            assert "output" in classes or text.startswith("http://127.0.0.1:8000/"), text


def test_target_url_shows_without_credentials(failing_html: str) -> None:
    assert "http://127.0.0.1:8000/v1?api_key=***" in failing_html
    assert "s3cret" not in failing_html and "user:pw" not in failing_html


def test_model_output_and_messages_are_escaped(failing_html: str) -> None:
    assert "<script>window.__xss" not in failing_html
    assert "<script>alert(1)" not in failing_html
    assert "<img src=x" not in failing_html and "<b>overloaded" not in failing_html
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in failing_html
    assert "&lt;img src=x onerror=&#34;window.__xss=2&#34;&gt;" in failing_html
    texts = [t for t, _ in Page(failing_html).texts]
    assert XSS_OUTPUT in texts          # the reader sees the output exactly as sent
    assert failing_html.count("<script") == 1


def test_only_our_script_may_run(failing_html: str) -> None:
    page = Page(failing_html)
    policy = next(a["content"] for a in page.named("meta")
                  if a.get("http-equiv") == "Content-Security-Policy")
    assert policy is not None and "default-src 'none'" in policy
    script = re.search(r"<script>(.*?)</script>", failing_html, re.S)
    assert script is not None
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policy


def test_verdict_slos_and_failures_are_shown(failing: RunResults, failing_html: str) -> None:
    assert '<div class="word">FAILED</div>' in failing_html
    assert "2 of 3 SLOs failed" in failing_html
    rows = re.findall(r'<tr class="(passed|failed)"[^>]*>\s*<td><span class="badge',
                      failing_html.split('id="checks"')[0])
    assert rows == ["passed", "failed", "failed"]
    for result in failing.slos:
        assert f"<code>{result.text.replace('<', '&lt;')}</code>" in failing_html
    assert "phase steady, request chat" in failing_html
    assert "3 of " in failing_html and "responses failed" in failing_html
    assert "load generator saturated" in failing_html


def test_every_histogram_metric_has_a_percentile_table(failing_html: str) -> None:
    for title in ("Latency", "Time to first token", "Inter-token latency",
                  "Time per output token", "Schedule lag", "Output tokens", "Chunks"):
        assert f"<h3>{title} <span" in failing_html
    head = "<th>Scope</th>" + "".join(f'<th class="num">{s}</th>' for s in
                                      ("p50", "p90", "p95", "p99", "p99.9", "max", "mean"))
    assert head in failing_html


def test_charts_are_inline_svg_with_phase_bands(failing_html: str) -> None:
    svgs = re.findall(r"<svg .*?</svg>", failing_html, re.S)
    assert len(svgs) >= 8
    over_time = [s for s in svgs if 'class="band-label"' in s]
    assert over_time and all(">steady</text>" in s for s in over_time)
    assert any('aria-label="Error rate over time"' in s for s in svgs)
    assert all(re.search(r'<path class="line s\d|<path class="line bad', s) for s in svgs)


def test_server_metrics_show_counters_as_change_and_gauges_as_level(failing_html: str) -> None:
    section = failing_html.split('id="server"')[1].split("</section>")[0]
    assert "vllm:request_success_total" in section and "vllm:num_requests_running" in section


def test_names_from_the_scenario_are_escaped_in_charts() -> None:
    results = build_results(phases=(("<b>hot</b>", 3.0, False),), requests=("<i>r</i>",))
    html = render_html(results)
    assert "<b>hot</b>" not in html and "<i>r</i>" not in html
    assert "&lt;b&gt;hot&lt;/b&gt;" in html


@pytest.mark.parametrize(("kind", "word"), [
    ("interrupted", "INTERRUPTED"),
    ("target_unreachable", "COULD NOT RUN"),
    ("client_saturated", "INVALID MEASUREMENT"),
])
def test_verdict_words(kind: str, word: str) -> None:
    results = build_results()
    conclude(results, [Reason(kind=kind, message="why")])
    assert f'<div class="word">{word}</div>' in render_html(results)


def test_an_empty_run_renders(tmp_path: Path) -> None:
    results = RunResults(meta=Meta(scenario="nothing", targets=[
        TargetInfo(name="t", plugin="openai", url="service:sim")]),
        phases=[PhaseInfo(name="p", kind="pause", started=0, ended=1)])
    conclude(results)
    write_html(results, tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert '<div class="word">PASSED</div>' in html
    assert "No SLOs were set" in html and "Nothing was recorded over time" in html


def test_a_failed_window_slo_says_where_it_failed() -> None:
    results = build_results(errors_every=9, slos=(slo("error_rate < 1%", window=2.0),))
    html = render_html(results)
    assert '<span class="why">error_rate was ' in html
    assert "in the window starting at" in html


def test_the_groups_of_a_parallel_phase_share_its_band() -> None:
    from llmscen.report.charts import phase_bands

    results = RunResults(meta=Meta(scenario="s"), phases=[
        PhaseInfo(name="warm", kind="open", started=0, ended=2),
        PhaseInfo(name="mixed.a", kind="closed", started=2, ended=8, sweep="mixed"),
        PhaseInfo(name="mixed.b", kind="open", started=2, ended=8, sweep="mixed"),
        PhaseInfo(name="mixed", kind="parallel", started=2, ended=8),
        PhaseInfo(name="sweep-1", kind="open", started=8, ended=9, sweep="sweep")])
    assert [b.label for b in phase_bands(results)] == ["warm", "mixed", "sweep-1"]


def test_calls_that_failed_before_their_check_are_counted_beside_it() -> None:
    results = build_results(errors_every=9)
    status = next(c for c in results.checks if c.expectation == "status")
    status.unchecked = {"http": 13, "timeout": 2}
    html = render_html(results)
    section = html.split('id="checks"')[1].split("</section>")[0]
    assert "Not checked</th>" in section
    assert '<td class="num" title="http ×13 timeout ×2 ">15</td>' in section
