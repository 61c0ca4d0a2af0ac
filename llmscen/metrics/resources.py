"""Resource metrics in saved results: per-phase stats and the values an SLO reads.

The driver samples them once a second (driver/resources.py) into
`series.resources`, one series per (metric, phase); here they are summed up
per phase for `results.resources.stats` and selected by scope for SLOs,
with the same phase rules as every other metric (metrics/query.py): a phase
matches its name or the sweep it came from, and no phase means every phase but
warmups. Samples taken between phases belong to no phase and count for none.
"""

from __future__ import annotations

import math

from llmscen.metrics.results import ResourceSeries, ResourceStats, RunResults
from llmscen.spec.metrics import percentile_of


def phase_stats(series: list[ResourceSeries]) -> list[ResourceStats]:
    """min/mean/max of every metric during every phase, in the series' order."""
    out = []
    for s in series:
        if s.phase is None or not s.points:
            continue
        values = [v for _, v in s.points]
        out.append(ResourceStats(name=s.name, phase=s.phase, min=min(values),
                                 mean=sum(values) / len(values), max=max(values),
                                 samples=len(values)))
    return out


def samples(results: RunResults, name: str, phase: str | None = None) -> list[float]:
    """Every sample of `name` in scope: `phase` (its name or its sweep), else every phase
    but warmups."""
    if phase is not None:
        chosen = {p.name for p in results.phases if phase in (p.name, p.sweep)} | {phase}
    else:
        chosen = {p.name for p in results.phases if not p.warmup}
    return [v for s in results.series.resources if s.name == name and s.phase in chosen
            for _, v in s.points]


def stat(values: list[float], which: str) -> float | None:
    """`min max mean pNN` of samples (the nearest-rank percentile); None for no samples."""
    if not values:
        return None
    if which == "min":
        return min(values)
    if which == "max":
        return max(values)
    if which == "mean":
        return sum(values) / len(values)
    rank = percentile_of(which)
    assert rank is not None, which
    ordered = sorted(values)
    return ordered[max(0, math.ceil(rank / 100 * len(ordered)) - 1)]


def source(name: str) -> str:
    """What measures a metric, as `resources.unavailable` keys it: gpu, service, host..."""
    return name.split(".", 1)[0]


def names(results: RunResults) -> list[str]:
    """The resource metrics these results hold, in the order first sampled."""
    return list(dict.fromkeys(s.name for s in results.series.resources))
