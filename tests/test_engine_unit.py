"""The engine against an in-process fake plugin: scheduling, stops, saturation."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from llmscen.compile.compiler import compile_document
from llmscen.engine.events import BaseHandler, Completed, Note, NotSent, Tick
from llmscen.engine.loop import run_loop
from llmscen.engine.protocol import Call, Exchange
from llmscen.engine.registry import Registry
from llmscen.engine.run import Engine
from llmscen.engine.schedule import arrivals
from llmscen.spec.loader import parse_yaml


class FakeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delay: float = 0.0          # awaited per call (a server's latency)
    block: float = 0.0          # blocks the event loop per call (a saturated client)


class FakeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    say: str = ""


class FakeRunner:
    def __init__(self, target: Any) -> None:
        self.options: FakeOptions = target.options
        self.active = 0
        self.peak = 0

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def preflight(self, calls: Any) -> list[str]:
        return []

    async def server_metrics(self) -> dict[str, float]:
        return {}

    async def send(self, call: Call, exchange: Exchange) -> None:
        self.active += 1
        self.peak = max(self.peak, self.active)
        exchange.sent_ns = time.perf_counter_ns()
        if self.options.block:   # busy, as a client out of CPU is
            until = time.perf_counter() + self.options.block
            while time.perf_counter() < until:
                pass
        await asyncio.sleep(self.options.delay)
        exchange.text = call.payload.get("say", "")
        exchange.status = 200
        exchange.end_ns = time.perf_counter_ns()
        self.active -= 1


class FakePlugin:
    name = "fake"
    api_version = 1
    description = "in-process fake for engine tests"
    target_options = FakeOptions
    request_options = FakeRequest
    metrics = frozenset({"latency"})

    def __init__(self) -> None:
        self.runners: list[FakeRunner] = []

    def create_runner(self, target: Any) -> FakeRunner:
        runner = FakeRunner(target)
        self.runners.append(runner)
        return runner


class Collect(BaseHandler):
    def __init__(self) -> None:
        self.events: list[Completed] = []
        self.notes: list[str] = []
        self.ticks: list[Tick] = []
        self.not_sent: list[NotSent] = []

    def on_completed(self, event: Completed) -> None:
        self.events.append(event)

    def on_note(self, event: Note) -> None:
        self.notes.append(event.message)

    def on_tick(self, event: Tick) -> None:
        self.ticks.append(event)

    def on_not_sent(self, event: NotSent) -> None:
        self.not_sent.append(event)


def fake_registry() -> tuple[Registry, FakePlugin]:
    registry = Registry.discover()
    plugin = FakePlugin()
    registry.add_plugin(plugin)
    return registry, plugin


def run(text: str, tmp_path: Path | None = None) -> tuple[Collect, FakePlugin]:
    """Every phase of the scenario, one after another, as the driver runs them."""
    registry, plugin = fake_registry()
    base = str(tmp_path) if tmp_path else "."
    doc = parse_yaml(text, f"{base}/fake.yaml", {})
    plan = compile_document(doc, registry)
    handler = Collect()

    async def main() -> None:
        engine = Engine(plan, registry, handler)
        await engine.start()
        try:
            for phase in plan.phases:
                await engine.run_phase(phase, time.perf_counter_ns())
        finally:
            await engine.close()

    asyncio.run(main())
    return handler, plugin


TARGET = "targets: {t: {plugin: fake, url: 'fake://', delay: %s, block: %s}}\n"


def test_open_model_sends_on_schedule_and_stops_at_the_request_count() -> None:
    handler, _ = run(TARGET % (0.01, 0) + """
phases: [{duration: 10s, arrival_rate: 50, requests: 25}]
requests: [{name: a, target: t, say: hi}]
""")
    assert len(handler.events) == 25
    lags = [(e.exchange.sent_ns - e.exchange.intended_ns) / 1e9 for e in handler.events]
    assert max(lags) < 0.05
    starts = sorted(e.exchange.intended_ns for e in handler.events)
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(starts)]
    assert all(abs(g - 0.02) < 1e-6 for g in gaps)   # intended starts are exact


def test_closed_model_keeps_users_busy_and_no_more() -> None:
    handler, plugin = run(TARGET % (0.05, 0) + """
phases: [{duration: 1s, users: 4}]
requests: [{name: a, target: t}]
""")
    assert plugin.runners[0].peak == 4
    # 4 users × 1 s / 50 ms each ≈ 80 requests
    assert 60 <= len(handler.events) <= 90


def test_weighted_mix_follows_weights() -> None:
    handler, _ = run(TARGET % (0, 0) + """
phases: [{duration: 10s, arrival_rate: 2000, requests: 2000, seed: 3}]
requests: [{name: a, target: t, weight: 3}, {name: b, target: t, weight: 1}]
""")
    counts = Counter(e.request for e in handler.events)
    assert 0.70 < counts["a"] / 2000 < 0.80


def test_a_saturated_client_reports_its_lag() -> None:
    # each call blocks the loop 20 ms: at most 50/s can start, 150/s are asked for
    handler, _ = run(TARGET % (0, 0.02) + """
phases: [{name: hot, duration: 3s, arrival_rate: 150}]
requests: [{name: a, target: t}]
""")
    assert max(t.max_lag for t in handler.ticks) > 0.5
    assert max(t.cpu for t in handler.ticks) > 0      # its own CPU, however loaded the machine
    lags = [(e.exchange.sent_ns - e.exchange.intended_ns) / 1e9 for e in handler.events]
    assert max(lags) > 1.0       # started long after they were due: recorded as lag
    # every arrival is accounted for, sent or not
    assert len(handler.events) + sum(n.count for n in handler.not_sent) == 450


def test_arrivals_wait_for_an_in_flight_slot_and_keep_their_intended_start() -> None:
    handler, plugin = run(TARGET % (0.3, 0) + """
phases: [{name: capped, duration: 1s, arrival_rate: 40, max_in_flight: 5}]
requests: [{name: a, target: t}]
""")
    assert plugin.runners[0].peak == 5
    assert len(handler.events) == 40 and not handler.not_sent
    # the wait for a slot is in the latency (from the intended start), not hidden
    latencies = sorted((e.exchange.end_ns - e.exchange.intended_ns) / 1e9 for e in handler.events)
    assert latencies[-1] > 1.5
    assert sum(t.slot_waits for t in handler.ticks) > 0
    # ... and it is not the client's own lag
    assert max(t.max_lag for t in handler.ticks) < 0.2


def test_an_open_phase_without_max_in_flight_is_bounded_by_the_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # past a server's capacity in-flight requests would grow without end; the default bounds
    # them, the waits stay in the latency, and the run says so (it is not the client's lag)
    monkeypatch.setattr("llmscen.engine.load.DEFAULT_MAX_IN_FLIGHT", 4)
    handler, plugin = run(TARGET % (0.3, 0) + """
phases: [{name: open, duration: 1s, arrival_rate: 40}]
requests: [{name: a, target: t}]
""")
    assert plugin.runners[0].peak == 4
    assert len(handler.events) == 40 and not handler.not_sent
    assert sum(t.slot_waits for t in handler.ticks) > 0
    assert not any(t.client_cap for t in handler.ticks)
    assert any("the default limit of 4 in flight was reached" in n for n in handler.notes)


def test_a_full_line_of_waiting_arrivals_drops_and_counts_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("llmscen.engine.load.QUEUE_MIN", 0)
    handler, _ = run(TARGET % (3, 0) + """
phases: [{name: capped, duration: 1s, arrival_rate: 40, max_in_flight: 1}]
requests: [{name: a, target: t}]
""")
    dropped = sum(n.count for n in handler.not_sent if n.why == "max_in_flight")
    assert dropped == 40 - 1 - 10            # one in flight, ten waiting (QUEUE_FACTOR)
    assert len(handler.events) + dropped == 40


def test_once_data_stops_the_phase_when_exhausted(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("word\nalpha\nbeta\ngamma\n")
    handler, _ = run(TARGET % (0, 0) + """
data: {words: {file: rows.csv, order: once}}
phases: [{name: p, duration: 5s, arrival_rate: 20}]
requests: [{name: a, target: t, data: words, say: "{{ row.word }}"}]
""", tmp_path)
    assert sorted(e.exchange.text for e in handler.events) == ["alpha", "beta", "gamma"]
    assert any("has no rows left" in n for n in handler.notes)


@settings(max_examples=60, deadline=None)
@given(rate=st.floats(0.5, 500), ramp=st.one_of(st.none(), st.floats(0, 500)),
       duration=st.floats(0.5, 20), process=st.sampled_from(["constant", "poisson", "gamma"]),
       shape=st.floats(0.2, 5), seed=st.integers(0, 2**32))
def test_arrivals_are_ordered_and_inside_the_phase(rate: float, ramp: float | None,
                                                    duration: float, process: str,
                                                    shape: float, seed: int) -> None:
    times = list(arrivals(rate, ramp, duration, process, shape, seed))
    assert times == sorted(times)
    assert all(0 <= t < duration for t in times)
    if process == "constant":
        expected = (rate + (ramp if ramp is not None else rate)) / 2 * duration
        assert abs(len(times) - expected) <= 1.5


def test_poisson_and_gamma_means_and_burstiness() -> None:
    poisson = list(arrivals(100, None, 100, "poisson", 1, 1))
    assert 9500 < len(poisson) < 10500
    gaps = [b - a for a, b in itertools.pairwise(poisson)]
    mean = sum(gaps) / len(gaps)
    cv2 = sum((g - mean) ** 2 for g in gaps) / len(gaps) / mean**2
    assert 0.9 < cv2 < 1.1
    bursty = list(arrivals(100, None, 100, "gamma", 0.25, 1))
    gaps = [b - a for a, b in itertools.pairwise(bursty)]
    mean = sum(gaps) / len(gaps)
    cv2 = sum((g - mean) ** 2 for g in gaps) / len(gaps) / mean**2
    assert 3 < cv2 < 5      # a gamma shape of 1/4 has squared variation 4


def test_ramp_rate_grows_linearly() -> None:
    times = list(arrivals(10, 50, 20, "constant", 1, 0))
    first = sum(1 for t in times if t < 2)
    last = sum(1 for t in times if t >= 18)
    assert first == pytest.approx(22, abs=2) and last == pytest.approx(98, abs=2)


def test_pause_sleeps_short_waits_out_and_cuts_long_ones_at_stop() -> None:
    from llmscen.engine.load import SHORT_PAUSE_S, pause

    async def main() -> tuple[float, float]:
        stop = asyncio.Event()
        t0 = time.perf_counter()
        await pause(stop, SHORT_PAUSE_S / 2)    # a plain sleep: not shorter than asked
        short = time.perf_counter() - t0
        asyncio.get_running_loop().call_later(0.05, stop.set)
        t0 = time.perf_counter()
        await pause(stop, 30.0)                 # ends when stop is set, not in 30 s
        return short, time.perf_counter() - t0

    short, cut = asyncio.run(main())
    assert short >= SHORT_PAUSE_S / 2 * 0.9
    assert 0.04 <= cut < 10.0


@pytest.mark.parametrize("precise", [False, True], ids=["loop-timers", "waker"])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_until_never_wakes_before_the_time_asked(loop: str, precise: bool) -> None:
    import random

    import uvloop

    from llmscen.engine.load import until
    from llmscen.timer import Waker

    async def main() -> list[int]:
        stop = asyncio.Event()
        waker = Waker(asyncio.get_running_loop(), precise=precise)
        rng = random.Random(3)
        early = []
        for _ in range(300):   # sub-millisecond and few-millisecond waits, as arrivals have
            when = time.perf_counter_ns() + int(rng.uniform(0, 0.003) * 1e9)
            await until(stop, when, waker)
            if (gap := time.perf_counter_ns() - when) < 0:
                early.append(gap)
        waker.close()
        return early

    early = uvloop.run(main()) if loop == "uvloop" else asyncio.run(main())
    assert early == [], f"woke up to {-min(early) / 1e3:.0f} µs early {len(early)} times"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the waker's timerfd is Linux's")
def test_until_with_the_waker_is_later_by_less_than_with_the_loops_timers() -> None:
    """uvloop's timers count whole milliseconds: the waker (a timerfd) wakes the schedule
    nearer its time. Interleaved in one run, so a loaded machine slows both alike."""
    import random
    import statistics

    import uvloop

    from llmscen.engine.load import until
    from llmscen.timer import Waker

    async def main() -> tuple[float, float]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        wakers = (Waker(loop, precise=False), Waker(loop, precise=True))
        assert wakers[1].precise
        late: tuple[list[int], list[int]] = ([], [])
        rng = random.Random(5)
        for i in range(400):
            when = time.perf_counter_ns() + int(rng.uniform(0.0002, 0.003) * 1e9)
            await until(stop, when, wakers[i % 2])
            late[i % 2].append(time.perf_counter_ns() - when)
        for waker in wakers:
            waker.close()
        return statistics.median(late[0]), statistics.median(late[1])

    plain, precise = uvloop.run(main())
    assert precise < plain, f"median lateness {precise / 1e3:.0f} µs with the waker, " \
        f"{plain / 1e3:.0f} µs without"


def test_ticks_fall_on_the_phase_s_seconds_even_when_the_loop_was_late_at_its_start() -> None:
    # a loop busy at the phase's start (a loaded machine) must not put every later tick late:
    # the live view's line for the 5th second waits for a tick at 5 s or after
    class Stalled(Collect):
        def on_phase_started(self, event: Any) -> None:
            time.sleep(0.7)

    registry, _ = fake_registry()
    plan = compile_document(parse_yaml(TARGET % (0.01, 0) + """
phases: [{name: p, duration: 5500ms, arrival_rate: 10}]
requests: [{name: a, target: t}]
""", "./fake.yaml", {}), registry)
    handler = Stalled()

    async def main() -> float:
        engine = Engine(plan, registry, handler)
        await engine.start()
        try:
            start_ns = time.perf_counter_ns()
            await engine.run_phase(plan.phases[0], start_ns)
            return (start_ns - engine.origin_ns) / 1e9
        finally:
            await engine.close()

    start = run_loop(main)      # the CLI's loop: uvloop, whose timers fire early
    offsets = [t.now - start for t in handler.ticks]
    assert offsets, "no tick in a 5.5 s phase"
    for tick, offset in zip(handler.ticks, offsets, strict=True):
        # late by what the tick itself measured as its loop's lag, never by the stall, and
        # never early (a CI run's view saw the 5th second's tick at 4.9995 s)
        assert round(offset) >= 1 and 0 <= offset - round(offset) <= tick.loop_lag + 0.01, \
            offsets
