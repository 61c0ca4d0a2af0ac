"""The load models: open (arrivals on a schedule) and closed (virtual users).

Both pick a request from the weighted mix with the phase's seeded RNG and
hand it to its Flow with the intended start. In the open model the intended
start comes from the schedule, never from when the loop got round to it, so
a late client or a slow server cannot hide delay (coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from llmscen.compile.plan import PhasePlan
from llmscen.engine.feed import DataExhausted
from llmscen.engine.flow import Flow
from llmscen.engine.schedule import arrivals


@dataclass
class PhaseState:
    """What the supervisor watches while a phase runs."""

    phase: PhasePlan
    started: int = 0
    in_flight: int = 0
    max_lag_ns: int = 0            # worst spawn lag since the last tick
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    exhausted: str | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep for `seconds`, or less if `stop` is set meanwhile."""
    if seconds <= 0 or stop.is_set():
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class Mix:
    """Weighted choice of a flow, reproducible from the RNG."""

    def __init__(self, flows: Sequence[Flow]) -> None:
        self.flows = list(flows)
        self.cum = list(itertools.accumulate(f.plan.weight for f in flows))

    def pick(self, rng: random.Random) -> Flow:
        if len(self.flows) == 1:
            return self.flows[0]
        return rng.choices(self.flows, cum_weights=self.cum, k=1)[0]


async def _one(state: PhaseState, flow: Flow, intended_ns: int, context: dict[str, object],
               rng: random.Random, gate: asyncio.Semaphore | None) -> None:
    state.in_flight += 1
    try:
        if gate is None:
            await flow.execute(state.phase.name, intended_ns, context, rng)
        else:
            async with gate:
                await flow.execute(state.phase.name, intended_ns, context, rng)
    except DataExhausted as exc:
        state.exhausted = str(exc)
        state.stop.set()
    finally:
        state.in_flight -= 1


async def run_open(state: PhaseState, mix: Mix, start_ns: int) -> None:
    """Start requests on the phase's schedule until its duration or request count."""
    phase = state.phase
    rng = random.Random(phase.seed)
    gate = asyncio.Semaphore(phase.max_in_flight) if phase.max_in_flight else None
    schedule = arrivals(phase.rate or 0.0, phase.ramp_to, phase.duration, phase.arrival,
                        phase.burstiness, phase.seed)
    loop = asyncio.get_running_loop()
    for seq, offset in enumerate(schedule):
        if phase.max_requests is not None and seq >= phase.max_requests:
            return   # whichever comes first: the request count ends the phase now
        intended = start_ns + int(offset * 1e9)
        delay = (intended - time.perf_counter_ns()) / 1e9
        if delay > 0:
            await pause(state.stop, delay)
        if state.stop.is_set():
            break
        lag = time.perf_counter_ns() - intended
        if lag > state.max_lag_ns:
            state.max_lag_ns = lag
        flow = mix.pick(rng)
        task = loop.create_task(_one(state, flow, intended, {"phase": phase.name, "seq": seq,
                                                            "user": 0, "iteration": seq,
                                                            "request": flow.plan.name},
                                     rng, gate))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
        state.started += 1
    if phase.duration is not None and not state.stop.is_set():
        remaining = (start_ns + int(phase.duration * 1e9) - time.perf_counter_ns()) / 1e9
        if remaining > 0:
            await pause(state.stop, remaining)


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
            await _one(state, flow, time.perf_counter_ns(),
                       {"phase": phase.name, "seq": seq, "user": uid, "iteration": iteration,
                        "request": flow.plan.name}, user_rng, None)
            if phase.think_max > 0 and not state.stop.is_set():
                await pause(state.stop, user_rng.uniform(phase.think_min, phase.think_max))

    loop = asyncio.get_running_loop()
    total = max(users, final)
    for uid in range(total):
        # a user starts when the spawn rate and the users ramp both allow it
        at = uid / phase.spawn_rate if phase.spawn_rate else 0.0
        if uid >= users and duration:
            at = max(at, duration * (uid - users + 1) / (final - users + 1))
        delay = (start_ns + int(at * 1e9) - time.perf_counter_ns()) / 1e9
        if delay > 0:
            await pause(state.stop, delay)
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
