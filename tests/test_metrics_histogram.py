"""The HDR wrapper: exact merge, encode/decode, out-of-range accounting."""

from __future__ import annotations

import os
import subprocess
import sys
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmscen.metrics import histogram
from llmscen.metrics.histogram import AMOUNT_MAX, DURATION_MAX_US, PENDING_MAX, Histogram

PERCENTILES = (0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0)
durations = st.lists(st.integers(min_value=0, max_value=DURATION_MAX_US), max_size=200)
amounts = st.lists(st.integers(min_value=0, max_value=AMOUNT_MAX), max_size=200)


def recorded(values: list[int], kind: str = "duration", digits: int = 3) -> Histogram:
    h = Histogram(kind, digits)  # type: ignore[arg-type]
    for v in values:
        assert h.record(v)
    return h


@settings(max_examples=60, deadline=None)
@given(st.lists(durations, min_size=1, max_size=5), st.sampled_from([2, 3]))
def test_merging_parts_equals_recording_everything(parts: list[list[int]], digits: int) -> None:
    whole = recorded([v for part in parts for v in part], digits=digits)
    merged = Histogram("duration", digits)
    for part in parts:
        merged.merge(recorded(part, digits=digits))
    assert merged.count == whole.count == sum(len(p) for p in parts)
    assert merged.stats(PERCENTILES) == whole.stats(PERCENTILES)
    assert merged.encode() == whole.encode()


@settings(max_examples=40, deadline=None)
@given(amounts, amounts)
def test_amount_merge_keeps_zeros_min_and_max(a: list[int], b: list[int]) -> None:
    whole = recorded(a + b, "amount")
    merged = recorded(a, "amount")
    merged.merge(recorded(b, "amount"))
    assert merged.stats(PERCENTILES) == whole.stats(PERCENTILES)
    if a + b:
        low = merged.stat("min")
        assert low is not None and low == whole.stat("min") and low <= min(a + b)


@settings(max_examples=60, deadline=None)
@given(durations)
def test_encode_decode_round_trips(values: list[int]) -> None:
    h = recorded(values)
    text = h.encode()
    assert text.isascii()
    back = Histogram.decode(text)
    assert back.kind == "duration" and back.digits == 3
    assert back.stats(PERCENTILES) == h.stats(PERCENTILES)
    assert back.encode() == text


@settings(max_examples=30, deadline=None)
@given(durations, durations)
def test_compacted_histogram_keeps_recording(first: list[int], then: list[int]) -> None:
    h = recorded(first)
    h.compact()
    assert h.count == len(first)
    for v in then:
        h.record(v)
    assert h.stats(PERCENTILES) == recorded(first + then).stats(PERCENTILES)


def test_merging_an_empty_histogram_keeps_the_minimum() -> None:
    # hdrh's own add() would lower the minimum to 0 here.
    h = recorded([500, 900])
    h.merge(Histogram())
    h.merge(Histogram.decode(Histogram().encode()))
    assert h.stat("min") == 500
    empty = Histogram()
    empty.merge(Histogram())
    empty.record(700)
    assert empty.stat("min") == 700


def test_out_of_range_values_are_counted_not_dropped_silently() -> None:
    h = Histogram("duration")
    assert h.record(DURATION_MAX_US * 2) is False
    assert h.record(1500)
    h.record_many([3, DURATION_MAX_US * 2, 4, 2 ** 70])
    assert h.out_of_range == 3
    assert h.count == 3
    assert h.stat("max") == 1500
    a = Histogram("amount")
    assert a.record(-1) is False
    assert a.out_of_range == 1 and a.count == 0


def test_out_of_range_counts_survive_merge() -> None:
    a, b = Histogram(), Histogram()
    a.record(DURATION_MAX_US * 5)
    b.record(DURATION_MAX_US * 5)
    b.record(10)
    a.merge(b)
    assert a.out_of_range == 2 and a.count == 1


def test_zero_and_negative_durations_record_as_one_microsecond() -> None:
    h = recorded([0, -5, 2])
    assert h.count == 3
    assert h.stat("min") == 1
    assert h.percentile(50) == 1


def test_amounts_keep_zero() -> None:
    h = recorded([0, 0, 7], "amount")
    assert h.stat("min") == 0
    assert h.stat("p50") == 0
    assert h.stat("max") == 7


def test_stats_names_and_empty_histogram() -> None:
    h = recorded([1000] * 99 + [2000])
    stats = h.stats()
    assert set(stats) == {"min", "max", "mean", "stdev", "count", "p50", "p90", "p95", "p99",
                          "p99.9"}
    assert stats["p50"] == 1000 and stats["p99.9"] == 2000 and stats["count"] == 100
    assert h.stat("p99.9") == 2000
    assert h.stat("p100") == 2000
    empty = Histogram().stats()
    assert empty["count"] == 0 and empty["p50"] is None and empty["mean"] is None
    assert Histogram().stat("p99") is None
    assert Histogram().stat("count") == 0


def test_malformed_stat_raises() -> None:
    with pytest.raises(ValueError):
        recorded([1]).stat("p999.5")
    with pytest.raises(ValueError):
        recorded([1]).stat("median")


def test_merging_different_kinds_or_precisions_raises() -> None:
    with pytest.raises(ValueError, match="amount"):
        Histogram("duration").merge(recorded([1], "amount"))
    with pytest.raises(ValueError, match="digits"):
        Histogram("duration", 3).merge(recorded([1], digits=2))


def test_decode_rejects_foreign_ranges() -> None:
    from hdrh.histogram import HdrHistogram

    foreign = HdrHistogram(1, 60_000, 2)
    foreign.record_value(5)
    with pytest.raises(ValueError, match="not an llmscen histogram"):
        Histogram.decode(foreign.encode().decode())


@settings(max_examples=12, deadline=None)   # hdrh's own mean/stdev are slow
@given(st.lists(st.integers(min_value=0, max_value=50_000_000), min_size=1, max_size=50),
       st.sampled_from(["duration", "amount"]))
def test_mean_and_stdev_match_hdrh(values: list[int], kind: str) -> None:
    h = recorded(values, kind)
    lib = h._settle()
    assert h.stat("mean") == lib.get_mean_value()
    assert h.stat("stdev") == lib.get_stddev()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["one", "many", "read", "compact"]),
                          st.lists(st.integers(min_value=-5, max_value=DURATION_MAX_US + 5),
                                   max_size=40)), max_size=12),
       st.sampled_from(["duration", "amount"]), st.sampled_from([3, PENDING_MAX]))
def test_batched_recording_equals_hdrh_one_value_at_a_time(
        ops: list[tuple[str, list[int]]], kind: str, pending_max: int) -> None:
    """Values wait in a batch; whatever reads come between, and wherever the batch fills
    up, the result is what hdrh records value by value, out-of-range counts included."""
    with mock.patch.object(histogram, "PENDING_MAX", pending_max):
        batched_equals_hdrh(ops, kind)


def batched_equals_hdrh(ops: list[tuple[str, list[int]]], kind: str) -> None:
    from hdrh.histogram import HdrHistogram

    ours = Histogram(kind)  # type: ignore[arg-type]
    lib = HdrHistogram(1, ours.highest, 3)
    missed = 0
    for op, values in ops:
        if op == "one":
            for v in values:
                ours.record(v)
        elif op == "many":
            ours.record_many(values)
        elif op == "read":
            ours.stats(PERCENTILES)
        else:
            ours.compact()
        if op in ("one", "many"):
            for v in values:
                v = max(v, 1) if kind == "duration" else v
                if v < 0 or v > ours.highest or not lib.record_value(v):
                    missed += 1
    assert ours.count == lib.get_total_count()
    assert ours.out_of_range == missed
    if ours.count:
        assert ours.encode() == lib.encode().decode("ascii")


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(min_value=-3, max_value=2 * AMOUNT_MAX), max_size=200),
       st.sampled_from([1, 2, 3, 4]), st.sampled_from([DURATION_MAX_US, AMOUNT_MAX]),
       st.lists(st.integers(min_value=0, max_value=DURATION_MAX_US), max_size=5))
def test_adding_values_vectorized_is_hdrhs_record_value(values: list[int], digits: int,
                                                        highest: int, before: list[int]) -> None:
    """The vectorized bucket arithmetic puts every value where hdrh would, refuses what hdrh
    refuses (and what is past `highest`), and keeps the same total, minimum and maximum (on
    top of earlier values)."""
    import numpy as np
    from hdrh.histogram import HdrHistogram

    from llmscen.metrics.histogram import add_values

    ours, lib = HdrHistogram(1, highest, digits), HdrHistogram(1, highest, digits)
    for v in before:
        ours.record_value(v)
        lib.record_value(v)
    lost = add_values(ours, np.array(values, dtype=np.int64), highest)
    missed = sum(1 for v in values if v > highest or not lib.record_value(v))
    assert lost == missed
    assert bytes(ours.counts) == bytes(lib.counts)
    assert (ours.total_count, ours.min_value, ours.max_value) == \
        (lib.total_count, lib.min_value, lib.max_value)
    assert ours.encode() == lib.encode()


def test_a_metric_store_imports_numpy_before_it_records_anything() -> None:
    """The first settle must not import numpy in the middle of a run: at 3,500 arrivals a
    second that stall sent requests up to 380 ms late (lag p99 336 ms against 1.3)."""
    code = ("import sys; from llmscen.metrics.store import MetricStore; "
            "assert 'numpy' not in sys.modules; MetricStore(); print('numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "True"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("chosen", [None, "2"])
def test_numpy_is_loaded_without_a_blas_thread_pool_unless_the_user_chose_one(
        chosen: str | None) -> None:
    """OpenBLAS's pool spins ~100 ms on the run's cores at the import; nothing here uses it.
    The variable does not leak to the services a run starts, and a user's own is kept."""
    code = ("import os, sys; from llmscen.metrics.histogram import load_numpy; load_numpy(); "
            "import numpy; print(len(os.listdir('/proc/self/task')), "
            "os.environ.get('OPENBLAS_NUM_THREADS'))")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if chosen is not None:
        env["OPENBLAS_NUM_THREADS"] = chosen
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60, env=env)
    threads, variable = out.stdout.split()
    if chosen is None:
        assert (threads, variable) == ("1", "None")
    else:
        assert int(threads) >= 2 and variable == chosen
