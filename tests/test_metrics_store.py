"""MetricStore: what each Exchange turns into (histograms, counters, per-second series)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmscen.engine.protocol import Exchange
from llmscen.metrics import Histogram, Meta, MetricStore, aggregate
from llmscen.metrics.results import RunResults

MS = 1_000_000  # ns
T0 = 10_000 * MS  # perf_counter_ns values are arbitrary, not 0


def exchange(**kw: Any) -> Exchange:
    """A streamed response: sent 5 ms late, first content at 105 ms, end at 1005 ms."""
    values: dict[str, Any] = dict(intended_ns=T0, sent_ns=T0 + 5 * MS,
                                  first_byte_ns=T0 + 50 * MS, first_content_ns=T0 + 105 * MS,
                                  end_ns=T0 + 1005 * MS, output_tokens=4, input_tokens=12,
                                  chunks=4, itl_us=[0, 3, 1500], bytes_received=900)
    values.update(kw)
    return Exchange(**values)


def results_of(store: MetricStore) -> RunResults:
    return store.to_results(Meta(scenario="t"))


def one(ex: Exchange, goodput_met: bool = False) -> RunResults:
    store = MetricStore()
    store.record("p", "r", "t", ex, goodput_met=goodput_met, now=0.5)
    store.mark_phase("p", 0.0, 2.0, "open", False)
    return results_of(store)


def test_durations_are_derived_from_the_right_stamps() -> None:
    agg = aggregate(one(exchange()))
    # rel=1e-3 is HDR's 3-digit precision; every pair below differs by more.
    assert agg.value("latency", "max") == pytest.approx(1.005, rel=1e-3)
    assert agg.value("latency_sent", "max") == pytest.approx(1.000, rel=1e-3)
    assert agg.value("ttft", "max") == pytest.approx(0.105, rel=1e-3)
    assert agg.value("ttft_sent", "max") == pytest.approx(0.100, rel=1e-3)
    assert agg.value("schedule_lag", "max") == pytest.approx(0.005, rel=1e-3)
    # tpot = (latency_sent - ttft_sent) / (output_tokens - 1) = 900 ms / 3
    assert agg.value("tpot", "max") == pytest.approx(0.300, rel=1e-3)
    for metric in ("latency", "ttft", "tpot", "schedule_lag"):
        assert agg.value(metric, "count") == 1


def test_itl_gets_one_value_per_gap_and_zero_gaps_count() -> None:
    agg = aggregate(one(exchange()))
    assert agg.value("itl", "count") == 3
    assert agg.value("itl", "min") == pytest.approx(1e-6)   # the zero gap, as 1 µs
    assert agg.value("itl", "max") == pytest.approx(0.0015)  # exact below 2048 µs


def test_amounts_are_per_request() -> None:
    agg = aggregate(one(exchange()))
    assert agg.value("output_tokens", "max") == 4
    assert agg.value("input_tokens", "mean") == 12
    assert agg.value("chunks", "p50") == 4
    assert agg.value("bytes_received", "max") == 900


@pytest.mark.parametrize("changes", [{"output_tokens": 1}, {"output_tokens": None},
                                     {"first_content_ns": 0}])
def test_tpot_needs_two_tokens_and_a_first_content_chunk(changes: dict[str, Any]) -> None:
    agg = aggregate(one(exchange(**changes)))
    assert agg.value("tpot", "count") == 0
    assert agg.value("tpot", "p50") is None
    assert agg.value("latency", "count") == 1


def test_ttft_only_with_a_content_chunk() -> None:
    agg = aggregate(one(exchange(first_content_ns=0, itl_us=[], chunks=0)))
    assert agg.value("ttft", "count") == 0
    assert agg.value("ttft_sent", "count") == 0
    assert agg.value("chunks", "count") == 0
    assert agg.value("latency", "count") == 1


def test_failed_requests_are_counted_not_timed() -> None:
    store = MetricStore()
    store.record("p", "r", "t", exchange(), goodput_met=True, now=0.1)
    store.record("p", "r", "t", exchange(error="timeout", error_message="60 s passed"),
                 goodput_met=True, now=0.2)
    store.record("p", "r", "t", exchange(error="http", status=503, error_message="503"),
                 goodput_met=True, now=0.3)
    store.record("p", "r", "t", exchange(error="check", error_message="no 'Jay'"),
                 goodput_met=True, now=0.4)
    store.mark_phase("p", 0.0, 1.0, "open", False)
    results = results_of(store)
    counters = results.scopes[0].counters
    assert counters.requests == 4 and counters.ok == 1
    assert counters.errors == {"timeout": 1, "http": 1}
    assert counters.check_failures == 1
    assert counters.goodput_met == 1          # only ok requests count toward goodput
    agg = aggregate(results)
    assert agg.value("latency", "count") == 2          # ok + failed check
    assert agg.value("schedule_lag", "count") == 4     # every sent request
    assert agg.value("error_rate") == pytest.approx(0.5)
    assert agg.value("check_failure_rate") == pytest.approx(0.25)
    assert agg.value("success_rate") == pytest.approx(0.25)
    assert agg.value("goodput") == pytest.approx(1.0)
    by_class = {e.error: e for e in results.errors}
    assert set(by_class) == {"timeout", "http"}
    assert by_class["timeout"].samples[0].message == "60 s passed"


def test_error_samples_are_bounded() -> None:
    store = MetricStore()
    for i in range(20):
        store.record("p", "r", "t", exchange(error="connect", error_message=f"refused {i}"),
                     goodput_met=False, now=0.0)
    (summary,) = results_of(store).errors
    assert summary.count == 20
    assert [s.message for s in summary.samples] == [f"refused {i}" for i in range(5)]


def test_counter_sums() -> None:
    store = MetricStore()
    store.record("p", "r", "t", exchange(output_tokens=10, input_tokens=3, images=2,
                                         tokens_estimated=True, bytes_received=100),
                 goodput_met=False, now=0.0)
    store.record("p", "r", "t", exchange(output_tokens=None, input_tokens=None, images=1,
                                         bytes_received=50, error="protocol"),
                 goodput_met=False, now=0.0)
    c = results_of(store).scopes[0].counters
    assert (c.output_tokens, c.input_tokens, c.images, c.tokens_estimated, c.bytes_received) \
        == (10, 3, 3, 1, 150)


def test_scopes_are_kept_apart() -> None:
    store = MetricStore()
    store.record("a", "r1", "t", exchange(), goodput_met=False, now=0.0)
    store.record("a", "r2", "t", exchange(), goodput_met=False, now=0.0)
    store.record("b", "r1", "u", exchange(), goodput_met=False, now=0.0)
    store.record("b", "r1", "u", exchange(), goodput_met=False, now=0.0)
    results = results_of(store)
    assert {s.key: s.counters.requests for s in results.scopes} == {
        ("a", "r1", "t"): 1, ("a", "r2", "t"): 1, ("b", "r1", "u"): 2}


def test_out_of_range_durations_are_reported_per_metric() -> None:
    hours = 3 * 3600 * 1000 * MS
    results = one(exchange(end_ns=T0 + hours))
    assert results.scopes[0].out_of_range == {"latency": 1, "latency_sent": 1}
    assert aggregate(results).out_of_range == {"latency": 1, "latency_sent": 1}
    assert "latency" not in results.scopes[0].histograms


def test_series_counts_per_second() -> None:
    store = MetricStore()
    for now, error in [(0.2, None), (0.9, "http"), (1.1, None), (1.5, "check"), (5.0, None)]:
        store.record("p", "r", "t", exchange(error=error, output_tokens=4), goodput_met=True,
                     now=now)
    (series,) = results_of(store).series.scopes
    by_t = {p.t: p for p in series.points}
    assert sorted(by_t) == [0, 1, 5]
    assert (by_t[0].requests, by_t[0].ok, by_t[0].errors) == (2, 1, {"http": 1})
    assert (by_t[1].requests, by_t[1].ok, by_t[1].check_failures) == (2, 1, 1)
    assert by_t[1].output_tokens == 8 and by_t[1].goodput_met == 1
    assert by_t[0].latency is not None and by_t[5].ttft is not None
    second = Histogram.decode(by_t[1].latency or "")
    assert second.digits == 2 and second.count == 2   # ok + failed check are timed


def test_late_completions_reach_a_sealed_second() -> None:
    store = MetricStore()
    store.record("p", "r", "t", exchange(), goodput_met=False, now=0.5)
    store.record("p", "r2", "t", exchange(), goodput_met=False, now=4.0)   # seals second 0
    sealed = store.scope("p", "r", "t").seconds[0]
    assert sealed.latency is not None and sealed.latency_us == []
    store.record("p", "r", "t", exchange(), goodput_met=False, now=0.7)    # late
    store.record("p", "r2", "t", exchange(), goodput_met=False, now=9.0)
    points = {s.request: s.points for s in results_of(store).series.scopes}
    assert Histogram.decode(points["r"][0].latency or "").count == 2
    assert points["r"][0].requests == 2


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=1, max_value=5_000_000),
                          st.integers(min_value=0, max_value=3)), min_size=1, max_size=600))
def test_a_seconds_histograms_hold_every_value_however_they_were_folded(
        calls: list[tuple[int, int]]) -> None:
    """Second 0's values are folded FOLD_AFTER at a time and sealed whenever the clock
    moves on (a step > 0 records a completion that many seconds later); what the series
    holds is what recording them all at once gives, and no fold waits for more."""
    from llmscen.metrics.series import FOLD_AFTER, SERIES_DIGITS

    store = MetricStore()
    latency, ttft = Histogram("duration", SERIES_DIGITS), Histogram("duration", SERIES_DIGITS)
    later = 1.0
    for us, step in calls:
        ex = exchange(end_ns=T0 + us * 1000, first_content_ns=T0 + us // 2 * 1000)
        store.record("p", "r", "t", ex, goodput_met=False, now=0.5)
        latency.record(us)
        ttft.record(us // 2)
        assert len(store.scope("p", "r", "t").seconds[0].latency_us) < FOLD_AFTER
        if step:
            later += step
            store.record("p", "r", "t", exchange(), goodput_met=False, now=later)
    (series,) = results_of(store).series.scopes
    first = series.points[0]
    assert first.t == 0 and first.requests == len(calls)
    assert first.latency == latency.encode() and first.ttft == ttft.encode()


def test_in_flight_keeps_the_max_per_second_and_phase() -> None:
    store = MetricStore()
    for now, n in [(0.1, 3), (0.5, 9), (0.9, 2), (1.2, 4)]:
        store.note_in_flight(now, n, phase="p")
    store.note_in_flight(3.0, 7)
    series = {s.phase: s.points for s in results_of(store).series.in_flight}
    assert series == {"p": [(0, 9), (1, 4)], None: [(3, 7)]}


def test_marking_a_later_phase_compacts_earlier_ones_transparently() -> None:
    store = MetricStore()
    store.record("a", "r", "t", exchange(), goodput_met=False, now=0.5)
    store.mark_phase("a", 0.0, 1.0, "open", False)
    store.record("b", "r", "t", exchange(), goodput_met=False, now=1.5)
    store.mark_phase("b", 1.0, 2.0, "open", True, planned_duration=1.0)
    assert store.scope("a", "r", "t").latency._h is None          # compacted
    store.record("a", "r", "t", exchange(), goodput_met=False, now=2.5)   # a straggler
    results = results_of(store)
    assert aggregate(results, phase="a").value("latency", "count") == 2
    assert [(p.name, p.warmup, p.planned_duration) for p in results.phases] == [
        ("a", False, None), ("b", True, 1.0)]
