"""A replay's fidelity: how closely the trace's arrivals were kept, and the prefix cache.

Each worker keeps, for every arrival of a `replay:` phase it sent, the intended start and how
late it was sent (µs); workers' lists join exactly, and the figures are computed from the
joined lists: the two-sample Kolmogorov–Smirnov statistic between the intended and the
achieved arrival times (the largest gap between their distribution functions: 0 is a
faithful replay, 1 one that missed entirely), and lag percentiles. The prefix-cache hit rate
is the server's own, from its Prometheus counters over the phase.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from llmscen.metrics.results import ReplayInfo, ServerMetrics
from llmscen.spec.metrics import split_key

# counters of prompt tokens looked up in / found in the prefix cache (vLLM v1 names; any
# prefix, so `openai_sim:` or a renamed `vllm:` family match too)
HITS = ("prefix_cache_hits", "prefix_cache_hits_total")
QUERIES = ("prefix_cache_queries", "prefix_cache_queries_total")


def ks_statistic(a: Sequence[int], b: Sequence[int]) -> float:
    """sup |F_a(t) − F_b(t)| of two samples' empirical distribution functions."""
    if not a or not b:
        return 0.0 if not a and not b else 1.0
    xs, ys = sorted(a), sorted(b)
    n, m = len(xs), len(ys)
    i = j = 0
    d = 0.0
    while i < n and j < m:
        t = min(xs[i], ys[j])
        while i < n and xs[i] <= t:
            i += 1
        while j < m and ys[j] <= t:
            j += 1
        d = max(d, abs(i / n - j / m))
    return d


def percentile(values: Sequence[int], q: float) -> int:
    """Nearest rank: the smallest value with at least q of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def prefix_hit_rate(metrics: Iterable[ServerMetrics], phase: str) -> float | None:
    """Prompt tokens found in the server's prefix cache / looked up, over the phase."""
    hits = queries = 0.0
    for m in metrics:
        if m.phase != phase:
            continue
        for key, value in m.delta.items():
            name = split_key(key)[0]
            if name.endswith(HITS):
                hits += value
            elif name.endswith(QUERIES):
                queries += value
    return hits / queries if queries > 0 else None


def with_figures(info: ReplayInfo, metrics: Iterable[ServerMetrics]) -> ReplayInfo:
    """`info` with its fidelity figures computed from its lists (kept as they are when the
    lists were dropped, in a saved file)."""
    if not info.lag and info.sent:
        return info
    achieved = [t + lag for t, lag in zip(info.intended, info.lag, strict=True)]
    have = bool(info.lag)
    return info.model_copy(update={
        "sent": len(info.lag),
        "ks": ks_statistic(info.intended, achieved) if have else None,
        "lag_p50": percentile(info.lag, 0.50) / 1e6 if have else None,
        "lag_p99": percentile(info.lag, 0.99) / 1e6 if have else None,
        "lag_max": max(info.lag) / 1e6 if have else None,
        "prefix_cache_hit_rate": prefix_hit_rate(metrics, info.phase)})


def merge_replays(replays: Iterable[ReplayInfo], metrics: Sequence[ServerMetrics]
                  ) -> list[ReplayInfo]:
    """One per phase, the workers' arrivals joined in time order, its figures recomputed."""
    out: dict[str, ReplayInfo] = {}
    for info in replays:
        have = out.get(info.phase)
        if have is None:
            out[info.phase] = info.model_copy(deep=True)
        else:
            have.intended += info.intended
            have.lag += info.lag
    for info in out.values():
        pairs = sorted(zip(info.intended, info.lag, strict=True))
        info.intended = [t for t, _ in pairs]
        info.lag = [lag for _, lag in pairs]
    return [with_figures(info, metrics) for info in out.values()]


def without_samples(replays: list[ReplayInfo]) -> list[ReplayInfo]:
    """The figures only: the per-arrival lists serve merging, and a saved results file keeps
    no sample lists."""
    return [r.model_copy(update={"intended": [], "lag": []}) for r in replays]
