"""Several local worker processes sharing one plan (`--workers N`).

The parent starts the services once and gives every worker the same plan
with target URLs filled in; each worker takes its share of every phase's rate,
users and request count, and a seed of its own. All workers start phases at
the same instant (perf_counter is one clock for the whole machine), so their
per-second series line up, and their histograms merge exactly.
Workers report progress to the parent through a queue; the parent relays it
to its own handlers and merges the results at the end.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
import queue
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmscen.compile.plan import PhasePlan, Plan
from llmscen.engine.events import BaseHandler, Completed, Handler

START_MARGIN_S = 0.2   # from the last worker ready to the shared start
READY_TIMEOUT_S = 120.0


def _split(total: int | None, index: int, count: int) -> int | None:
    """Worker `index`'s part of `total` (the first ones take the remainder)."""
    if total is None:
        return None
    return total // count + (1 if index < total % count else 0)


def _split_by(total: int | None, weights: list[int], index: int) -> int | None:
    """Worker `index`'s part of `total`, in proportion to `weights` (largest remainders)."""
    if total is None or sum(weights) == 0:
        return total if index == 0 else (None if total is None else 0)
    exact = [total * w / sum(weights) for w in weights]
    parts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in by_remainder[:total - sum(parts)]:
        parts[i] += 1
    return parts[index]


def share(plan: Plan, index: int, count: int) -> Plan:
    """The part of `plan` worker `index` of `count` runs."""
    phases: list[PhasePlan] = []
    for p in plan.phases:
        update: dict[str, Any] = {"seed": p.seed + index * 1_000_003}
        if p.kind != "pause":
            update["max_requests"] = _split(p.max_requests, index, count)
            update["expected_requests"] = _split(p.expected_requests, index, count)
        if p.kind == "open":
            update["rate"] = (p.rate or 0.0) / count
            update["ramp_to"] = None if p.ramp_to is None else p.ramp_to / count
            if p.max_in_flight:
                update["max_in_flight"] = max(1, math.ceil(p.max_in_flight / count))
        elif p.kind == "closed":
            users = [_split(p.users, i, count) or 0 for i in range(count)]
            update["users"] = users[index]
            update["users_ramp_to"] = _split(p.users_ramp_to, index, count)
            update["spawn_rate"] = None if p.spawn_rate is None else p.spawn_rate / count
            # requests follow the users: a worker with no users sends nothing
            update["max_requests"] = _split_by(p.max_requests, users, index)
            update["expected_requests"] = _split_by(p.expected_requests, users, index)
        phases.append(p.model_copy(update=update))
    return plan.model_copy(update={"phases": tuple(phases), "seed": plan.seed + index})


class Relay(BaseHandler):
    """Inside a worker: sends progress to the parent once a second."""

    def __init__(self, out: Any, index: int) -> None:
        self.out = out
        self.index = index
        self.counts = [0, 0, 0, 0]   # done, ok, errors, check failures

    def completed(self, event: Completed) -> None:
        c = self.counts
        c[0] += 1
        error = event.exchange.error
        c[1 if error is None else 3 if error == "check" else 2] += 1

    def phase_started(self, phase: PhasePlan, now: float) -> None:
        self.out.put(("phase", self.index, phase.name, now))

    def in_flight(self, now: float, count: int) -> None:
        self.out.put(("tick", self.index, now, count, tuple(self.counts)))

    def note(self, message: str) -> None:
        self.out.put(("note", self.index, message))


def worker_main(plan: Plan, index: int, count: int, start_at: Any, log_dir: str | None,
                out: Any, stop: Any, make_recorder: Callable[[Plan], Any]) -> None:
    """A worker process: run its share, send back results (or why it could not run).

    `make_recorder(plan)` builds the handler that aggregates; its `results()`
    must have `to_json()`. It is passed in so the engine needn't know metrics.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent decides when to stop
    from llmscen.engine.events import Fanout
    from llmscen.engine.loop import run_loop
    from llmscen.engine.registry import Registry
    from llmscen.engine.run import Engine, RunError

    recorder = make_recorder(plan)
    mine = share(plan, index, count)

    async def gate() -> int:
        """Say we are ready; wait for the parent to set the shared start."""
        out.put(("ready", index))
        while not start_at.value and not stop.is_set():
            await asyncio.sleep(0.005)
        return int(start_at.value) or time.perf_counter_ns()

    async def main() -> None:
        engine = Engine(mine, Registry.discover(), Fanout([recorder, Relay(out, index)]),
                        log_dir=log_dir, worker=(index, count), start_gate=gate)

        async def watch() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.1)
            engine.interrupt()

        watcher = asyncio.create_task(watch())
        try:
            await engine.run()
        finally:
            watcher.cancel()

    try:
        run_loop(main)
    except RunError as exc:
        out.put(("error", index, str(exc)))
        return
    except Exception as exc:  # report, don't vanish: the parent must not wait forever
        out.put(("error", index, f"worker {index} failed: {type(exc).__name__}: {exc}"))
        return
    out.put(("results", index, recorder.results().to_json()))


@dataclass
class Pool:
    """The parent's side: start workers, relay their progress, collect their results."""

    plan: Plan
    count: int
    handler: Handler
    make_recorder: Callable[[Plan], Any]
    log_dir: str | None = None
    results: dict[int, bytes] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    async def run(self, interrupted: asyncio.Event) -> None:
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        stop = ctx.Event()
        start_at = ctx.Value("q", 0)    # perf_counter_ns of the shared start, 0 until all ready
        procs = [ctx.Process(target=worker_main, name=f"llmscen-worker-{i}", daemon=True,
                             args=(self.plan, i, self.count, start_at, self.log_dir, out, stop,
                                   self.make_recorder))
                 for i in range(self.count)]
        for proc in procs:
            proc.start()
        ticks: dict[int, tuple[int, int, int, int]] = {}
        in_flight: dict[int, int] = {}
        finished: set[int] = set()
        started_phases: set[str] = set()
        ready: set[int] = set()
        deadline = time.monotonic() + READY_TIMEOUT_S
        loop = asyncio.get_running_loop()
        try:
            while len(finished) < self.count:
                if interrupted.is_set():
                    stop.set()
                try:
                    msg = await loop.run_in_executor(None, out.get, True, 0.25)
                except queue.Empty:
                    if not start_at.value and time.monotonic() > deadline:
                        self.errors.append(f"workers not ready after {READY_TIMEOUT_S:g}s")
                        stop.set()
                    dead = [i for i, p in enumerate(procs) if not p.is_alive() and i not in
                            finished]
                    if dead and out.empty():
                        for i in dead:
                            self.errors.append(f"worker {i} exited with code "
                                               f"{procs[i].exitcode} without results")
                            finished.add(i)
                    continue
                kind, index = msg[0], msg[1]
                if kind == "ready":
                    ready.add(index)
                    if len(ready) == self.count:
                        start_at.value = time.perf_counter_ns() + int(START_MARGIN_S * 1e9)
                elif kind == "tick":
                    _, _, now, count, counts = msg
                    ticks[index], in_flight[index] = counts, count
                    if index == 0:
                        totals = tuple(sum(t[k] for t in ticks.values()) for k in range(4))
                        relay_counts(self.handler, totals)
                        self.handler.in_flight(now, sum(in_flight.values()))
                elif kind == "phase":
                    name, now = msg[2], msg[3]
                    if name not in started_phases:
                        started_phases.add(name)
                        phase = next(p for p in self.plan.phases if p.name == name)
                        self.handler.phase_started(phase, now)
                elif kind == "note":
                    self.handler.note(f"worker {index}: {msg[2]}")
                elif kind == "results":
                    self.results[index] = msg[2]
                    finished.add(index)
                elif kind == "error":
                    self.errors.append(msg[2])
                    finished.add(index)
                    stop.set()      # one worker cannot run: stop the others too
        finally:
            stop.set()
            for proc in procs:
                await loop.run_in_executor(None, proc.join, 10)
                if proc.is_alive():
                    proc.kill()


def relay_counts(handler: Handler, totals: tuple[int, ...]) -> None:
    """Give progress-style handlers the workers' summed counters."""
    set_counts = getattr(handler, "set_counts", None)
    if set_counts is not None:
        set_counts(*totals)
    for inner in getattr(handler, "handlers", ()):
        relay_counts(inner, totals)

