"""Reading saved results: merged aggregates over scopes and over time windows.

`Aggregate.value(metric, stat)` answers any catalog metric in base units:
durations in seconds, rates per second, ratios as fractions, amounts and
`count` as plain numbers; None when there is nothing to measure.

Scope filters: a `phase` matches a phase's name or the sweep it came from;
with no `phase`, warmup phases are left out unless `include_warmup`, and pause
phases add no wall time (nothing is sent in them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from llmscen.metrics.histogram import DIGITS, SERIES_DIGITS, Histogram
from llmscen.metrics.merge import merge_encoded
from llmscen.metrics.results import Counters, PhaseInfo, RunResults, SeriesPoint, add_counts
from llmscen.spec.metrics import DEFAULT_PERCENTILES, HISTOGRAM_KINDS, WINDOW_METRICS, lookup

SERIES_RESOLUTION = 1   # seconds per series point; windows are whole multiples


class Aggregate:
    """Counters and histograms merged over some scopes, with the wall time they cover."""

    def __init__(self, counters: Counters, encoded: dict[str, list[str]], wall_seconds: float,
                 *, out_of_range: dict[str, int] | None = None, scopes: int = 0,
                 digits: int = DIGITS, metrics: frozenset[str] | None = None) -> None:
        self.counters = counters
        self.wall_seconds = wall_seconds
        self.out_of_range = out_of_range or {}
        self.scopes = scopes               # how many scopes (or series points) were merged
        self.digits = digits
        self.metrics = metrics             # None: every catalog metric is available
        self._encoded = encoded
        self._merged: dict[str, Histogram | None] = {}

    def recorded(self) -> set[str]:
        """The histogram metrics something was recorded for (custom ones included)."""
        return {name for name, texts in self._encoded.items() if texts}

    def histogram(self, metric: str) -> Histogram | None:
        """The merged histogram of `metric` (decoded on first use), None if nothing recorded."""
        if metric not in self._merged:
            texts = self._encoded.get(metric)
            self._merged[metric] = Histogram.decode(merge_encoded(texts)) if texts else None
        return self._merged[metric]

    def value(self, metric: str, stat: str | None = None) -> float | None:
        """Any catalog metric in base units; None when unmeasurable (no data, no time)."""
        info = lookup(metric)
        if info is None:
            raise ValueError(f"unknown metric {metric!r}")
        if info.kind in HISTOGRAM_KINDS:
            if stat is None:
                raise ValueError(f"{metric} is a histogram: name a stat (e.g. {metric}.p95)")
        elif stat is not None:
            raise ValueError(f"{metric} is a {info.kind}: it takes no stat")
        if self.metrics is not None and metric not in self.metrics:
            return None
        if stat is not None:
            h = self.histogram(metric)
            if h is None:
                return 0.0 if stat == "count" else None
            v = h.stat(stat)
            if v is None or stat == "count":
                return v
            if info.kind == "duration":
                return v / 1e6
            return v / info.scale
        c = self.counters
        if metric == "large_chunk_share":   # a share of chunks, not of requests
            return c.large_chunks / c.content_chunks if c.content_chunks else None
        if info.kind == "ratio":
            if c.requests == 0:
                return None
            part = {"error_rate": c.error_total, "check_failure_rate": c.check_failures,
                    "success_rate": c.ok}[metric]
            return part / c.requests
        if metric == "capacity":    # not a scope's aggregate: read off results.search
            return None
        if self.wall_seconds <= 0:
            return None
        amount = {"throughput": c.ok, "output_token_throughput": c.output_tokens,
                  "images_per_second": c.images, "goodput": c.goodput_met}[metric]
        return amount / self.wall_seconds

    def stats(self, metric: str, percentiles: tuple[float, ...] = DEFAULT_PERCENTILES,
              ) -> dict[str, float | None]:
        """`min max mean stdev count pNN` of a histogram metric; durations in seconds."""
        info = lookup(metric)
        assert info is not None, metric
        h = self.histogram(metric) if self.metrics is None or metric in self.metrics else None
        raw = (h or Histogram(info.kind, self.digits)).stats(  # type: ignore[arg-type]
            percentiles)
        if info.kind != "duration":
            return raw if info.scale == 1 else {
                k: (v if v is None or k == "count" else v / info.scale) for k, v in raw.items()}
        return {k: (v if v is None or k == "count" else v / 1e6) for k, v in raw.items()}


@dataclass(frozen=True)
class Window:
    start: float              # seconds since run start
    end: float
    aggregate: Aggregate


@dataclass(frozen=True)
class _Selection:
    """Which scopes count, and which phases' wall time counts."""

    phases: frozenset[str] | None      # named phases; None: every phase not excluded
    excluded: frozenset[str]           # warmup phases left out
    request: str | None
    target: str | None
    timed: tuple[PhaseInfo, ...]

    def matches(self, key: tuple[str, str, str]) -> bool:
        phase, request, target = key
        if self.phases is not None and phase not in self.phases:
            return False
        # a flow's name also selects its steps (`login-then-models.login`, ...)
        wanted = self.request
        request_ok = wanted is None or request == wanted or request.startswith(wanted + ".")
        return phase not in self.excluded and request_ok and self.target in (None, target)


def _select(results: RunResults, phase: str | None, request: str | None, target: str | None,
            include_warmup: bool) -> _Selection:
    if phase is not None:
        named = tuple(p for p in results.phases if phase in (p.name, p.sweep))
        return _Selection(frozenset({phase, *(p.name for p in named)}), frozenset(), request,
                          target, named)
    excluded = frozenset(p.name for p in results.phases if p.warmup and not include_warmup)
    timed = tuple(p for p in results.phases if p.name not in excluded and p.kind != "pause")
    return _Selection(None, excluded, request, target, timed)


def aggregate(results: RunResults, phase: str | None = None, request: str | None = None,
              target: str | None = None, include_warmup: bool = False) -> Aggregate:
    """Merge the scopes matching the filters (None matches all)."""
    selection = _select(results, phase, request, target, include_warmup)
    counters = Counters()
    encoded: dict[str, list[str]] = {}
    out_of_range: dict[str, int] = {}
    n = 0
    for scope in results.scopes:
        if not selection.matches(scope.key):
            continue
        n += 1
        counters.add(scope.counters)
        for metric, text in scope.histograms.items():
            encoded.setdefault(metric, []).append(text)
        for metric, k in scope.out_of_range.items():
            out_of_range[metric] = out_of_range.get(metric, 0) + k
    return Aggregate(counters, encoded, wall_time(selection.timed),
                     out_of_range=out_of_range, scopes=n)


def wall_time(phases: Iterable[PhaseInfo]) -> float:
    """Seconds covered by `phases`: groups of a phase run at once, so overlaps count once."""
    return sum(end - start for start, end in _union([(p.started, p.ended) for p in phases]))


def windows(results: RunResults, seconds: float, phase: str | None = None,
            request: str | None = None, target: str | None = None,
            include_warmup: bool = False) -> Iterator[Window]:
    """Consecutive `seconds`-long windows over the matching scopes' per-second series.

    Windows start at the first included phase (rounded down to a whole second)
    and run until the last completion; each one's wall time is its overlap with
    the included phases (each extended to its last completion), so rates in a
    partial window are not diluted. Windows with no wall time and no
    requests (e.g. a pause between included phases) are skipped; others with
    no requests are yielded, and their ratios are None.
    """
    if seconds < SERIES_RESOLUTION or seconds % SERIES_RESOLUTION:
        raise ValueError(f"a window must be a whole number of seconds >= 1, not {seconds}")
    step = int(seconds)
    selection = _select(results, phase, request, target, include_warmup)
    by_t: dict[int, list[SeriesPoint]] = {}
    last_t: dict[str, int] = {}     # phase → its last completion second
    for scope in results.series.scopes:
        if selection.matches(scope.key) and scope.points:
            for point in scope.points:
                by_t.setdefault(point.t, []).append(point)
            last_t[scope.phase] = max(last_t.get(scope.phase, -1), scope.points[-1].t)
    # A phase's stragglers complete after it ends: its time runs to its last completion.
    spans = [(p.started, max(p.ended, last_t.get(p.name, -1) + 1.0)) for p in selection.timed]
    if not spans and by_t:
        spans = [(float(min(by_t)), float(max(by_t) + 1))]
    intervals = _union(spans)
    if not intervals:
        return
    for start in range(math.floor(intervals[0][0]), math.ceil(intervals[-1][1]), step):
        end = start + step
        wall = sum(max(0.0, min(end, e) - max(start, s)) for s, e in intervals)
        points = [p for t in range(start, end) for p in by_t.get(t, ())]
        if wall <= 0 and not points:
            continue
        yield Window(start, end, _window_aggregate(points, wall))


def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _window_aggregate(points: list[SeriesPoint], wall: float) -> Aggregate:
    counters = Counters()
    encoded: dict[str, list[str]] = {"latency": [], "ttft": []}
    for p in points:
        add_counts(counters, p)
        if p.latency:
            encoded["latency"].append(p.latency)
        if p.ttft:
            encoded["ttft"].append(p.ttft)
    return Aggregate(counters, encoded, wall, scopes=len(points), digits=SERIES_DIGITS,
                     metrics=WINDOW_METRICS)
