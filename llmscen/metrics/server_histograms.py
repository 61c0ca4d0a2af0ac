"""A server's Prometheus histograms per phase: bucket increases, and percentiles from them.

The phase-start and phase-end readings of every `_bucket{le=…}` series give what
the phase did to the histogram (a bucket that went down was reset: its new count
is the increase, as for counters). A percentile is estimated as Prometheus'
`histogram_quantile` does it — linearly inside the bucket that holds the rank —
so it is only as precise as that bucket: `quantile` returns the bucket's bounds
beside the estimate, and reports show them.
"""

from __future__ import annotations

import math

from llmscen.metrics.resources import chosen_phases
from llmscen.metrics.results import RunResults, ServerHistogram
from llmscen.spec.metrics import sample_key, split_key


def phase_histograms(before: dict[str, float], after: dict[str, float],
                     totals: dict[str, float]) -> dict[str, ServerHistogram]:
    """Each histogram's increase from `before` to `after` (bucket series keyed
    `name_bucket{…,le="x"}`), its `_sum` and `_count` from `totals` (the phase's deltas)."""
    series: dict[str, dict[float, float]] = {}
    for key, value in after.items():
        name, labels = split_key(key)
        le = labels.pop("le", None)
        if le is None or not name.endswith("_bucket"):
            continue
        then = before.get(key, 0.0)
        increase = value - then if value >= then else value
        bound = math.inf if le in ("+Inf", "Inf", "inf") else float(le)
        series.setdefault(sample_key(name[:-len("_bucket")], labels), {})[bound] = increase
    out = {}
    for key, cumulative in series.items():
        bounds = sorted(cumulative)
        counts, below = [], 0.0
        for bound in bounds:
            counts.append(max(0.0, cumulative[bound] - below))
            below = max(below, cumulative[bound])
        finite = [b for b in bounds if b != math.inf]
        if len(counts) == len(finite):      # no +Inf bucket exposed
            counts.append(0.0)
        name, labels = split_key(key)
        out[key] = ServerHistogram(bounds=finite, counts=counts,
                                   sum=totals.get(sample_key(name + "_sum", labels), 0.0),
                                   count=sum(counts))
    return out


def quantile(h: ServerHistogram, q: float) -> tuple[float, float, float] | None:
    """(estimate, bucket's lower bound, its upper bound) of the `q` quantile (0–1); None
    for an empty histogram. Above the last bound the estimate is that bound (as
    Prometheus), and the upper bound infinite."""
    total = sum(h.counts)
    if total <= 0:
        return None
    rank = q * total
    below = 0.0
    for i, n in enumerate(h.counts):
        if n > 0 and below + n >= rank:
            lower = h.bounds[i - 1] if i > 0 else 0.0
            if i == len(h.bounds):
                return lower, lower, math.inf
            upper = h.bounds[i]
            return lower + (upper - lower) * (rank - below) / n, lower, upper
        below += n
    last = h.bounds[-1] if h.bounds else 0.0
    return last, last, math.inf


def merged(histograms: list[ServerHistogram]) -> ServerHistogram | None:
    """Several label sets' (or targets') histograms added up, when their bounds agree."""
    if not histograms:
        return None
    first = histograms[0]
    if any(h.bounds != first.bounds for h in histograms):
        return None
    return ServerHistogram(bounds=list(first.bounds),
                           counts=[sum(c) for c in zip(*(h.counts for h in histograms),
                                                       strict=True)],
                           sum=sum(h.sum for h in histograms),
                           count=sum(h.count for h in histograms))


def in_scope(results: RunResults, name: str, phase: str | None = None,
             target: str | None = None) -> ServerHistogram | None:
    """The server histogram `name` (`family` or `family{label="x"}`, as an SLO names it
    after `server.`) over the phases in scope (as `resources.chosen_phases`) and the
    targets, its matching label sets added up; None when no phase kept it (or their
    bounds differ)."""
    family, selector = split_key(name)
    chosen = chosen_phases(results, phase)
    found = [h for entry in results.server_metrics
             if entry.phase in chosen and target in (None, entry.target)
             for key, h in entry.histograms.items()
             if split_key(key)[0] == family and
             all(split_key(key)[1].get(k) == v for k, v in selector.items())]
    return merged(found)
