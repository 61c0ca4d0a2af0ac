"""The report's capacity section: the answer with its interval and knee, the steps, and charts
of served throughput and latency against the load tried."""

from __future__ import annotations

from test_report_samples import build_results

from llmscen.metrics.results import SearchInfo, SearchStep
from llmscen.report.html import render_html
from llmscen.report.search_view import search_views


def with_search(phase: str = "find") -> object:
    results = build_results()
    steps = [SearchStep(value=v, passed=ok, saturated=not ok, served=served, offered=v,
                        latency_p95=p95, failed=[] if ok else ["latency.p95 = 0.8s"])
             for v, ok, served, p95 in [(20, True, 19.9, 0.11), (40, True, 39.8, 0.12),
                                        (56.57, False, 41.9, 0.77), (41.77, True, 41.4, 0.14),
                                        (43.62, False, 41.6, 0.2)]]
    results.search = [SearchInfo(phase=phase, axis="arrival_rate", capacity=41.77,
                                 ceiling=43.62, precision=0.05, converged=True, knee=41.77,
                                 steps=steps)]
    return results


def test_the_answer_its_interval_and_knee_are_stated() -> None:
    (view,) = search_views(with_search())   # type: ignore[arg-type]
    assert view.answer == "41.77/s (41.77–43.62/s), converged"
    assert view.knee == "41.77/s"
    assert [row[1] for row in view.steps] == ["held", "held", "saturated", "held", "saturated"]
    assert [c.title for c in view.charts] == ["Served vs load tried", "Latency p95 vs load tried"]
    # clustered bisection loads keep apart on the axis: 40 and 41.77 do not both get a label
    assert "41.77/s</text>" not in str(view.charts[0].svg)


def test_the_report_has_a_capacity_section_with_escaped_names() -> None:
    html = render_html(with_search("<b>find</b>"))   # type: ignore[arg-type]
    section = html.split('<section id="search">')[1].split("</section>")[0]
    assert "<strong>41.77/s (41.77–43.62/s), converged</strong>" in section
    assert "&lt;b&gt;find&lt;/b&gt;" in section and "<b>find</b>" not in section
    assert section.count("<tr class=") == 5
    assert 'href="#search"' in html


def test_a_run_without_a_search_has_no_capacity_section() -> None:
    html = render_html(build_results())
    assert 'id="search"' not in html and 'href="#search"' not in html
