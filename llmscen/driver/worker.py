"""One load-generating worker: its share of the plan, run phase by phase on the driver's word.

A `Worker` runs wherever the driver puts it — in the driver's own event loop,
in a local process (`--workers N`), or in a Ray actor — and speaks only the
messages of `driver/messages.py`: it waits for `StartPhase`, runs its share of
that phase, says `PhaseDone`, and reports `Progress` every second and a
`Snapshot` of everything measured every few seconds, then `Final`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil

from llmscen.compile.plan import Plan
from llmscen.compile.share import phase_share, share
from llmscen.driver import messages as m
from llmscen.driver.context import server_info, target_model
from llmscen.engine.events import BaseHandler, Completed, Fanout, Handler, NotSent, Tick
from llmscen.engine.events import Note as NoteEvent
from llmscen.engine.protocol import Exposed
from llmscen.engine.run import Engine
from llmscen.errors import RunError
from llmscen.metrics.recorder import Recorder
from llmscen.metrics.request_log import RequestLog
from llmscen.metrics.results import Meta, TargetInfo
from llmscen.metrics.series import SEAL_AFTER
from llmscen.spec.metrics import split_key
from llmscen.spec.server_families import FAMILIES, IN_FLIGHT

log = logging.getLogger(__name__)
SNAPSHOT_S = 2.0        # a lost worker loses at most this much of its histograms
FD_RESERVE = 128        # descriptors kept free for logs, services, the runners' own use
NOT_THE_API_AFTER = 5   # this many first answers, all "no such endpoint", end the run
LIVE_BUCKETS_US = tuple(round(b * 1e6) for b in m.LIVE_BUCKETS)
SERVER_DRAIN_S = 2.0    # how long the phase end waits for the servers to finish its requests
NOT_THE_API_STATUS = frozenset({404, 405, 501})

Send = Callable[[m.Report], None]


def raise_descriptor_limit() -> int:
    """Raise the soft limit on open files to the hard one; the in-flight cap it allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return max(16, soft - FD_RESERVE)


def open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


class Watch(BaseHandler):
    """Inside a worker: running totals, the signals the driver judges by, and the
    once-a-second `Progress` report."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.requests = self.ok = self.check_failures = self.not_sent = self.emfile = 0
        self.client_waits = 0      # arrivals that waited for the client's own in-flight limit
        self.errors: dict[str, int] = {}
        self.not_sent_by: dict[str, int] = {}
        self.streak: dict[str, int] = {}
        self.faults: dict[str, tuple[int, str]] = {}   # target → (fault at, what), until it
        #                                                 recovers
        self.first: dict[str, list[str]] = {}        # target → evidence of its first answers
        self.judged_targets: set[str] = set()
        # --prometheus only: ITL gaps counted into the live buckets since the last report
        self.live = worker.plan.run.live_export
        self.itl: dict[tuple[str, str], tuple[list[int], int]] = {}
        self.server: dict[tuple[str, str], float] = {}   # worker 0: known gauges, as last read

    def on_completed(self, event: Completed) -> None:
        self.requests += 1
        ex = event.exchange
        error = ex.error
        if error is None:
            self.ok += 1
        elif error == "check":
            self.check_failures += 1
        else:
            self.errors[error] = self.errors.get(error, 0) + 1
            if error == "client" and "too many open files" in ex.error_message:
                self.emfile += 1
        target = event.target
        fault = self.faults.get(target)
        # connections refused while a fault of the plan acts on the target are expected
        self.streak[target] = self.streak.get(target, 0) + 1 \
            if error == "connect" and fault is None else 0
        if fault is not None and error is None and ex.sent_ns >= fault[0]:
            del self.faults[target]
            took = ex.end_ns - fault[0]
            self.worker.recorder.store.record_value(event.phase, event.request, target,
                                                    "time_to_recover", (took + 500) // 1000)
            self.worker.send(m.Note(self.worker.index, f"target {target!r} answered again "
                                    f"{took / 1e9:.2f}s after {fault[1]}"))
        if target not in self.judged_targets:
            self._first_answers(event)
        if self.live and ex.itl_us:
            counts, total = self.itl.setdefault((event.request, target),
                                                ([0] * (len(LIVE_BUCKETS_US) + 1), 0))
            for gap in ex.itl_us:
                counts[bisect.bisect_left(LIVE_BUCKETS_US, gap)] += 1
            self.itl[(event.request, target)] = (counts, total + sum(ex.itl_us))

    def take_itl(self) -> dict[tuple[str, str], tuple[list[int], int]]:
        taken, self.itl = self.itl, {}
        return taken

    def _first_answers(self, event: Completed) -> None:
        ex = event.exchange
        target = event.target
        if ex.error == "http" and ex.status in NOT_THE_API_STATUS:
            seen = self.first.setdefault(target, [])
            seen.append(f"{event.request}: HTTP {ex.status}: {ex.error_message[:160]}")
            if len(seen) >= NOT_THE_API_AFTER:
                self.judged_targets.add(target)
                self.worker.not_the_api(target, seen)
        elif ex.error not in ("connect", "timeout", "cancelled"):
            self.judged_targets.add(target)   # it answered something else: it speaks the API

    def on_not_sent(self, event: NotSent) -> None:
        self.not_sent += event.count
        self.not_sent_by[event.why] = self.not_sent_by.get(event.why, 0) + event.count

    def on_tick(self, event: Tick) -> None:
        if event.client_cap:
            self.client_waits += event.slot_waits
        self.worker.progress(event)

    def on_note(self, event: NoteEvent) -> None:
        self.worker.send(m.Note(self.worker.index, event.message))

    def counts(self) -> m.Counts:
        return m.Counts(self.requests, self.ok, self.check_failures, self.not_sent,
                        dict(self.errors))


class Worker:
    def __init__(self, plan: Plan, index: int, count: int, registry: Any, send: Send, *,
                 origin_ns: int, log_path: str | None = None, snapshots: bool = True) -> None:
        self.plan = plan
        self.index = index
        self.send = send
        self.origin_ns = origin_ns
        self.snapshots = snapshots
        self.cap = raise_descriptor_limit()
        self.count = count
        self.mine = share(plan, index, count)
        self.recorder = Recorder(Meta(scenario=plan.name))
        self.watch = Watch(self)
        handlers: list[Handler] = [self.recorder, self.watch]
        self.log = RequestLog(log_path, index) if log_path else None
        if self.log is not None:
            handlers.append(self.log)
        self.engine = Engine(self.mine, registry, Fanout(handlers), worker=(index, count),
                             in_flight_cap=self.cap)
        self._phase: asyncio.Task[None] | None = None
        self._scraped: dict[str, Exposed] | None = None
        self._last_tick: Tick | None = None
        self._process = psutil.Process()

    # -- reports -----------------------------------------------------------------------
    def progress(self, tick: Tick | None = None, final: bool = False) -> None:
        """Report now; `final`: nothing more will complete, so every second goes."""
        if tick is not None:
            self._last_tick = tick
            running = self._users(tick.phase)
            if running:
                self.recorder.store.note_users(tick.now, running, phase=tick.phase)
        t = tick or self._last_tick
        states = self.engine.live      # a phase of parallel groups runs several at once
        in_flight = sum(s.in_flight for s in states) if states else t.in_flight if t else 0
        now = (time.perf_counter_ns() - self.origin_ns) / 1e9
        sealed = sys.maxsize if final else int(now) - SEAL_AFTER
        self.send(m.Progress(
            worker=self.index, now=now, phase=t.phase if t else "", counts=self.watch.counts(),
            tick=tick is not None,
            in_flight=in_flight, max_lag=t.max_lag if t else 0.0,
            loop_lag=t.loop_lag if t else 0.0, cpu=t.cpu if t else 0.0,
            points=self.recorder.store.take_series(sealed),
            connect_streak={k: v for k, v in self.watch.streak.items() if v},
            not_sent_by=dict(self.watch.not_sent_by),
            descriptors=(open_descriptors(), self.cap + FD_RESERVE), emfile=self.watch.emfile,
            client_waits=self.watch.client_waits, users=self._users(),
            rss=self._rss(), itl=self.watch.take_itl(), server=dict(self.watch.server)))

    def _rss(self) -> int:
        try:
            return int(self._process.memory_info().rss)
        except psutil.Error:
            return 0

    def _users(self, phase: str | None = None) -> int:
        """Virtual users running now in closed phases (or groups), or in `phase` alone: each
        user is one task of its phase."""
        return sum(len(s.tasks) for s in self.engine.live if s.phase.kind == "closed" and
                   phase in (None, s.phase.name))

    def not_the_api(self, target: str, evidence: list[str]) -> None:
        url = next((t.url or "" for t in self.plan.targets if t.name == target), "")
        self.send(m.NotTheApi(self.index, target, url, "; ".join(evidence[:2])))

    def _snapshot(self) -> m.Snapshot:
        results = self.recorder.store.to_results(
            self.recorder.meta, checks=list(self.recorder.checks.values()),
            server_metrics=self.recorder.server, series=False)
        return m.Snapshot(self.index, results.to_json(),
                          sum(s.counters.requests for s in results.scopes))

    async def _snapshots(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_S)
            # encode one histogram per loop turn: a whole snapshot at once would stall
            # the schedule for tens of milliseconds
            for key in self.recorder.store.scope_keys():
                for histogram in self.recorder.store.scope(*key).histograms().values():
                    if histogram.count:
                        histogram.encode()
                        await asyncio.sleep(0)
            self.send(self._snapshot())

    # -- the command loop ----------------------------------------------------------------
    async def serve(self, commands: asyncio.Queue[m.Command]) -> None:
        """Set up, then obey commands until `Finish` (or a fatal failure); always end with
        `Final` when set-up got as far as measuring anything."""
        try:
            await self.engine.start(self.origin_ns)
        except RunError as exc:
            self.send(m.Failed(self.index, exc.kind, str(exc)))
            await self._close()
            return
        except Exception as exc:   # a bug: say it, don't vanish
            self.send(m.Failed(self.index, "worker_failed",
                               f"worker {self.index} failed to start: {type(exc).__name__}: "
                               f"{exc}"))
            await self._close()
            return
        log.info("worker %d ready: %d targets, in-flight cap %d", self.index,
                 len(self.plan.targets), self.cap)
        self.send(m.Ready(self.index, self.cap, await self._targets() if self.index == 0 else []))
        snapshots = asyncio.create_task(self._snapshots()) if self.snapshots else None
        try:
            while True:
                command = await commands.get()
                if isinstance(command, m.StartPhase):
                    self._phase = asyncio.create_task(self._run_phase(command))
                elif isinstance(command, m.SnapshotNow):
                    self.send(self._snapshot())
                elif isinstance(command, m.Scrape):
                    await self._scrape(command.phase)
                elif isinstance(command, m.Share):
                    self.engine.share(command.values)
                elif isinstance(command, m.FaultStarted):
                    for target in command.targets:
                        self.watch.faults[target] = (command.at_ns, command.what)
                elif isinstance(command, m.Stop):
                    self.engine.interrupt(abandon=command.abandon)
                    if command.abandon and self._phase is not None:
                        await self._phase
                elif isinstance(command, m.Finish):
                    break
            if self._phase is not None:
                await self._phase
        except Exception as exc:
            self.send(m.Failed(self.index, "worker_failed",
                               f"worker {self.index} failed: {type(exc).__name__}: {exc}"))
        finally:
            if snapshots is not None:
                snapshots.cancel()
            if self._phase is not None and not self._phase.done():
                self.engine.interrupt(abandon=True)
                with contextlib.suppress(BaseException):
                    await self._phase
            await self._close()

    async def _run_phase(self, command: m.StartPhase) -> None:
        phase = self.mine.phases[command.index] if command.phase is None else \
            phase_share(command.phase, self.index, self.count)
        log.debug("worker %d: phase %r starts (its share: rate %s, users %s)", self.index,
                  phase.name, phase.rate, phase.users)
        self.origin_ns = self.engine.origin_ns = command.origin_ns
        interval = self.plan.run.server_interval
        if command.watch and self._scraped is None:
            # it takes over from a lost worker: a baseline first (before the shared start)
            await self._scrape(None)
        watching = asyncio.create_task(self._read_servers(phase.name, interval)) \
            if command.watch and interval > 0 and self._scraped else None
        try:
            await self.engine.run_phase(phase, command.start_ns)
        finally:
            if watching is not None:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
            if command.watch and self._scraped and not self.engine.interrupted:
                await self._server_drained(phase.name)
            info = self.recorder.store.phase_info(phase.name)
            self.progress()
            self.send(m.PhaseDone(self.index, command.index,
                                  info.started if info else 0.0, info.ended if info else 0.0,
                                  self.engine.captured if phase.role == "before" else {}))

    async def _targets(self) -> list[TargetInfo]:
        """The targets as reached: resolved URLs, what each server says it is, and the
        metrics it exposes (so `server.*` SLOs are checked before traffic)."""
        out = []
        exposed = await self.engine.scrape()
        for target in self.plan.targets:
            runner = self.engine.runners.get(target.name)
            server = await server_info(runner, target.name) if runner is not None else {}
            log.info("target %r at %s: %s", target.name, target.url,
                     ", ".join(f"{k} {v}" for k, v in server.items()) or "no server identity")
            out.append(TargetInfo(name=target.name, plugin=target.plugin,
                                  service=target.service, model=target_model(target),
                                  url=target.url, server=server,
                                  metrics=exposed[target.name].names()
                                  if target.name in exposed else []))
        return out

    async def _scrape(self, phase: str | None) -> None:
        now = await self.engine.scrape()
        if phase is not None and self._scraped is not None:
            self.engine.report_scrape(phase, self._scraped, now)
        self._scraped = now

    async def _server_drained(self, phase: str) -> None:
        """Worker 0, once the phase's own requests have ended: wait (at most
        SERVER_DRAIN_S) until no target reports requests running or waiting, so the
        phase-end reading, taken after this barrier, holds all of the phase's requests."""
        deadline = time.monotonic() + SERVER_DRAIN_S
        busy: dict[str, float] = {}
        while True:
            busy = {}
            for target, exposed in (await self.engine.scrape()).items():
                n = sum(v for k, v in exposed.values.items() if split_key(k)[0] in IN_FLIGHT)
                if n > 0:
                    busy[target] = n
            if not busy or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        for target, n in busy.items():
            self.engine.note(f"phase {phase!r}: target {target!r} still had {n:g} requests "
                             f"running or waiting on the server {SERVER_DRAIN_S:g}s after the "
                             "phase's last response; its server figures for the phase may "
                             "miss them")

    async def _read_servers(self, phase: str, interval: float) -> None:
        """Worker 0, while `phase` runs: the targets' metrics every `interval` seconds, as
        per-second series (metrics/server.py)."""
        due = 0.0
        while True:
            now = (time.perf_counter_ns() - self.origin_ns) / 1e9
            # on the run's whole intervals, so one reading falls in each
            due = max(due + interval, (now // interval + 1) * interval)
            await asyncio.sleep(max(0.0, due - now))
            for target, exposed in (await self.engine.scrape()).items():
                self.recorder.server_series.add(due, phase, target, exposed)
                if self.watch.live:
                    self.watch.server.update(
                        ((target, k), v) for k, v in exposed.values.items()
                        if split_key(k)[0] in FAMILIES and
                        exposed.types.get(split_key(k)[0]) == "gauge")

    async def _close(self) -> None:
        try:
            await self.engine.close()
        finally:
            self.progress(final=True)
            self.send(m.Final(self.index, self.recorder.results().to_json()))
