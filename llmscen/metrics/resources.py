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
from llmscen.spec.metrics import percentile_of, split_key


def phase_stats(series: list[ResourceSeries]) -> list[ResourceStats]:
    """min/mean/max of every metric during every phase, in the series' order."""
    out = []
    for s in series:
        if s.phase is None or not s.points:
            continue
        values = [v for _, v in s.points]
        out.append(ResourceStats(name=s.name, phase=s.phase, target=s.target,
                                 labels=dict(s.labels), min=min(values),
                                 mean=sum(values) / len(values), max=max(values),
                                 samples=len(values)))
    return out


def chosen_phases(results: RunResults, phase: str | None) -> set[str]:
    """`phase` (its name or its sweep), else every phase but warmups."""
    if phase is not None:
        return {p.name for p in results.phases if phase in (p.name, p.sweep)} | {phase}
    return {p.name for p in results.phases if not p.warmup}


def samples(results: RunResults, name: str, phase: str | None = None,
            target: str | None = None, between: tuple[float, float] | None = None
            ) -> list[float]:
    """Every sample of `name` in scope (phases as `chosen_phases`; `between`: only the
    seconds in [start, end)). A server series' name may select labels
    (`server.x{model="flux"}`); the series that match are added second by second, as are
    a server's several targets unless `target` picks one."""
    base, selector = split_key(name)
    chosen = chosen_phases(results, phase)
    by_second: dict[tuple[str | None, int], float] = {}
    for s in results.series.resources:
        if s.name != base or s.phase not in chosen or target not in (None, s.target) or \
                any(s.labels.get(k) != v for k, v in selector.items()):
            continue
        for t, v in s.points:
            if between is not None and not between[0] <= t < between[1]:
                continue
            by_second[(s.phase, t)] = by_second.get((s.phase, t), 0.0) + v
    return [v for _, v in sorted(by_second.items(), key=lambda kv: kv[0][1])]


def server_increase(results: RunResults, name: str, phase: str | None = None,
                    target: str | None = None) -> tuple[float | None, str]:
    """A server counter's increase over the phases in scope, from the scrapes at each
    phase's start and end; None and why when there is none."""
    family, selector = split_key(name.removeprefix("server."))
    chosen = chosen_phases(results, phase)
    total: float | None = None
    kinds = set()
    for entry in results.server_metrics:
        if entry.phase not in chosen or target not in (None, entry.target):
            continue
        kinds.add(entry.types.get(family))
        for key, delta in entry.delta.items():
            sample, labels = split_key(key)
            if sample == family and all(labels.get(k) == v for k, v in selector.items()):
                total = (total or 0.0) + delta
    if total is None:
        if "gauge" in kinds or "untyped" in kinds:
            return None, f"{family} is not a counter (its # TYPE says so): increase applies " \
                         "to counters; use max, min, mean or pNN"
        return None, exposed_hint(results, family)
    return total, ""


def exposed_hint(results: RunResults, family: str) -> str:
    """Why a server metric has no values: what the targets did expose."""
    seen = sorted({n for e in results.server_metrics for n in (e.types or
                   {split_key(k)[0]: "" for k in e.after})})
    if not seen:
        return "no target's server metrics were read (a plugin that scrapes them, e.g. " \
               "vllm or triton with metrics_url)"
    near = [n for n in seen if family.split(":")[-1] in n][:3] or seen[:8]
    return f"no target exposed {family} in scope; exposed: {', '.join(near)}" + \
        (" …" if len(seen) > len(near) else "")


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
