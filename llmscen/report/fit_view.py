"""What a `fit:` SLO found, for the HTML report: each step's value against the swept
parameter, the least-squares line through them, and the bounds it was held to."""

from __future__ import annotations

from dataclasses import dataclass

from llmscen.metrics.results import FitResult, RunResults, SloResult
from llmscen.report.svg import Chart, Line, color, line_chart, value_axis
from llmscen.spec.units import show


@dataclass(frozen=True)
class FitView:
    text: str
    passed: bool | None
    line: str                # "slope 17.1MB per batch, intercept 244MB, R² 0.9998"
    expected: str            # "R² ≥ 0.99, slope 8MB..40MB"
    rows: list[tuple[str, str, str, str, str]]   # phase, x, measured, on the line, residual
    chart: Chart | None


def fit_summary(slo: SloResult) -> tuple[str, str]:
    """(what the fit measured, what it was held to), in the metric's units."""
    fit = slo.fit
    assert fit is not None

    def shown(v: float) -> str:
        return show(slo.metric or "", v, slo.stat)

    measured = "–" if fit.r2 is None or fit.slope is None else \
        f"R² {fit.r2:.4f}, slope {shown(fit.slope)}/{fit.over}"
    tests = [f"R² ≥ {fit.r2_min:g}"] if fit.r2_min is not None else []
    if fit.slope_min is not None or fit.slope_max is not None:
        low = "" if fit.slope_min is None else shown(fit.slope_min)
        high = "" if fit.slope_max is None else shown(fit.slope_max)
        tests.append(f"slope {low}..{high}")
    return measured, ", ".join(tests)


def _chart(slo: SloResult, fit: FitResult) -> Chart | None:
    points = [(p.x, p.y) for p in fit.points if p.y is not None]
    if len(points) < 2:
        return None

    def shown(v: float) -> str:
        return show(slo.metric or "", v, slo.stat)

    xs = [x for x, _ in points]
    dots: list[tuple[float, float | None]] = []
    for x, y in points:       # a lone point is a dot: break the path after each one
        dots += [(x, y), (x, None)]
    lines = [Line(f"{slo.metric}.{slo.stat}" if slo.stat else slo.metric or "", dots,
                  f"{color(0)} dots")]
    if fit.slope is not None and fit.intercept is not None:
        ends = [(x, fit.intercept + fit.slope * x) for x in (min(xs), max(xs))]
        lines.append(Line("least-squares line", ends, color(1), dash=True))
    values = [y for line in lines for _, y in line.points if y is not None]
    y_axis = value_axis([min(values), max(values)], shown)
    x_axis = value_axis(xs, lambda v: f"{v:g}")
    title = f"{lines[0].label} per step against {fit.over}"
    return Chart(title, line_chart(title, lines, x_axis, y_axis),
                 legend=[(line.label, line.css) for line in lines],
                 caption=f"one point per step of sweep {fit.sweep}")


def fit_views(results: RunResults) -> list[FitView]:
    out = []
    for slo in results.slos:
        fit = slo.fit
        if fit is None:
            continue

        def shown(v: float, slo: SloResult = slo) -> str:
            return show(slo.metric or "", v, slo.stat)

        rows = []
        for p in fit.points:
            on_line = None if fit.slope is None or fit.intercept is None else \
                fit.intercept + fit.slope * p.x
            rows.append((p.phase, f"{p.x:g}", "–" if p.y is None else shown(p.y),
                         "–" if on_line is None else shown(on_line),
                         "–" if on_line is None or p.y is None else shown(p.y - on_line)))
        line = "not fitted" if fit.slope is None or fit.intercept is None or fit.r2 is None \
            else (f"slope {shown(fit.slope)} per {fit.over}, intercept "
                  f"{shown(fit.intercept)}, R² {fit.r2:.4f}")
        out.append(FitView(text=slo.text, passed=slo.passed, line=line,
                           expected=fit_summary(slo)[1], rows=rows, chart=_chart(slo, fit)))
    return out
