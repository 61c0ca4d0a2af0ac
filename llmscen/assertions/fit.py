"""`fit:` SLOs: a metric in each step of a sweep against the swept parameter.

The least-squares line y = intercept + slope·x through the steps' values, its
R², and the bounds the SLO asserts on them (docs/slo.md, "Fits across a sweep").
Judged from saved results only, like every SLO.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmscen.compile.plan import SLOPlan
from llmscen.metrics import resources
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import FitPoint, FitResult, RunResults, SloResult
from llmscen.spec.metrics import resource_metric
from llmscen.spec.units import show


@dataclass(frozen=True)
class Line:
    slope: float
    intercept: float
    r2: float


def least_squares(xs: Sequence[float], ys: Sequence[float]) -> Line:
    """The least-squares line through (xs, ys); R² is 1 when every y is the same (the flat
    line fits exactly). Needs two different xs."""
    n = len(xs)
    if n != len(ys) or n < 2:
        raise ValueError("a line needs at least two points")
    mean_x, mean_y = math.fsum(xs) / n, math.fsum(ys) / n
    sxx = math.fsum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("a line needs two different x values")
    sxy = math.fsum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    total = math.fsum((y - mean_y) ** 2 for y in ys)
    residual = math.fsum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    # ys equal but for rounding (their mean is not exact): the flat line fits exactly
    flat = total <= 1e-24 * math.fsum(y * y for y in ys)
    r2 = 1.0 if flat else min(1.0, max(0.0, 1.0 - residual / total))
    return Line(slope, intercept, r2)


def step_value(results: RunResults, metric: str, stat: str | None, phase: str) -> float | None:
    """The metric over one phase, as a plain SLO scoped to it would measure it."""
    if resource_metric(metric) is not None:
        assert stat is not None, "the grammar requires a stat of a sampled metric"
        if stat == "increase":
            return resources.server_increase(results, metric, phase)[0]
        return resources.stat(resources.samples(results, metric, phase), stat)
    return aggregate(results, phase).value(metric, stat)


def evaluate_fit(slo: SLOPlan, results: RunResults) -> SloResult:
    fit = slo.fit
    assert fit is not None
    name = f"{slo.metric}.{slo.stat}" if slo.stat else slo.metric

    def shown(value: float) -> str:
        return show(slo.metric, value, slo.stat)

    points = [FitPoint(phase=phase, x=x, y=step_value(results, slo.metric, slo.stat, phase))
              for phase, x in fit.points]
    found = FitResult(over=fit.over, sweep=fit.sweep, points=points, r2_min=fit.r2,
                      slope_min=fit.slope_min, slope_max=fit.slope_max)
    base = SloResult(text=slo.text, metric=slo.metric, stat=slo.stat, op=slo.op,
                     scope={"phase": fit.sweep}, threshold=slo.threshold, passed=False,
                     where=slo.where, fit=found)
    table = ", ".join(f"{p.x:g}: {'–' if p.y is None else shown(p.y)}" for p in points)
    missing = [p.phase for p in points if p.y is None]
    if missing:
        return base.model_copy(update={"message": (
            f"fit {name} over {fit.over}: nothing was measured in phase {missing[0]} "
            f"({table}); a fit needs the metric in every step of sweep {fit.sweep}")})
    line = least_squares([p.x for p in points], [p.y for p in points if p.y is not None])
    found = found.model_copy(update={"slope": line.slope, "intercept": line.intercept,
                                     "r2": line.r2})
    failures = []
    if fit.r2 is not None and line.r2 < fit.r2:
        failures.append(f"R² {line.r2:.4f} < {fit.r2:g}")
    if fit.slope_min is not None and line.slope < fit.slope_min:
        failures.append(f"slope {shown(line.slope)} below {shown(fit.slope_min)}")
    if fit.slope_max is not None and line.slope > fit.slope_max:
        failures.append(f"slope {shown(line.slope)} above {shown(fit.slope_max)}")
    expected = ", ".join(([f"R² >= {fit.r2:g}"] if fit.r2 is not None else []) + (
        [f"slope {bounds(fit.slope_min, fit.slope_max, shown)}"]
        if fit.slope_min is not None or fit.slope_max is not None else []))
    verdict = "ok" if not failures else "FAILED: " + "; ".join(failures)
    message = (f"fit {name} over {fit.over}: slope {shown(line.slope)} per {fit.over}, "
               f"intercept {shown(line.intercept)}, R² {line.r2:.4f} over {len(points)} "
               f"steps ({table}); expected {expected} [sweep {fit.sweep}] {verdict}")
    return base.model_copy(update={"fit": found, "measured": line.r2, "passed": not failures,
                                   "message": message})


def bounds(low: float | None, high: float | None, shown: Callable[[float], str]) -> str:
    """`LOW..HIGH` as written back (either side may be open)."""
    return (f"{'' if low is None else shown(low)}..{'' if high is None else shown(high)}")
