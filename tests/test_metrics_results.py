"""results.json: save/load, version check, redaction, and exact merge across workers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmscen.engine.protocol import Exchange
from llmscen.metrics import (
    SCHEMA_VERSION,
    CheckSummary,
    Meta,
    MetricStore,
    ResultsError,
    ResultsVersionError,
    RunResults,
    Sample,
    ServerMetrics,
    SloResult,
    TargetInfo,
    aggregate,
    merge,
)

MS = 1_000_000
UTC = dt.timezone.utc

# One request: (scope index, latency ms, ttft ms or 0, error class or None, completion second)
request_st = st.tuples(
    st.integers(0, 2),
    st.integers(0, 120_000),
    st.integers(0, 5_000),
    st.sampled_from([None, None, None, "http", "check", "timeout"]),
    st.floats(0, 30, allow_nan=False),
)
SCOPES = [("warm", "a", "t1"), ("peak", "a", "t1"), ("peak", "b", "t2")]


def fill(store: MetricStore, requests: list[tuple[int, int, int, str | None, float]]) -> None:
    for i, (scope, latency, ttft, error, now) in enumerate(requests):
        start = 1_000 * MS + i * MS
        ex = Exchange(intended_ns=start, sent_ns=start + (latency % 7) * 1000,
                      first_content_ns=start + ttft * MS if ttft else 0,
                      end_ns=start + latency * MS + 1, itl_us=[latency % 97, ttft % 13],
                      output_tokens=latency % 300, input_tokens=7, chunks=latency % 300,
                      error=error, error_message=f"{error} #{i}" if error else "")
        store.record(*SCOPES[scope], ex, goodput_met=latency < 50_000, now=now)
        store.note_in_flight(now, i % 11, phase=SCOPES[scope][0])


def finish(store: MetricStore, workers: int = 1) -> RunResults:
    store.mark_phase("warm", 0.0, 10.0, "open", True)
    store.mark_phase("peak", 10.0, 31.0, "open", False)
    meta = Meta(scenario="peak", file="peak.yaml", seed=7, workers=workers,
                started_at=dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
                ended_at=dt.datetime(2024, 5, 1, 12, 1, tzinfo=UTC),
                targets=[TargetInfo(name="t1", plugin="vllm", url="http://h:8000")])
    return store.to_results(meta)


@settings(max_examples=25, deadline=None)
@given(st.lists(request_st, max_size=40), st.integers(2, 4))
def test_merge_of_split_recordings_equals_one_recording(requests: list, workers: int) -> None:
    whole = MetricStore()
    fill(whole, requests)
    parts = [MetricStore() for _ in range(workers)]
    for w, part in enumerate(parts):
        fill(part, requests[w::workers])
    merged = merge([finish(p) for p in parts])
    expected = finish(whole)

    # Identical bucket counts encode to identical strings, so compare them whole.
    assert {s.key: s for s in merged.scopes} == {s.key: s for s in expected.scopes}
    assert {s.key: s.points for s in merged.series.scopes} == \
        {s.key: s.points for s in expected.series.scopes}
    for phase in (None, "warm", "peak"):
        a, b = aggregate(merged, phase=phase), aggregate(expected, phase=phase)
        for metric, stat in [("latency", "p99"), ("itl", "max"), ("throughput", None),
                             ("error_rate", None), ("goodput", None)]:
            assert a.value(metric, stat) == b.value(metric, stat)
    assert {(e.request, e.error): e.count for e in merged.errors} == \
        {(e.request, e.error): e.count for e in expected.errors}


@settings(max_examples=15, deadline=None)
@given(st.lists(request_st, max_size=30))
def test_save_load_round_trips(tmp_path_factory: pytest.TempPathFactory, requests: list) -> None:
    store = MetricStore()
    fill(store, requests)
    results = finish(store)
    results.slos = [SloResult(text="latency.p95 < 5s", metric="latency", stat="p95",
                              scope={"phase": "peak"}, measured=1.5, threshold=5.0, passed=True)]
    results.checks = [CheckSummary(request="a", expectation="contains", passed=3, failed=1,
                                   samples=[Sample(message="missing", output="hello")])]
    results.server_metrics = [ServerMetrics(phase="peak", target="t1", before={"x": 1.0},
                                            after={"x": 4.0}, delta={"x": 3.0})]
    path = tmp_path_factory.mktemp("r") / "results.json"
    results.save(path)
    loaded = RunResults.load(path)
    assert loaded == results
    assert loaded.to_json() == results.to_json()


def test_meta_merge() -> None:
    a, b = finish(MetricStore()), finish(MetricStore(), workers=2)
    b.meta.started_at = dt.datetime(2024, 5, 1, 11, 59, tzinfo=UTC)
    b.meta.interrupted = True
    a.meta.notes, b.meta.notes = ["load generator saturated"], ["load generator saturated", "x"]
    a.slos = [SloResult(text="error_rate < 1%", passed=True)]
    m = merge([a, b])
    assert m.meta.workers == 3 and m.meta.interrupted
    assert m.meta.started_at == b.meta.started_at and m.meta.ended_at == a.meta.ended_at
    assert m.meta.notes == ["load generator saturated", "x"]
    assert m.slos == []   # per-worker verdicts mean nothing for the merged run
    with pytest.raises(ValueError):
        merge([])


def test_merge_sums_in_flight_and_checks() -> None:
    a, b = MetricStore(), MetricStore()
    a.note_in_flight(1.5, 4, phase="peak")
    b.note_in_flight(1.2, 3, phase="peak")
    b.note_in_flight(2.2, 1, phase="peak")
    ra, rb = finish(a), finish(b)
    ra.checks = [CheckSummary(request="r", expectation="regex", passed=1, failed=4,
                              samples=[Sample(message=f"a{i}") for i in range(4)])]
    rb.checks = [CheckSummary(request="r", expectation="regex", passed=2, failed=3,
                              samples=[Sample(message=f"b{i}") for i in range(3)])]
    m = merge([ra, rb])
    assert m.series.in_flight[0].points == [(1, 7), (2, 1)]
    (check,) = m.checks
    assert (check.passed, check.failed) == (3, 7)
    assert [s.message for s in check.samples] == ["a0", "a1", "a2", "a3", "b0"]


def test_newer_schema_is_refused_clearly(tmp_path: Path) -> None:
    data = orjson.loads(finish(MetricStore()).to_json())
    data["schema_version"] = SCHEMA_VERSION + 1
    path = tmp_path / "results.json"
    path.write_bytes(orjson.dumps(data))
    with pytest.raises(ResultsVersionError, match=rf"schema {SCHEMA_VERSION + 1}.*upgrade llmscen"):
        RunResults.load(path)


@pytest.mark.parametrize(("content", "message"), [
    (b"{not json", "not valid JSON"),
    (b'{"meta": {}}', "no schema_version"),
    (b"[1, 2]", "no schema_version"),
    (b'{"schema_version": 1, "meta": {"scenario": "x"}, "bogus": 1}', "bogus"),
])
def test_bad_files_raise_results_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "results.json"
    path.write_bytes(content)
    with pytest.raises(ResultsError, match=message):
        RunResults.load(path)
    with pytest.raises(ResultsError, match="No such file"):
        RunResults.load(tmp_path / "missing.json")


def test_meta_times_are_utc_and_urls_carry_no_secrets() -> None:
    meta = Meta(scenario="x", started_at=dt.datetime(2024, 5, 1, 14, 0,
                                                     tzinfo=dt.timezone(dt.timedelta(hours=2))),
                targets=[TargetInfo(name="t", plugin="openai",
                                    url="https://user:sk-123@api.example/v1?api_key=sk-1&x=2")])
    dumped = orjson.loads(orjson.dumps(meta.model_dump(mode="json")))
    assert dumped["started_at"] == "2024-05-01T12:00:00Z"
    assert dumped["targets"][0]["url"] == "https://api.example/v1?api_key=***&x=2"
    assert "sk-" not in orjson.dumps(dumped).decode()
    with pytest.raises(ValueError, match="timezone"):
        Meta(scenario="x", started_at=dt.datetime(2024, 5, 1))


def test_samples_and_excerpts_are_bounded() -> None:
    check = CheckSummary(request="r", expectation="contains",
                         samples=[Sample(message="m" * 2000, output="o" * 2000)] * 9)
    assert len(check.samples) == 5
    assert len(check.samples[0].message) == 500 and check.samples[0].message.endswith("…")
    assert len(check.samples[0].output) == 300
