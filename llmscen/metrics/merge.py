"""Merging the results of several worker processes into one, exactly.

Histograms merge bucket by bucket and counters add, so merged percentiles equal
those of one process recording every value. Two things are not exact by nature:
the in-flight series adds each worker's per-second maximum (an upper bound of
the true maximum), and per-second series assume the workers share a run start.
SLO results and the outcome are dropped: they must be judged again on the merged data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from llmscen.metrics.consistency import merge_consistency
from llmscen.metrics.histogram import Histogram
from llmscen.metrics.replay import merge_replays
from llmscen.metrics.results import (
    MAX_SAMPLES,
    CheckSummary,
    Counters,
    ErrorSummary,
    InFlightSeries,
    Meta,
    PhaseInfo,
    RunResults,
    Scope,
    ScopeSeries,
    Series,
    SeriesPoint,
    ServerMetrics,
    add_counts,
)


def merge_encoded(encoded: Iterable[str]) -> str:
    """Merge encoded histograms of the same kind and precision into one encoding."""
    total: Histogram | None = None
    for text in encoded:
        h = Histogram.decode(text)
        if total is None:
            total = h
        else:
            total.merge(h)
    if total is None:
        raise ValueError("nothing to merge")
    return total.encode()


def merge(results: Sequence[RunResults]) -> RunResults:
    """One `RunResults` holding everything the given ones recorded."""
    if not results:
        raise ValueError("merge needs at least one results object")
    servers = _first_server_metrics(m for r in results for m in r.server_metrics)
    return RunResults(
        meta=_merge_meta([r.meta for r in results]),
        phases=_merge_phases(p for r in results for p in r.phases),
        scopes=_merge_scopes(s for r in results for s in r.scopes),
        series=Series(
            scopes=_merge_series(s for r in results for s in r.series.scopes),
            in_flight=_merge_in_flight(f for r in results for f in r.series.in_flight),
            users=_merge_in_flight(f for r in results for f in r.series.users),
            # only worker 0 reads the servers; the driver adds the rest (driver/resources.py)
            resources=[s for r in results for s in r.series.resources]),
        slos=[],
        checks=_merge_checks(c for r in results for c in r.checks),
        consistency=merge_consistency(c for r in results for c in r.consistency),
        errors=merge_error_summaries(e for r in results for e in r.errors),
        server_metrics=servers,
        requests=next((list(r.requests) for r in results if r.requests), []),
        replay=merge_replays((p for r in results for p in r.replay), servers),
    )


def _merge_meta(metas: list[Meta]) -> Meta:
    out = metas[0].model_copy(deep=True)
    starts = [m.started_at for m in metas if m.started_at is not None]
    ends = [m.ended_at for m in metas if m.ended_at is not None]
    out.started_at = min(starts) if starts else None
    out.ended_at = max(ends) if ends else None
    out.interrupted = any(m.interrupted for m in metas)
    out.workers = sum(m.workers for m in metas)
    out.notes = list(dict.fromkeys(note for m in metas for note in m.notes))
    return out


def _merge_phases(phases: Iterable[PhaseInfo]) -> list[PhaseInfo]:
    out: dict[str, PhaseInfo] = {}
    for phase in phases:
        have = out.get(phase.name)
        if have is None:
            out[phase.name] = phase.model_copy()
        else:   # each worker asked for its share of the load: the whole is their sum
            have.started = min(have.started, phase.started)
            have.ended = max(have.ended, phase.ended)
            if phase.offered_rate is not None:
                have.offered_rate = (have.offered_rate or 0.0) + phase.offered_rate
            if phase.users is not None:
                have.users = (have.users or 0) + phase.users
            if len(have.planned) == len(phase.planned):
                have.planned = [(min(t, u), v + w) for (t, v), (u, w) in
                                zip(have.planned, phase.planned, strict=True)]
    return list(out.values())


def _merge_scopes(scopes: Iterable[Scope]) -> list[Scope]:
    counters: dict[tuple[str, str, str], Counters] = {}
    histograms: dict[tuple[str, str, str], dict[str, list[str]]] = {}
    out_of_range: dict[tuple[str, str, str], dict[str, int]] = {}
    for scope in scopes:
        key = scope.key
        if key not in counters:
            counters[key] = Counters()
            histograms[key] = {}
            out_of_range[key] = {}
        counters[key].add(scope.counters)
        for metric, text in scope.histograms.items():
            histograms[key].setdefault(metric, []).append(text)
        for metric, n in scope.out_of_range.items():
            out_of_range[key][metric] = out_of_range[key].get(metric, 0) + n
    return [Scope(phase=key[0], request=key[1], target=key[2], counters=counters[key],
                  histograms={m: merge_encoded(texts) for m, texts in histograms[key].items()},
                  out_of_range=out_of_range[key])
            for key in counters]


def _merge_series(series: Iterable[ScopeSeries]) -> list[ScopeSeries]:
    by_key: dict[tuple[str, str, str], dict[int, list[SeriesPoint]]] = {}
    for scope in series:
        seconds = by_key.setdefault(scope.key, {})
        for point in scope.points:
            seconds.setdefault(point.t, []).append(point)
    return [ScopeSeries(phase=key[0], request=key[1], target=key[2],
                        points=[merge_points(seconds[t]) for t in sorted(seconds)])
            for key, seconds in by_key.items()]


def merge_points(points: Sequence[SeriesPoint]) -> SeriesPoint:
    """Sum the counters and merge the histograms of points (any seconds)."""
    out = SeriesPoint(t=points[0].t)
    for p in points:
        add_counts(out, p)
    out.latency = _merge_optional([p.latency for p in points if p.latency])
    out.ttft = _merge_optional([p.ttft for p in points if p.ttft])
    return out


def _merge_optional(encoded: list[str]) -> str | None:
    if len(encoded) > 1:
        return merge_encoded(encoded)
    return encoded[0] if encoded else None


def _merge_in_flight(series: Iterable[InFlightSeries]) -> list[InFlightSeries]:
    by_phase: dict[str | None, dict[int, int]] = {}
    for s in series:
        seconds = by_phase.setdefault(s.phase, {})
        for t, n in s.points:
            seconds[t] = seconds.get(t, 0) + n
    return [InFlightSeries(phase=phase, points=sorted(seconds.items()))
            for phase, seconds in by_phase.items()]


def _merge_checks(checks: Iterable[CheckSummary]) -> list[CheckSummary]:
    out: dict[tuple[str, str], CheckSummary] = {}
    for check in checks:
        key = (check.request, check.expectation)
        have = out.get(key)
        if have is None:
            out[key] = check.model_copy(deep=True)
        else:
            have.passed += check.passed
            have.failed += check.failed
            for error, n in check.unchecked.items():
                have.unchecked[error] = have.unchecked.get(error, 0) + n
            have.samples = (have.samples + check.samples)[:MAX_SAMPLES]
    return list(out.values())


def merge_error_summaries(errors: Iterable[ErrorSummary]) -> list[ErrorSummary]:
    """One summary per (request, error class, status): counts added, phases joined, the
    first and last times widened, samples kept up to the bound."""
    out: dict[tuple[str, str, int | None], ErrorSummary] = {}
    for error in errors:
        key = (error.request, error.error, error.status)
        have = out.get(key)
        if have is None:
            out[key] = error.model_copy(deep=True)
        else:
            have.count += error.count
            have.phases = list(dict.fromkeys([*have.phases, *error.phases]))
            have.first = _extreme(min, have.first, error.first)
            have.last = _extreme(max, have.last, error.last)
            have.samples = (have.samples + error.samples)[:MAX_SAMPLES]
    return list(out.values())


def _first_server_metrics(metrics: Iterable[ServerMetrics]) -> list[ServerMetrics]:
    # Every worker scrapes the same server: the first scrape per phase and target stands.
    out: dict[tuple[str, str | None], ServerMetrics] = {}
    for m in metrics:
        out.setdefault((m.phase, m.target), m.model_copy(deep=True))
    return list(out.values())


def _extreme(pick: Callable[[float, float], float], a: float | None, b: float | None
             ) -> float | None:
    return b if a is None else a if b is None else pick(a, b)
