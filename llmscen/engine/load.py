"""The load models: open (arrivals on a schedule) and closed (virtual users).

Both pick a request from the weighted mix with the phase's seeded RNG and
hand it to its Flow with the intended start. In the open model the intended
start comes from the schedule, never from when the loop got round to it, so
a late client or a slow server cannot hide delay (coordinated omission).

In flight is bounded: by the phase's `max_in_flight`, else DEFAULT_MAX_IN_FLIGHT
(shared by the phase's workers) — past a server's capacity in-flight requests
would otherwise grow until the server refuses connections — or by the client's
own limit (its open-file descriptors) when that is lower. An arrival that
finds every slot taken waits in a line for one (`Slots`) — its latency still counts
from its intended start, so a slow server cannot hide (coordinated omission) — and the
time it waited is not the client's lag. Only when the line grows past
QUEUE_FACTOR × the limit (and QUEUE_MIN) is an arrival dropped.

Every arrival is accounted for: it is started, or it is counted as not sent
(`NotSent`) — dropped from a full line, due when the phase's time was up
before a lagging client got to it, or due when the run stopped. So scheduled
= sent + not sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import random
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmscen.compile.plan import PhasePlan
from llmscen.compile.trace import arrival_offsets
from llmscen.engine.feed import DataExhausted
from llmscen.engine.flow import Flow
from llmscen.engine.schedule import arrivals
from llmscen.timer import Waker
from llmscen.timer import now as monotonic

QUEUE_FACTOR = 10        # arrivals waiting for an in-flight slot, per slot, before drops ...
QUEUE_MIN = 10_000       # ... but at least this many (a few KB each)
DEFAULT_MAX_IN_FLIGHT = 1024   # an open phase's limit when it sets none (all its workers)


@dataclass
class PhaseState:
    """What the supervisor watches while a phase runs."""

    phase: PhasePlan
    in_flight_cap: int | None = None      # the client's own limit when the phase sets none
    started: int = 0
    in_flight: int = 0
    slot_waits: int = 0            # arrivals that had to wait, since the last tick
    cap_waits: int = 0             # arrivals that had to wait, over the phase
    client_cap: bool = False       # the limit is the client's descriptors, not a setting
    max_lag_ns: int = 0            # worst client lag (intended → task start) since the last tick
    slots: Slots | None = None     # an open phase's in-flight slots and line
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    exhausted: str | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    captured: dict[str, object] = field(default_factory=dict)   # a `before:` phase's values
    waker: Waker | None = None     # the engine's precise sleeps, when the platform has them


SHORT_PAUSE_S = 0.05


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep for `seconds`, or less if `stop` is set meanwhile (a short sleep is not cut
    short: its callers look at `stop` when it ends)."""
    if seconds <= 0 or stop.is_set():
        return
    if seconds < SHORT_PAUSE_S:
        # an open loop pauses once per arrival: wait_for costs ~30 µs of CPU, sleep ~7
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def timer_slack(loop: asyncio.AbstractEventLoop) -> float:
    """How much later than the wanted time to ask the loop's timers for, so that they do not
    fire before it: uvloop's count whole milliseconds from a clock read when the loop's
    iteration began, and fire up to ~1 ms early; asyncio's fire late, never early."""
    return 0.0005 if type(loop).__module__.startswith("uvloop") else 0.0


PRECISE_S = 0.002    # the last part of a wait goes to the waker, when there is one


async def until(stop: asyncio.Event, when_ns: int, waker: Waker | None = None) -> None:
    """Sleep until `time.perf_counter_ns()` reaches `when_ns`, or `stop` is set: never
    return early, since a request sent before its intended start would hide part of its
    latency. A precise `waker` wakes it within microseconds of the time; the loop's own
    timers only to the next whole millisecond (and `stop` cuts a wait short only when it
    is longer than SHORT_PAUSE_S)."""
    slack = None
    while not stop.is_set():
        left = (when_ns - time.perf_counter_ns()) / 1e9
        if left <= 0:
            return
        if waker is not None and waker.precise:
            if left <= SHORT_PAUSE_S:
                await waker.sleep_until(monotonic() + left)
            else:
                await pause(stop, left - PRECISE_S)
            continue
        if slack is None:   # only when it sleeps: a late open loop calls this per arrival
            slack = timer_slack(asyncio.get_running_loop())
        await pause(stop, left + slack)


class Mix:
    """Weighted choice of a flow, reproducible from the RNG; `weights` default to the
    requests' own."""

    def __init__(self, flows: Sequence[Flow], weights: Sequence[float] | None = None) -> None:
        self.flows = list(flows)
        chosen = weights if weights is not None else [f.plan.weight for f in flows]
        self.cum = list(itertools.accumulate(chosen))

    def pick(self, rng: random.Random) -> Flow:
        if len(self.flows) == 1:
            return self.flows[0]
        return rng.choices(self.flows, cum_weights=self.cum, k=1)[0]


async def _one(state: PhaseState, flow: Flow, intended_ns: int, context: dict[str, object],
               rng: random.Random, begun: list[bool] | None = None, lagged: bool = True
               ) -> None:
    # open and test-case phases decide starts: the think after a flow's last step is dropped
    await _run(state, flow, intended_ns, context, rng, begun, lagged)


async def _run(state: PhaseState, flow: Flow, intended_ns: int, context: dict[str, object],
               rng: random.Random, begun: list[bool] | None = None, lagged: bool = True
               ) -> float:
    """Run one flow; returns the think after its last step (closed users wait it).

    `lagged`: how late this start is counts as the client's lag (not after a wait for an
    in-flight slot: the line took the client's lag when the arrival joined it)."""
    if lagged:
        lag = time.perf_counter_ns() - intended_ns
        if lag > state.max_lag_ns:
            state.max_lag_ns = lag
    if begun is not None:
        begun.append(True)    # from here the flow accounts for it (sent, or not and why)
    state.in_flight += 1
    try:
        ran = await flow.execute(state.phase.name, intended_ns, context, rng)
        if state.phase.role == "before":
            state.captured.update({k: v for k, v in ran.context.items() if k in flow.captures})
        return ran.rest
    except DataExhausted as exc:
        state.exhausted = str(exc)
        state.stop.set()
        return 0.0
    finally:
        state.in_flight -= 1


class Slots:
    """An open phase's in-flight slots, and the line of arrivals waiting for one.

    A waiting arrival is plain data, not a task parked on a semaphore: past capacity
    thousands wait, and a task each (its frame and a future) made every request dearer.
    It gets its task when a slot frees. `idle` is set when nothing holds a slot or waits."""

    def __init__(self, state: PhaseState, rng: random.Random, cap: int, why: str) -> None:
        self.state = state
        self.rng = rng
        self.cap = cap
        self.why = why               # a drop's reason: the limit's kind
        self.limit = max(QUEUE_FACTOR * cap, QUEUE_MIN)
        self.line: deque[tuple[Flow, int, dict[str, object]]] = deque()
        self.busy = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.loop = asyncio.get_running_loop()

    def arrive(self, flow: Flow, intended_ns: int, context: dict[str, object],
               now_ns: int) -> bool:
        """Start the arrival or line it up for a slot; False: dropped, the line is full."""
        state = self.state
        if self.busy < self.cap:
            self._start(flow, intended_ns, context, True)
        elif len(self.line) >= self.limit:
            flow.not_sent(state.phase.name, None, 1, self.why)
            return False
        else:
            state.slot_waits += 1
            state.cap_waits += 1
            # how late the client itself got to this arrival; the wait for a slot is not it
            if now_ns - intended_ns > state.max_lag_ns:
                state.max_lag_ns = now_ns - intended_ns
            self.line.append((flow, intended_ns, context))
        return True

    def _start(self, flow: Flow, intended_ns: int, context: dict[str, object],
               lagged: bool) -> None:
        self.busy += 1
        self.idle.clear()
        begun: list[bool] = []
        task = self.loop.create_task(_one(self.state, flow, intended_ns, context, self.rng,
                                          begun, lagged))
        self.state.tasks.add(task)
        task.add_done_callback(functools.partial(self._ended, flow, begun))

    def _ended(self, flow: Flow, begun: list[bool], task: asyncio.Task[None]) -> None:
        state = self.state
        state.tasks.discard(task)
        self.busy -= 1
        if task.cancelled() and not begun:   # cancelled before it reached the flow
            flow.not_sent(state.phase.name, None, 1, "stopped")
        if self.line:
            if state.stop.is_set():
                self.flush("stopped")
            else:
                waited, intended_ns, context = self.line.popleft()
                self._start(waited, intended_ns, context, False)
        if not self.busy and not self.line:
            self.idle.set()

    def flush(self, why: str) -> None:
        """Count the arrivals still waiting as not sent (the phase or run stopped)."""
        counts = Counter(flow for flow, _, _ in self.line)
        self.line.clear()
        for flow, n in counts.items():
            flow.not_sent(self.state.phase.name, None, n, why)
        if not self.busy:
            self.idle.set()


def _count_due(state: PhaseState, mix: Mix, rng: random.Random, schedule: Iterator[float],
               start_ns: int, until_ns: int, why: str, limit: int | None) -> None:
    """Count the arrivals of `schedule` due by `until_ns` as not sent (the loop stopped)."""
    counts: dict[int, int] = {}
    for offset in schedule:
        if limit is not None and limit <= 0:
            break
        if start_ns + int(offset * 1e9) > until_ns:
            break
        flow = mix.pick(rng)
        counts[id(flow)] = counts.get(id(flow), 0) + 1
        if limit is not None:
            limit -= 1
    for flow in mix.flows:
        if counts.get(id(flow)):
            flow.not_sent(state.phase.name, None, counts[id(flow)], why)


class _Numbered:
    """The offsets of numbered arrivals; `arrival` is the number of the last one given, in
    the phase's one schedule (a replay's row)."""

    def __init__(self, numbered: Iterator[tuple[int, float]]) -> None:
        self.numbered = numbered
        self.arrival = -1

    def __iter__(self) -> Iterator[float]:
        return self

    def __next__(self) -> float:
        self.arrival, offset = next(self.numbered)
        return offset


def default_cap(phase: PhasePlan) -> int:
    """This worker's share of DEFAULT_MAX_IN_FLIGHT."""
    return max(1, -(-DEFAULT_MAX_IN_FLIGHT // phase.stride[1]))


def default_cap_note(phase: str) -> str:
    return (f"phase {phase!r}: requests waited for an in-flight slot: the default limit of "
            f"{DEFAULT_MAX_IN_FLIGHT:,} in flight was reached (answers came back more slowly "
            "than the rate needs: the server's slowness, or the client's own when the "
            "outcome says it was the bottleneck); their latencies count the wait from each "
            "intended start. "
            "Set max_in_flight on the phase to allow more")


async def run_open(state: PhaseState, mix: Mix, start_ns: int,
                   trace: list[dict[str, Any]] | None = None) -> None:
    """Start requests on the phase's schedule until its duration or request count.

    A replay's schedule is its `trace`'s timestamps, and arrival k sends row k of it to the
    requests that take their rows from the trace."""
    phase = state.phase
    # the schedule is the phase's (shared by its workers); the picks are this worker's
    rng = random.Random(phase.seed + 1_000_003 * phase.stride[0])
    asked = phase.max_in_flight or default_cap(phase)
    cap = min(asked, state.in_flight_cap or asked)
    state.client_cap = cap < asked
    slots = state.slots = Slots(state, rng, cap, "client_limit" if state.client_cap
                                else "max_in_flight")
    end_ns = None if phase.duration is None else start_ns + int(phase.duration * 1e9)
    if trace is not None:
        offsets: Iterator[float] = arrival_offsets((r["timestamp"] for r in trace),
                                                   phase.speed, phase.duration)
    else:
        offsets = arrivals(phase.rate or 0.0, phase.ramp_to, phase.duration, phase.arrival,
                           phase.burstiness, phase.seed)
    mine, workers = phase.stride
    numbered: Iterator[tuple[int, float]] = enumerate(offsets)
    if workers > 1:   # this worker's arrivals of the phase's one schedule
        count = phase.max_requests
        numbered = (kt for kt in itertools.takewhile(
            lambda kt: count is None or kt[0] < count, numbered) if kt[0] % workers == mine)
    schedule = _Numbered(numbered)
    remaining = None if phase.max_requests is None else \
        len(range(mine, phase.max_requests, workers))
    for seq, offset in enumerate(schedule):
        if remaining is not None and remaining <= 0:
            return   # whichever comes first: the request count ends the phase now
        intended = start_ns + int(offset * 1e9)
        await until(state.stop, intended, state.waker)
        now = time.perf_counter_ns()
        if state.stop.is_set():
            # what fell due before the stop and was not started
            if intended <= now:
                mix.pick(rng).not_sent(state.phase.name, None, 1, "stopped")
                _count_due(state, mix, rng, schedule, start_ns, now, "stopped",
                           None if remaining is None else remaining - 1)
            return
        if end_ns is not None and now > end_ns + 1_000_000_000:
            # the client fell over a second behind and the phase's time is up
            mix.pick(rng).not_sent(state.phase.name, None, 1, "phase_ended")
            _count_due(state, mix, rng, schedule, start_ns, end_ns, "phase_ended",
                       None if remaining is None else remaining - 1)
            return
        if remaining is not None:
            remaining -= 1
        flow = mix.pick(rng)
        context: dict[str, object] = {**phase.vars, "phase": phase.name, "seq": seq,
                                       "user": 0, "iteration": seq, "request": flow.plan.name}
        if trace is not None and flow.plan.data == phase.replay:
            context["row"] = trace[schedule.arrival]
        if slots.arrive(flow, intended, context, now):
            state.started += 1
    if end_ns is not None and not state.stop.is_set():
        left = (end_ns - time.perf_counter_ns()) / 1e9
        if left > 0:
            await pause(state.stop, left)


async def run_each(state: PhaseState, flows: Sequence[Flow], start_ns: int) -> None:
    """Test cases: each flow `times` times, one after another (or all at once)."""
    phase = state.phase
    rng = random.Random(phase.seed)
    calls = [(flow, k) for flow in flows for k in range(phase.times)]

    async def one(seq: int, flow: Flow, k: int) -> None:
        if state.stop.is_set():
            flow.not_sent(phase.name, None, 1, "stopped")
            return
        state.started += 1
        await _one(state, flow, time.perf_counter_ns(),
                   {**phase.vars, "phase": phase.name, "seq": seq, "user": 0, "iteration": k,
                    "request": flow.plan.name}, rng)

    if phase.concurrent:
        loop = asyncio.get_running_loop()
        for seq, (flow, k) in enumerate(calls):
            task = loop.create_task(one(seq, flow, k))
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)
        await asyncio.gather(*list(state.tasks), return_exceptions=True)
    else:
        for seq, (flow, k) in enumerate(calls):
            await one(seq, flow, k)


async def run_closed(state: PhaseState, mix: Mix, start_ns: int) -> None:
    """N users loop: pick, send, wait for the answer, think; until duration or count."""
    phase = state.phase
    rng = random.Random(phase.seed)
    users = phase.users or 0
    final = phase.users_ramp_to if phase.users_ramp_to is not None else users
    duration = phase.duration
    counter = itertools.count()

    async def user(uid: int, user_rng: random.Random) -> None:
        for iteration in itertools.count():
            if state.stop.is_set():
                return
            seq = next(counter)
            if phase.max_requests is not None and seq >= phase.max_requests:
                state.stop.set()
                return
            flow = mix.pick(user_rng)
            state.started += 1
            rest = await _run(state, flow, time.perf_counter_ns(),
                              {**phase.vars, "phase": phase.name, "seq": seq, "user": uid,
                               "iteration": iteration, "request": flow.plan.name}, user_rng)
            if phase.think_max > 0:
                rest += user_rng.uniform(phase.think_min, phase.think_max)
            if rest > 0 and not state.stop.is_set():
                await pause(state.stop, rest)

    loop = asyncio.get_running_loop()
    total = max(users, final)
    for uid in range(total):
        await until(state.stop, start_ns + int(phase.user_start(uid) * 1e9), state.waker)
        if state.stop.is_set():
            break
        task = loop.create_task(user(uid, random.Random(rng.getrandbits(64))))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
    remaining = None if duration is None else \
        (start_ns + int(duration * 1e9) - time.perf_counter_ns()) / 1e9
    if remaining is None:
        await asyncio.gather(*list(state.tasks), return_exceptions=True)
    elif remaining > 0:
        await pause(state.stop, remaining)
    state.stop.set()    # users finish their current request and leave
