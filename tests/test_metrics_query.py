"""Aggregates and windows over saved results: scopes, rates, ratios, units."""

from __future__ import annotations

import pytest

from llmscen.metrics import Histogram, Meta, RunResults, aggregate, windows
from llmscen.metrics.results import (
    Counters,
    PhaseInfo,
    Scope,
    ScopeSeries,
    Series,
    SeriesPoint,
)


def encoded(*values_us: int, digits: int = 3) -> str:
    h = Histogram("duration", digits)
    h.record_many(values_us)
    return h.encode()


def scope(phase: str, request: str, target: str = "t", *, latency: tuple[int, ...] = (),
          **counters: object) -> Scope:
    return Scope(phase=phase, request=request, target=target,
                 counters=Counters.model_validate(counters),
                 histograms={"latency": encoded(*latency)} if latency else {})


@pytest.fixture
def results() -> RunResults:
    return RunResults(
        meta=Meta(scenario="q"),
        phases=[
            PhaseInfo(name="warmup", kind="open", warmup=True, started=0.0, ended=10.0),
            PhaseInfo(name="peak", kind="open", started=10.0, ended=30.0),
            PhaseInfo(name="rest", kind="pause", started=30.0, ended=35.0),
            PhaseInfo(name="sweep-1", kind="closed", started=35.0, ended=40.0, sweep="sweep"),
            PhaseInfo(name="sweep-5", kind="closed", started=40.0, ended=45.0, sweep="sweep"),
        ],
        scopes=[
            scope("warmup", "a", requests=10, ok=10, latency=(5_000_000,) * 10),
            scope("peak", "a", requests=100, ok=90, errors={"http": 4, "timeout": 2},
                  check_failures=4, output_tokens=4000, images=20, goodput_met=60,
                  latency=(1000,) * 94),
            scope("peak", "b", "u", requests=50, ok=50, latency=(3000,) * 50),
            scope("sweep-1", "a", requests=5, ok=5),
            scope("sweep-5", "a", requests=25, ok=25),
        ],
    )


def test_default_scope_leaves_out_warmup_and_pause_time(results: RunResults) -> None:
    agg = aggregate(results)
    assert agg.counters.requests == 180
    assert agg.wall_seconds == 30.0          # peak 20 + sweep 10; pause and warmup left out
    assert agg.value("throughput") == pytest.approx(170 / 30)
    assert agg.value("latency", "max") == pytest.approx(0.003, rel=1e-3)   # not 5 s warmup
    assert agg.value("latency", "count") == 144


def test_include_warmup_and_naming_a_warmup_phase(results: RunResults) -> None:
    assert aggregate(results, include_warmup=True).wall_seconds == 40.0
    warm = aggregate(results, phase="warmup")
    assert warm.counters.requests == 10 and warm.wall_seconds == 10.0
    assert warm.value("latency", "p50") == pytest.approx(5.0, rel=1e-3)   # seconds


def test_phase_filter_matches_sweep_steps(results: RunResults) -> None:
    agg = aggregate(results, phase="sweep")
    assert agg.counters.requests == 30 and agg.wall_seconds == 10.0
    assert aggregate(results, phase="sweep-5").value("throughput") == pytest.approx(5.0)
    assert aggregate(results, phase="rest").value("throughput") == 0.0


def test_ratios_are_fractions_of_requests(results: RunResults) -> None:
    agg = aggregate(results, phase="peak", request="a")
    assert agg.value("error_rate") == pytest.approx(6 / 100)       # check failures excluded
    assert agg.value("check_failure_rate") == pytest.approx(4 / 100)
    assert agg.value("success_rate") == pytest.approx(90 / 100)


def test_rates_are_per_second_of_wall_time(results: RunResults) -> None:
    agg = aggregate(results, phase="peak", request="a")
    assert agg.value("throughput") == pytest.approx(90 / 20)
    assert agg.value("output_token_throughput") == pytest.approx(4000 / 20)
    assert agg.value("images_per_second") == pytest.approx(1.0)
    assert agg.value("goodput") == pytest.approx(3.0)


def test_target_and_request_filters(results: RunResults) -> None:
    assert aggregate(results, target="u").counters.requests == 50
    assert aggregate(results, request="b", target="t").counters.requests == 0
    assert aggregate(results, request="a").value("latency", "p50") == pytest.approx(0.001)


def test_nothing_to_measure_is_none(results: RunResults) -> None:
    empty = aggregate(results, request="nobody")
    assert empty.value("error_rate") is None
    assert empty.value("latency", "p99") is None
    assert empty.value("latency", "count") == 0
    assert empty.value("throughput") == 0.0     # 30 s passed and nothing succeeded
    no_phases = RunResults(meta=Meta(scenario="x"), scopes=[scope("p", "a", requests=1, ok=1)])
    assert aggregate(no_phases).value("throughput") is None
    assert aggregate(no_phases).value("success_rate") == 1.0


def test_value_rejects_misused_metrics(results: RunResults) -> None:
    agg = aggregate(results)
    with pytest.raises(ValueError, match="unknown metric"):
        agg.value("latency_p95", "p95")
    with pytest.raises(ValueError, match="name a stat"):
        agg.value("latency")
    with pytest.raises(ValueError, match="no stat"):
        agg.value("throughput", "p95")


def test_stats_in_seconds_for_durations(results: RunResults) -> None:
    stats = aggregate(results, request="b").stats("latency")
    assert stats["p50"] == pytest.approx(0.003, rel=1e-3) and stats["count"] == 50
    assert aggregate(results).stats("output_tokens")["count"] == 0


def series_results() -> RunResults:
    def point(t: int, requests: int, ok: int, *lat_us: int, **errors: int) -> SeriesPoint:
        return SeriesPoint(t=t, requests=requests, ok=ok, errors=errors,
                           latency=encoded(*lat_us, digits=2) if lat_us else None)

    return RunResults(
        meta=Meta(scenario="w"),
        phases=[PhaseInfo(name="warm", kind="open", warmup=True, started=0.0, ended=2.0),
                PhaseInfo(name="peak", kind="open", started=2.0, ended=12.5),
                PhaseInfo(name="cool", kind="pause", started=12.5, ended=20.0),
                PhaseInfo(name="tail", kind="open", started=20.0, ended=24.0)],
        series=Series(scopes=[
            ScopeSeries(phase="warm", request="a", target="t",
                        points=[point(0, 9, 0, 1000, http=9)]),
            ScopeSeries(phase="peak", request="a", target="t", points=[
                point(2, 10, 10, 1000), point(3, 10, 9, 2000, timeout=1),
                point(7, 10, 10, 50_000), point(12, 4, 4), point(13, 2, 2)]),
            ScopeSeries(phase="tail", request="a", target="t", points=[point(21, 4, 4)]),
        ]),
    )


def test_windows_cover_included_phases_with_their_wall_time() -> None:
    got = [(w.start, w.end, w.aggregate.wall_seconds, w.aggregate.counters.requests)
           for w in windows(series_results(), 5)]
    # peak 2..12.5, extended to 14 by its straggler at 13 s; the pause is skipped; tail 20..24
    assert got == [(2, 7, 5.0, 20), (7, 12, 5.0, 10), (12, 17, 2.0, 6), (17, 22, 2.0, 4),
                   (22, 27, 2.0, 0)]


def test_window_values() -> None:
    first, second, *_ = windows(series_results(), 5)
    assert first.aggregate.value("error_rate") == pytest.approx(1 / 20)
    assert first.aggregate.value("throughput") == pytest.approx(19 / 5)
    assert first.aggregate.value("latency", "max") == pytest.approx(0.002, rel=1e-2)
    assert second.aggregate.value("latency", "p50") == pytest.approx(0.05, rel=1e-2)
    assert first.aggregate.value("itl", "p50") is None        # not kept per second
    assert first.aggregate.value("images_per_second") is None
    last = list(windows(series_results(), 5))[-1]
    assert last.aggregate.value("error_rate") is None           # no requests


def test_windows_honour_scope_filters() -> None:
    warm = list(windows(series_results(), 1, phase="warm"))
    assert [(w.start, w.aggregate.counters.errors) for w in warm] == [(0, {"http": 9}),
                                                                      (1, {})]
    assert sum(w.aggregate.counters.requests for w in windows(series_results(), 10,
                                                             request="zzz")) == 0


@pytest.mark.parametrize("seconds", [0, 0.5, 2.5])
def test_windows_must_be_whole_seconds(seconds: float) -> None:
    with pytest.raises(ValueError, match="whole number"):
        list(windows(series_results(), seconds))
