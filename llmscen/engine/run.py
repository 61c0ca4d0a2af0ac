"""One process's part of a run: runners for every target, flows, and one phase at a time.

The driver (llmscen/driver/) starts the services, gives every worker the plan
with the targets' URLs filled in, and tells each when to start a phase; an
Engine runs its share of that phase from the shared start instant until its
arrivals are done and its in-flight requests have drained, so the next phase
starts only after every request of this one ended. Whatever happens, handlers
get `RunEnded`, so what was measured is saved.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from llmscen.compile.plan import PhasePlan, Plan
from llmscen.compile.tokenizer_file import TokenizerFileError, file_counter
from llmscen.compile.trace import read_trace
from llmscen.engine.events import (
    Handler,
    Note,
    PhaseEnded,
    PhaseStarted,
    RunEnded,
    RunStarted,
    ServerScrape,
    Tick,
)
from llmscen.engine.feed import Feeder
from llmscen.engine.flow import Flow
from llmscen.engine.load import (
    Mix,
    PhaseState,
    default_cap_note,
    pause,
    run_closed,
    run_each,
    run_open,
    until,
)
from llmscen.engine.protocol import (
    Call,
    Exposed,
    Runner,
    Tokenizing,
    exposing,
    reconnects,
    target_timeout,
    tokenizer,
)
from llmscen.engine.synthetic import SynthesisError, synthesize, synthesize_trace, words_count
from llmscen.errors import RunError
from llmscen.timer import Waker

DEFAULT_DRAIN_S = 30.0
INTERRUPT_GRACE_S = 2.0     # in-flight requests get this long after a stop, then are cancelled


class Engine:
    def __init__(self, plan: Plan, registry: Any, handler: Handler, *,
                 worker: tuple[int, int] = (0, 1), in_flight_cap: int | None = None) -> None:
        self.plan = plan
        self.registry = registry
        self.handler = handler
        self.worker = worker
        self.in_flight_cap = in_flight_cap
        self.stop = asyncio.Event()
        self.interrupted = False
        self.abandoned = False
        self.origin_ns = time.perf_counter_ns()
        self.live: list[PhaseState] = []
        self.runners: dict[str, Runner] = {}
        self.flows: list[Flow] = []
        self.captured: dict[str, object] = {}    # what this worker's `before:` flows captured
        self.traces: dict[str, list[dict[str, Any]]] = {}   # trace data → its made rows
        self._stack = AsyncExitStack()
        self.waker: Waker | None = None

    def now(self) -> float:
        return (time.perf_counter_ns() - self.origin_ns) / 1e9

    def interrupt(self, abandon: bool = False) -> None:
        """Stop scheduling; in-flight requests get a short grace (none if `abandon`), then
        are cancelled and counted as such."""
        self.interrupted = True
        self.abandoned = self.abandoned or abandon
        self.stop.set()
        for state in self.live:
            state.stop.set()

    def note(self, message: str) -> None:
        self.handler.handle(Note(message))

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self, origin_ns: int | None = None) -> None:
        """Start a runner per target, check the targets, build the flows.

        Raises `RunError` (kind `plugin_failed`, `target_unreachable` or
        `target_not_ready`) when the run cannot go ahead.
        """
        if origin_ns is not None:
            self.origin_ns = origin_ns
        self.waker = waker = Waker(asyncio.get_running_loop())
        self._stack.callback(waker.close)
        for target in self.plan.targets:
            entry = self.registry.plugins[target.plugin]
            where = f"plugin {target.plugin!r} ({entry.origin})"
            try:
                runner = entry.obj.create_runner(target)
                self._stack.push_async_callback(runner.stop)
                await runner.start()
            except Exception as exc:  # a plugin may raise anything; say whose it was
                kind = "target_unreachable" if isinstance(exc, (OSError, TimeoutError)) \
                    else "plugin_failed"
                raise RunError(f"target {target.name!r} at {target.url}: {where} could not "
                               f"start: {type(exc).__name__}: {exc}", kind) from None
            self.runners[target.name] = runner
        problems = []
        for target in self.plan.targets:
            calls = [Call(request=r.name, payload=r.steps[0].payload, stream=r.stream)
                     for r in self.plan.requests if r.target == target.name]
            try:
                problems += await self.runners[target.name].preflight(calls)
            except Exception as exc:
                problems.append(f"target {target.name!r}: preflight failed: "
                                f"{type(exc).__name__}: {exc}")
        if problems:
            raise RunError("the targets are not ready for this scenario:\n  " +
                           "\n  ".join(problems), "target_not_ready")
        made = await self._synthesize()
        self.traces = {d.name: made[d.name] for d in self.plan.data if d.trace is not None}
        self.flows = self._flows(made)
        self.handler.handle(RunStarted(self.plan))
        # what setup built lives for the whole run: keep it out of the collector's
        # full passes, which otherwise pause the client for tens of milliseconds
        gc.collect()
        gc.freeze()

    async def close(self) -> None:
        """Stop the runners; handlers get `RunEnded`."""
        try:
            self._note_reconnects()
            await self._stack.aclose()
        finally:
            self.handler.handle(RunEnded(self.now(), self.interrupted))

    async def _synthesize(self) -> dict[str, list[dict[str, Any]]]:
        """The rows of `synthetic:` data and of traces, counted by their target's tokenizer."""
        made = {}
        for data in self.plan.data:
            made_by = data.synthetic or data.trace
            if made_by is None:
                continue
            count = self._counter(data.name, made_by.tokenizer if made_by.target else "words",
                                  made_by.target or "", made_by.api == "chat",
                                  made_by.tokenizer_file)
            if data.trace is not None:
                made[data.name] = await synthesize_trace(
                    data.trace, read_trace(data.file, data.format), count, data.name)
            elif data.synthetic is not None:
                made[data.name] = await synthesize(data.synthetic, data.rows, count, data.name)
        return made

    def _counter(self, name: str, how: str, target: str, chat: bool, file: str = ""
                 ) -> Callable[[str], Awaitable[int]]:
        """What counts a made prompt's tokens: words, a tokenizer file, or the target's
        own tokenizer."""
        if how == "words":
            async def words(text: str) -> int:
                return words_count(text)
            return words
        if how == "file":
            try:
                counted = file_counter(file)
            except TokenizerFileError as exc:   # checked when compiled; gone since?
                raise SynthesisError(f"data {name!r}: {exc}") from None

            async def offline(text: str) -> int:
                return counted(text)
            return offline
        counter = tokenizer(self.runners[target])
        if counter is None:
            raise RunError(f"data {name!r}: target {target!r} cannot count tokens (its "
                           "plugin has no tokenizer); use `tokenizer: words`",
                           "target_not_ready")

        async def count(text: str, counter: Tokenizing = counter) -> int:
            return await counter.count_tokens(text, chat)
        return count

    def _flows(self, made: dict[str, list[dict[str, Any]]]) -> list[Flow]:
        feeders = {d.name: Feeder(d, self.plan.seed, *self.worker, rows=made.get(d.name))
                   for d in self.plan.data}
        base_dir = str(Path(self.plan.file).parent)
        plugins = {t.name: f"plugin {t.plugin!r} ({self.registry.plugins[t.plugin].origin})"
                   for t in self.plan.targets}
        return [Flow(r, self.runners[r.target], feeders.get(r.data) if r.data else None,
                     self.plan.goodput, self.handler, self.origin_ns, base_dir,
                     plugins[r.target])
                for r in self.plan.requests]

    # -- a phase -----------------------------------------------------------------------
    async def run_phase(self, phase: PhasePlan, start_ns: int) -> None:
        """This worker's share of `phase`, from `start_ns` until its requests have ended.

        A phase of `groups` runs each group's load model at once, each recorded as a phase
        of its own (named `phase.group`, with `phase` as its parent)."""
        for flow in self.flows:
            flow.origin = self.origin_ns
        await until(self.stop, start_ns, self.waker)
        parts = list(phase.groups) if phase.kind == "parallel" else [phase]
        states = [PhaseState(p, in_flight_cap=self.in_flight_cap, waker=self.waker)
                  for p in parts]
        self.live = states
        started = self.now()
        if phase.kind == "parallel":
            self.handler.handle(PhaseStarted(phase, started))
        for state in states:
            if self.stop.is_set():
                state.stop.set()
            self.handler.handle(PhaseStarted(state.phase, started))
        supervisors = [asyncio.create_task(self._supervise(state, start_ns)) for state in states]
        try:
            await asyncio.gather(*(self._load(state, start_ns) for state in states))
            # the phase ends when its requests have: the next one starts after all ended
            await self._drain(states)
            for state in states:
                if state.exhausted:
                    self.note(f"phase {state.phase.name!r} stopped early: {state.exhausted}")
                if state.cap_waits and not state.client_cap and not state.phase.max_in_flight:
                    self.note(default_cap_note(state.phase.name))
                if state.captured:
                    self.captured.update(state.captured)
                    self.share(state.captured)
        finally:
            for supervisor in supervisors:
                supervisor.cancel()
            ended = self.now()
            for state in states:
                self.handler.handle(PhaseEnded(state.phase, started, ended))
            if phase.kind == "parallel":
                self.handler.handle(PhaseEnded(phase, started, ended))
            self.live = []

    async def _load(self, state: PhaseState, start_ns: int) -> None:
        phase = state.phase
        if self.stop.is_set():
            return
        if phase.kind == "pause":
            await pause(self.stop, phase.duration or 0.0)
        elif phase.kind == "each":
            flows = {f.plan.name: f for f in self.flows}
            await run_each(state, [flows[name] for name in phase.cases if name in flows],
                           start_ns)
        elif phase.kind == "open":
            await run_open(state, self._mix(phase), start_ns,
                           self.traces.get(phase.replay) if phase.replay else None)
        else:
            await run_closed(state, self._mix(phase), start_ns)

    def share(self, values: dict[str, object]) -> None:
        """Values a `before:` flow captured become part of every call's context."""
        for flow in self.flows:
            flow.shared = {**flow.shared, **values}

    def _mix(self, phase: PhasePlan) -> Mix:
        """The phase's own choice of requests and weights, or every request by its weight
        (but those that run once, in `before:` and `after:`)."""
        if phase.mix is None:
            once = {*self.plan.before, *self.plan.after}
            return Mix([f for f in self.flows if f.plan.name not in once])
        flows = {f.plan.name: f for f in self.flows}
        chosen = [(flows[name], weight) for name, weight in phase.mix if name in flows]
        return Mix([f for f, _ in chosen], [w for _, w in chosen])

    async def _supervise(self, state: PhaseState, start_ns: int) -> None:
        """Once a second of the phase: what the load generator does (in flight, lag, its own
        CPU). The seconds count from the phase's intended start, as its arrivals do, not
        from when this task first ran: a loop late there would put every tick late."""
        cpu = time.process_time()
        last = time.perf_counter()
        due = _second_after(start_ns / 1e9 + 1.0, last + 0.5)
        never = asyncio.Event()     # the task is cancelled when the phase ends
        while True:
            # not asyncio.sleep: uvloop's timers fire up to a millisecond early, and a tick
            # at 4.9995 s is not yet the phase's 5th second for the live view
            await until(never, int(due * 1e9), self.waker)
            woke = time.perf_counter()
            loop_lag = max(0.0, woke - due)
            due = _second_after(due + 1.0, woke + 0.5)
            used = time.process_time() - cpu
            cpu = time.process_time()
            lag = state.max_lag_ns / 1e9
            state.max_lag_ns = 0
            waits, state.slot_waits = state.slot_waits, 0
            self.handler.handle(Tick(self.now(), state.phase.name, state.in_flight, lag,
                                     loop_lag, used / max(woke - last, 1e-3), waits,
                                     state.client_cap))
            last = woke

    def _drain_budget(self) -> float:
        if self.abandoned:
            return 0.0
        if self.interrupted:
            return INTERRUPT_GRACE_S
        timeouts = [target_timeout(t.options) for t in self.plan.targets]
        timeouts += [r.timeout for r in self.plan.requests]
        return max([float(t) for t in timeouts if t] or [DEFAULT_DRAIN_S])

    async def _drain(self, states: list[PhaseState]) -> None:
        """Wait for the phase's requests within the drain budget (cut short by an
        interrupt), those of an open phase's line too; count what still waits for a slot
        then as not sent, cancel the rest and wait until they have recorded what they saw."""
        deadline = time.monotonic() + self._drain_budget()
        for slots in (s.slots for s in states if s.slots is not None):
            while not slots.idle.is_set() and time.monotonic() < deadline:
                if self.interrupted:
                    deadline = min(deadline, time.monotonic() + self._drain_budget())
                    slots.flush("stopped")
                await pause(slots.idle, min(0.1, max(0.0, deadline - time.monotonic())))
            slots.flush("stopped")
        # what else is pending: closed users and test cases (an open phase's requests are
        # its slots', done when they are idle), or requests the deadline cut short
        pending = {t for state in states for t in state.tasks if not t.done()}
        while pending and time.monotonic() < deadline:
            if self.interrupted:
                deadline = min(deadline, time.monotonic() + self._drain_budget())
            _, pending = await asyncio.wait(pending, timeout=min(0.1, max(
                0.0, deadline - time.monotonic())))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # -- the targets' own view -----------------------------------------------------------
    async def scrape(self) -> dict[str, Exposed]:
        """Each target's server metrics now, with labels and types when its plugin reads
        them so (`Exposing`), else summed and untyped; targets with none are left out."""
        out = {}
        for name, runner in self.runners.items():
            try:
                reader = exposing(runner)
                if reader is not None:
                    exposed = await reader.exposed_metrics()
                else:
                    exposed = Exposed(values=await runner.server_metrics(), types={})
            except Exception as exc:  # scraping is best effort; say so
                self.note(f"could not read server metrics of target {name!r}: {exc}")
                exposed = None
            if exposed is not None and exposed.values:
                out[name] = exposed
        return out

    def report_scrape(self, phase: str, before: dict[str, Exposed],
                      after: dict[str, Exposed]) -> None:
        for target, now in after.items():
            then = before.get(target)
            self.handler.handle(ServerScrape(phase, target, then.values if then else {},
                                             now.values, now.types,
                                             then.buckets if then else {}, now.buckets))

    def _note_reconnects(self) -> None:
        for name, runner in self.runners.items():
            count = reconnects(runner)
            if count:
                self.note(f"target {name!r}: {count} requests were sent again on a fresh "
                          "connection because the server had closed the kept-alive one "
                          "(before any response byte); their timings start at the first try")


def _second_after(due: float, after: float) -> float:
    """The first of `due`, `due + 1`, ... that is at least `after`: a tick a stalled loop
    missed is skipped, so the ones that follow still fall on the phase's whole seconds, and
    each covers at least half a second of CPU."""
    return due if due >= after else due + math.ceil(after - due)
