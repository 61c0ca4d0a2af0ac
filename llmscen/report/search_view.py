"""What a `search:` phase found, for the HTML report: the answer, its interval and knee, a chart
of served throughput and p95 latency against the load tried, and the steps in order."""

from __future__ import annotations

from dataclasses import dataclass

from llmscen.metrics.results import RunResults, SearchInfo
from llmscen.report.charts import compact_number, duration_format
from llmscen.report.svg import Axis, Chart, Line, color, line_chart, value_axis
from llmscen.spec.units import show


@dataclass(frozen=True)
class SearchView:
    phase: str
    answer: str              # "41.77/s (41.77–43.62/s), converged"
    knee: str                # "43.62/s", or "" when no step was followed
    charts: list[Chart]
    steps: list[tuple[str, str, str, str, str, str]]   # tried, verdict, offered, served, p95, why


def _unit(axis: str) -> str:
    return "/s" if axis == "arrival_rate" else " users"


def _answer(info: SearchInfo) -> str:
    unit = _unit(info.axis)
    if info.capacity is None:
        return "none: not even the lowest load held"
    ceiling = f"–{info.ceiling:g}{unit}" if info.ceiling is not None else f"{unit} or more"
    closeness = "converged" if info.converged else \
        f"not converged to ±{info.precision:.0%} within the step budget"
    return f"{info.capacity:g}{unit} ({info.capacity:g}{ceiling}), {closeness}"


def _axis(values: list[float], fmt_unit: str) -> Axis:
    lo, hi = min(values), max(values)
    span = (hi - lo) or max(hi, 1.0)
    lo, hi = max(0.0, lo - span * 0.05), hi + span * 0.05
    ticks: list[float] = []
    for v in sorted(set(values)):   # a bisection clusters its loads: labels must not overlap
        if not ticks or v - ticks[-1] >= (hi - lo) * 0.08:
            ticks.append(v)
    return Axis(lo, hi, [(v, f"{compact_number(v)}{fmt_unit}") for v in ticks])


def _charts(info: SearchInfo) -> list[Chart]:
    steps = sorted(info.steps, key=lambda s: s.value)
    if len(steps) < 2:
        return []
    x = _axis([s.value for s in steps], "/s" if info.axis == "arrival_rate" else "")
    served = [(s.value, s.served) for s in steps]
    lines = [Line("served (ok requests/s)", served, color(0))]
    if info.axis == "arrival_rate":
        lines.append(Line("offered", [(s.value, s.value) for s in steps], color(1), dash=True))
    y = value_axis([v for line in lines for _, v in line.points], compact_number)
    throughput = Chart("Served vs load tried",
                       line_chart("Served vs load tried", lines, x, y),
                       legend=[(line.label, line.css) for line in lines],
                       caption="where served leaves offered, the server stopped keeping up")
    p95 = [(s.value, s.latency_p95) for s in steps]
    top = max((v for _, v in p95 if v is not None), default=0.0)
    fmt = duration_format(top)
    latency_line = Line("latency p95", p95, color(2))
    latency = Chart("Latency p95 vs load tried",
                    line_chart("Latency p95 vs load tried", [latency_line], x,
                               value_axis([v for _, v in p95], fmt)),
                    legend=[(latency_line.label, latency_line.css)],
                    caption="each step's own requests, repeats pooled")
    return [throughput, latency]


def search_views(results: RunResults) -> list[SearchView]:
    out = []
    for info in results.search:
        unit = _unit(info.axis)
        rows = []
        for s in info.steps:
            verdict = "held" if s.passed else "client-bound" if s.client_bound else \
                "saturated" if s.saturated else "failed"
            rows.append((f"{s.value:g}{unit}", verdict,
                         f"{s.offered:.4g}/s" if s.offered is not None else "–",
                         f"{s.served:.4g}/s" if s.served is not None else "–",
                         show("latency", s.latency_p95) if s.latency_p95 is not None else "–",
                         "; ".join(s.failed)))
        out.append(SearchView(phase=info.phase, answer=_answer(info),
                              knee=f"{info.knee:g}{unit}" if info.knee is not None else "",
                              charts=_charts(info), steps=rows))
    return out
