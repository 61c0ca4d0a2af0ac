"""A run as a library call: plan → results with an outcome (what `llmscen run` does).

The `Driver` starts the services, starts the workers (in its own loop for one,
local processes for several), then runs the phases as barriers: every worker
starts phase N at one shared instant and phase N+1 starts only when every
worker has finished its share of N, in-flight requests included. Meanwhile it
watches what the workers report and stops the run when the answer is known: an
`abort: true` SLO failed, a service died, a target kept refusing connections or
turned out not to be the declared API, a worker was lost, or the user
interrupted. Whatever happens, everything measured is merged and judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from llmscen.assertions.slo import unknown_server_metrics
from llmscen.compile.plan import FaultPlan, PhasePlan, Plan
from llmscen.driver import messages as m
from llmscen.driver.client import ClientFigures, client_limit, judge_phase
from llmscen.driver.export import LiveExport
from llmscen.driver.faults import FaultError, run_fault
from llmscen.driver.handles import Handle, InProcess, spawn_processes
from llmscen.driver.live import Live
from llmscen.driver.resources import Sampler
from llmscen.driver.search import Search, Step, judge_step, search_step, step_line
from llmscen.driver.services import Started, start_services
from llmscen.errors import RunError
from llmscen.metrics.merge import merge
from llmscen.metrics.recorder import declared_requests
from llmscen.metrics.replay import without_samples
from llmscen.metrics.resources import phase_stats
from llmscen.metrics.results import (
    FaultInfo,
    Meta,
    Reason,
    Resources,
    RunResults,
    SearchInfo,
    Series,
)

READY_TIMEOUT_S = 120.0
FINAL_TIMEOUT_S = 15.0
CONNECT_FAILURES = 20      # consecutive connection failures to one target that end the run
START_MARGIN_S = (0.02, 0.2)   # from the barrier to the shared start: in-process, processes
log = logging.getLogger(__name__)
LOST_AFTER_S = 1.0         # a worker that ended without its final results is lost after this


class Display(Protocol):
    """What shows a run to a person while it goes (cli/progress.py)."""

    def phase_started(self, phase: PhasePlan, live: Live) -> None: ...
    def progress(self, live: Live) -> None: ...
    def note(self, message: str) -> None: ...


@dataclass
class RunOptions:
    workers: int = 1
    log_path: str | None = None
    log_dir: str | None = None             # where service logs go
    connect_failures: int = CONNECT_FAILURES   # 0: never stop for them
    display: Display | None = None
    export: LiveExport | None = None       # `--prometheus`: the live metrics served
    cluster: Any = None     # a connected driver.cluster.RayCluster: workers are its actors


@dataclass
class _Workers:
    handles: list[Handle]
    ready: set[int] = field(default_factory=set)
    done: dict[int, set[int]] = field(default_factory=dict)     # phase index → workers
    finals: dict[int, bytes] = field(default_factory=dict)
    snapshots: dict[int, bytes] = field(default_factory=dict)
    lost: set[int] = field(default_factory=set)
    kept: set[int] = field(default_factory=set)       # a snapshot of theirs holds requests
    failed: set[int] = field(default_factory=set)

    def live(self) -> list[Handle]:
        return [h for h in self.handles if h.index not in self.lost | self.failed]

    def watcher(self) -> Handle | None:
        """The worker that reads the targets' metrics: the first live one."""
        return next(iter(self.live()), None)


class Driver:
    def __init__(self, plan: Plan, registry: Any, meta: Meta, options: RunOptions) -> None:
        self.plan = plan
        self.registry = registry
        self.meta = meta
        self.options = options
        self.reasons: list[Reason] = []
        self.notes: list[str] = []
        self.scrub = plan.scrubber()    # reasons and notes quote servers, URLs, exceptions
        self.live = Live(plan.name, options.workers)
        self.client: dict[str, ClientFigures] = {}
        self.stopping = False
        self.interrupts = 0
        self.reports: asyncio.Queue[m.Report] = asyncio.Queue()
        self.workers: _Workers | None = None
        self.origin_ns = time.perf_counter_ns()
        self._last_judged = -1
        self._gone: dict[int, float] = {}
        self._stopping = asyncio.Event()
        self.finishing = False             # every phase is done: reports no longer stop the run
        self.faults: list[FaultInfo] = []
        self.searches: list[SearchInfo] = []
        self.started: Started | None = None
        self.sampler: Sampler | None = None

    # -- stopping ------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Ctrl-C / SIGTERM: the first stops scheduling (in flight gets a grace), the next
        abandons what is still in flight."""
        self.interrupts += 1
        if self.interrupts == 1:
            self._note("stopping: finishing in-flight requests (Ctrl-C again to abandon them)")
            self.stop(Reason(kind="interrupted", message="the run was interrupted (Ctrl-C or "
                                                         "SIGTERM); partial results saved"))
        else:
            self._send_all(m.Stop(abandon=True))

    def stop(self, reason: Reason, abandon: bool = False) -> None:
        if not any(r.kind == reason.kind for r in self.reasons):
            self.reasons.append(self._scrubbed(reason))
        if not self.stopping or abandon:
            self.stopping = True
            self._stopping.set()
            self._send_all(m.Stop(abandon=abandon))

    def _send_all(self, command: m.Command) -> None:
        if self.workers is not None:
            for handle in self.workers.live():
                with contextlib.suppress(Exception):
                    handle.send(command)

    def _scrubbed(self, reason: Reason) -> Reason:
        return reason.model_copy(update={"message": self.scrub(reason.message),
                                         "detail": self.scrub.data(reason.detail)})

    def _note(self, message: str) -> None:
        message = self.scrub(message)
        if message not in self.notes:
            self.notes.append(message)
        if self.options.display is not None:
            self.options.display.note(message)

    # -- the run -------------------------------------------------------------------------
    async def run(self) -> RunResults:
        self.origin_ns = time.perf_counter_ns()
        for note in self.plan.notes:     # what the compiler found runs differently than it reads
            self._note(note)
        try:
            async with start_services(self.plan, self.registry, self.options.log_dir) as started:
                self.started = started
                await self._run(started.plan, started.dead)
        except RunError as exc:
            self.reasons.append(self._scrubbed(Reason(kind=exc.kind, message=str(exc))))
        return self._results()

    async def _run(self, plan: Plan, dead: Any) -> None:
        if self.options.export is not None:     # workers add what only the export shows
            plan = plan.model_copy(update={"run": plan.run.model_copy(
                update={"live_export": True})})
        count = self.options.workers
        cluster = self.options.cluster
        pump = None
        handles: list[Handle]
        if cluster is not None:     # the same workers, as actors on a Ray cluster
            handles = list(await cluster.spawn(plan, count, self.reports,
                                               origin_ns=self.origin_ns,
                                               log_path=self.options.log_path))
            self.meta.cluster = cluster.info()
            margin = cluster.start_margin
        elif count == 1:
            handles = [InProcess(plan, self.registry, self.reports, origin_ns=self.origin_ns,
                                 log_path=self.options.log_path)]
            margin = START_MARGIN_S[0]
        else:
            processes, pump = spawn_processes(plan, count, self.reports, origin_ns=self.origin_ns,
                                              log_path=self.options.log_path)
            handles = list(processes)
            margin = START_MARGIN_S[1]
        self.workers = workers = _Workers(handles)
        self._dead = dead
        sampling: asyncio.Task[None] | None = None
        try:
            if await self._until(lambda: len(workers.ready) == len(workers.live()),
                                 READY_TIMEOUT_S, "workers not ready"):
                workers.handles[0].send(m.Scrape(None))    # the first watcher's baseline
                self.origin_ns = time.perf_counter_ns() + int(margin * 1e9)
                sampling = asyncio.create_task(self._sample())
                unknown = unknown_server_metrics(plan.slos, self.meta.targets)
                if unknown:     # before any traffic: the SLOs could never be judged
                    self.stop(Reason(kind="unknown_server_metric", message="\n".join(unknown)))
                for index, phase in enumerate(plan.phases):
                    if self.stopping:
                        break
                    if phase.kind == "search":
                        await self._search(index, phase, plan, margin)
                    else:
                        await self._phase(index, phase, plan, margin)
            self.finishing = True
            self._send_all(m.Finish())
            await self._until(lambda: not {h.index for h in workers.live()} - set(workers.finals),
                              FINAL_TIMEOUT_S, "")
        finally:
            if sampling is not None:
                sampling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampling
            for handle in handles:
                await handle.close()
            if pump is not None:
                await pump.close()
            while not self.reports.empty():
                self._on(self.reports.get_nowait())

    async def _sample(self) -> None:
        """Resources once a second of the run (driver/resources.py), off the event loop."""
        assert self.started is not None, "sampling starts once the services have"
        pids = {name: e.pid for name, e in self.started.endpoints.items() if e.pid is not None}
        separate = self.options.workers > 1 or self.options.cluster is not None
        self.sampler = sampler = await asyncio.to_thread(
            lambda: Sampler(pids, separate_workers=separate))
        due = 0     # the second of the run the next sample stands for
        try:
            while True:
                now = (time.perf_counter_ns() - self.origin_ns) / 1e9
                due = max(due + 1, math.floor(now) + 1)
                await asyncio.sleep(max(0.0, due - now))
                now = (time.perf_counter_ns() - self.origin_ns) / 1e9
                # the sample taken at the start of second `due` stands for the one before
                values = await asyncio.to_thread(sampler.sample, due - 1, self.live.running(),
                                                 self.live.worker_samples(now))
                self._export("resources", values)
        finally:
            sampler.close()

    async def _phase(self, index: int, phase: PhasePlan, plan: Plan, margin: float,
                     made: bool = False) -> None:
        """One barrier: every worker runs its share of `phase` from one instant; returns
        when all have finished. `made`: a phase made during the run (a search's step)."""
        workers = self.workers
        assert workers is not None
        workers.done.pop(index, None)
        start_ns = time.perf_counter_ns() + int(margin * 1e9)
        self.live.phase_started(phase, (start_ns - self.origin_ns) / 1e9)
        self._export("phase_started", phase.name)
        if self.options.display is not None:
            self.options.display.phase_started(phase, self.live)
        watcher = workers.watcher()
        for handle in workers.live():
            handle.send(m.StartPhase(index, start_ns, self.origin_ns, phase if made else None,
                                     watch=handle is watcher))
        faults = [asyncio.create_task(self._fault(f, plan, phase.name, start_ns))
                  for f in phase.faults]
        await self._until(lambda: not {h.index for h in workers.live()} -
                          workers.done.get(index, set()), None, "")
        await self._settle(faults)
        self.live.phase_ended((time.perf_counter_ns() - self.origin_ns) / 1e9)
        self._export("phase_ended")
        self._keep_client_figures(phase)
        watcher = workers.watcher()
        if watcher is not None:
            watcher.send(m.Scrape(phase.name))

    async def _search(self, index: int, phase: PhasePlan, plan: Plan, margin: float) -> None:
        """Run the search's steps as phases until it knows the answer (driver/search.py)."""
        spec = phase.search
        assert spec is not None and self.workers is not None
        search = Search(spec.low, spec.high, spec.precision, spec.max_steps,
                        integer=spec.axis == "users")
        info = SearchInfo(phase=phase.name, axis=spec.axis, capacity=None, ceiling=None,
                          precision=spec.precision, converged=False)
        self.searches.append(info)
        while not self.stopping and (value := search.next()) is not None:
            names = []
            for repeat in range(spec.repeats):
                trial = search_step(phase, value, repeat)
                names.append(trial.name)
                await self._phase(index, trial, plan, margin, made=True)
                if self.stopping:
                    return
            measured = await self._snapshot()
            step = judge_step(phase, value, names, measured, [self.client[n] for n in names])
            search.steps.append(Step(value=value, passed=step.passed, saturated=step.saturated,
                                     served=step.served, offered=step.offered,
                                     client_bound=step.client_bound))
            info.steps.append(step)
            self._note(f"search {phase.name!r}: {step_line(step, spec.axis)}")
            if step.client_bound:
                self.stop(Reason(kind="client_saturated", message=(
                    f"search {phase.name!r} stopped at {value:g}: the load generator, not the "
                    "server, was the bottleneck — the capacity is at least "
                    f"{search.best or 0:g}; add workers or machines to search higher")))
        info.capacity, info.ceiling = search.best, search.ceiling
        info.converged = search.converged
        info.knee = search.knee()

    async def _snapshot(self) -> RunResults:
        """Everything every worker measured so far, merged exactly."""
        workers = self.workers
        assert workers is not None
        asked = {h.index for h in workers.live()}
        for index in asked:
            workers.snapshots.pop(index, None)
        self._send_all(m.SnapshotNow())
        await self._until(lambda: not {h.index for h in workers.live()} - set(workers.snapshots),
                          FINAL_TIMEOUT_S, "")
        return merge([RunResults.from_json(workers.snapshots[i], f"worker {i}")
                      for i in sorted(workers.snapshots)])

    async def _fault(self, fault: FaultPlan, plan: Plan, phase: str, start_ns: int) -> None:
        assert self.started is not None, "faults run once the services have started"
        record = FaultInfo(phase=phase, action=fault.action, subject=fault.subject,
                           targets=list(fault.targets), at=0.0)
        try:
            await run_fault(fault, plan, self.started, start_ns, self._send_all, self._note,
                            self._stopping, record)
        except FaultError as exc:
            self.stop(Reason(kind="fault_failed", message=str(exc)))
        if record.at:   # perf_counter seconds → seconds since the run's origin
            origin = self.origin_ns / 1e9
            self.faults.append(record.model_copy(update={
                "at": record.at - origin,
                "undone_at": None if record.undone_at is None else record.undone_at - origin}))

    async def _settle(self, faults: list[asyncio.Task[None]]) -> None:
        """A phase's faults are undone before the next phase starts."""
        if faults:
            await asyncio.gather(*faults, return_exceptions=True)

    async def _until(self, done: Any, timeout: float | None, what: str) -> bool:
        """Handle reports (and watch the run) until `done()`; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done():
            if deadline is not None and time.monotonic() > deadline:
                if what:
                    self.stop(Reason(kind="worker_failed", message=f"{what} after {timeout:g}s"))
                return False
            try:
                report = await asyncio.wait_for(self.reports.get(), 0.25)
            except asyncio.TimeoutError:
                report = None
            if report is not None:
                self._on(report)
            self._watch()
        return True

    def _export(self, what: str, *args: Any) -> None:
        """Feed the live export (`--prometheus`); a failure there never stops the run."""
        export = self.options.export
        if export is None:
            return
        try:
            getattr(export, what)(*args)
        except Exception as exc:
            self.options.export = None
            self._note(f"the live metrics export stopped: {type(exc).__name__}: {exc}")

    # -- what the workers say -------------------------------------------------------------
    def _on(self, report: m.Report) -> None:
        workers = self.workers
        assert workers is not None
        if isinstance(report, m.Progress):
            self.live.progress(report)
            self._export("progress", report)
            if self.options.display is not None:
                self.options.display.progress(self.live)
            self._judge_live(report)
        elif isinstance(report, m.PhaseDone):
            workers.done.setdefault(report.index, set()).add(report.worker)
            if report.shared:
                self._send_all(m.Share(report.shared))
        elif isinstance(report, m.Ready):
            workers.ready.add(report.worker)
            if report.targets:      # resolved URLs and server identities, for the reports
                self.meta.targets = list(report.targets)
        elif isinstance(report, m.Snapshot):
            if report.requests and report.worker not in workers.kept:
                workers.kept.add(report.worker)     # from now on its loss is bounded
                log.info("worker %d: what it measured is kept if it is lost (a snapshot of "
                         "%d requests)", report.worker, report.requests)
            workers.snapshots[report.worker] = report.results
        elif isinstance(report, m.Final):
            workers.finals[report.worker] = report.results
        elif isinstance(report, m.Note):
            prefix = f"worker {report.worker}: " if self.options.workers > 1 else ""
            self._note(prefix + report.message)
        elif isinstance(report, m.NotTheApi):
            self.stop(Reason(kind="target_not_ready", message=(
                f"target {report.target!r} at {report.url} answers, but not as the API the "
                f"scenario declares: {report.evidence} — check the URL, the path and the "
                "plugin"), detail={"target": report.target, "url": report.url}))
        elif isinstance(report, m.Failed):
            workers.failed.add(report.worker)
            self.stop(Reason(kind=report.kind, message=report.message))

    def _judge_live(self, report: m.Progress) -> None:
        limit = self.options.connect_failures
        for target, streak in report.connect_streak.items():
            if limit and streak >= limit and not self.finishing:
                url = next((t.url for t in self.plan.targets if t.name == target), None)
                self.stop(Reason(kind="connection_failures", message=(
                    f"target {target!r}{f' at {url}' if url else ''}: {streak} connections in "
                    "a row failed; stopping (run.connect_failures in the scenario sets how "
                    "many)"), detail={"target": target, "streak": streak}))
        sealed = self.live.sealed()
        if sealed > self._last_judged and not self.finishing:
            self._last_judged = sealed
            failed = self.live.failed_abort(self.plan.slos)
            if failed is not None:
                self.stop(Reason(kind="aborted", message=f"stopped early: {failed.message}",
                                 detail={"slo": failed.text}))

    def _watch(self) -> None:
        """Services that died, workers that vanished."""
        status = self._dead()
        if status is not None:
            self.stop(Reason(kind="service_exited", message=status), abandon=True)
        workers = self.workers
        assert workers is not None
        for handle in workers.live():
            if handle.alive() or handle.index in workers.finals:
                continue
            # its last reports may still be on their way
            while not self.reports.empty():
                self._on(self.reports.get_nowait())
            first = self._gone.setdefault(handle.index, time.monotonic())
            if handle.index not in workers.finals and time.monotonic() - first > LOST_AFTER_S:
                workers.lost.add(handle.index)
                last = self.live.workers.get(handle.index)
                at = f" at {last.last.now:.1f}s" if last and last.last else ""
                going_on = self.plan.run.on_worker_lost == "continue" and workers.live()
                kept = ("what it measured up to its last report is kept"
                        if handle.index in workers.snapshots else
                        "it was lost before its first snapshot, so nothing it measured is kept")
                reason = Reason(kind="worker_lost", message=(
                    f"worker {handle.index} {handle.exit_description()}{at}; {kept}" +
                    ("; the others went on without its share" if going_on else "")),
                    detail={"worker": handle.index})
                if going_on:
                    self.reasons.append(self._scrubbed(reason))
                    if self.options.display is not None:   # now; the outcome says it again
                        self.options.display.note(self.reasons[-1].message)
                else:
                    self.stop(reason)

    def _keep_client_figures(self, phase: PhasePlan) -> None:
        figures = ClientFigures()
        for worker, view in self.live.workers.items():
            figures.cpu[worker] = list(view.cpu)
            figures.loop_lag[worker] = list(view.loop_lag)
            figures.lag[worker] = list(view.max_lag)
            figures.seconds = max(figures.seconds, len(view.cpu))
        self.client[phase.name] = figures

    # -- what was measured -----------------------------------------------------------------
    def _results(self) -> RunResults:
        workers = self.workers
        parts: list[RunResults] = []
        if workers is not None:
            for handle in workers.handles:
                data = workers.finals.get(handle.index)
                if data is not None:
                    parts.append(RunResults.from_json(data, f"worker {handle.index}"))
                elif handle.index in workers.snapshots:
                    part = RunResults.from_json(workers.snapshots[handle.index],
                                                f"worker {handle.index}")
                    part.series = Series(scopes=self.live.worker_series(handle.index))
                    parts.append(part)
                    self._loss(handle.index, part)
                elif handle.index in workers.lost:
                    self._loss(handle.index, None)
        results = merge(parts) if parts else RunResults(meta=self.meta.model_copy())
        meta = self.meta
        meta.started_at = results.meta.started_at or meta.started_at
        meta.ended_at = results.meta.ended_at or meta.ended_at
        meta.notes = list(dict.fromkeys([*self.notes, *results.meta.notes]))
        meta.interrupted = any(r.kind == "interrupted" for r in self.reasons)
        results.meta = meta
        results.requests = declared_requests(self.plan)   # all of them, sent or not
        results.faults = list(self.faults)
        results.search = list(self.searches)
        results.replay = without_samples(results.replay)
        if self.sampler is not None:
            results.series.resources = [*self.sampler.series(), *results.series.resources]
            results.resources = Resources(unavailable=dict(self.sampler.unavailable),
                                          stats=phase_stats(results.series.resources))
        self._judge_client(results)
        return results

    def _loss(self, worker: int, kept: RunResults | None) -> None:
        """Say in the worker_lost reason what of a lost worker's results was kept (its last
        snapshot) and about how many completed requests were lost with it."""
        view = self.live.workers.get(worker)
        reported = view.last.counts.requests if view and view.last else 0
        saved = sum(s.counters.requests for s in kept.scopes) if kept is not None else 0
        lost = max(0, reported - saved)
        for reason in self.reasons:
            if reason.kind == "worker_lost" and reason.detail.get("worker") == worker:
                if kept is None:
                    reason.message += f" (about {lost:,} completed requests were lost)"
                else:
                    reason.message += (f" ({saved:,} requests kept; about {lost:,} completed "
                                       "after its last snapshot were lost)")
                reason.detail.update(kept=saved, lost=lost)

    def _judge_client(self, results: RunResults) -> None:
        if any(r.kind in ("interrupted", "service_exited") for r in self.reasons):
            return
        dropped: dict[str, int] = {}
        emfile = waited = 0
        descriptors = (0, 0)
        for view in self.live.workers.values():
            if view.last is None:
                continue
            for why, n in view.last.not_sent_by.items():
                dropped[why] = dropped.get(why, 0) + n
            emfile += view.last.emfile
            waited += view.last.client_waits
            descriptors = max(descriptors, view.last.descriptors)
        for phase in results.phases:
            figures = self.client.get(phase.name, ClientFigures())
            reason = judge_phase(results, phase, figures, dropped.get("phase_ended", 0)
                                 if phase.kind == "open" else 0)
            if reason is not None:
                self.reasons.append(reason)
                dropped.pop("phase_ended", None)
        limited = client_limit(descriptors, dropped.get("client_limit", 0), waited, emfile)
        if limited is not None:
            self.reasons.append(limited)


def install_signals(driver: Driver) -> list[signal.Signals]:
    """SIGINT, SIGTERM and SIGHUP (the terminal went away) go to the driver (in the main
    thread only), so the services it started are stopped; the ones installed."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            loop.add_signal_handler(sig, driver.interrupt)
        except (RuntimeError, ValueError, NotImplementedError):   # not the main thread
            continue
        installed.append(sig)
    return installed
