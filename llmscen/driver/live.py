"""The driver's live view of a run: every worker's progress summed, and judged as it goes.

`Live` holds what the workers reported — their running counts, the per-second
series they sealed, the load generator's own lag and CPU — so the progress
display shows the whole run, `abort: true` SLOs are judged on merged data
while the run goes on, and a lost worker's counts are known up to its last
second. Nothing here is exact to the request: the final results are merged
from each worker's own complete measurements.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from llmscen.assertions.slo import evaluate_one
from llmscen.compile.plan import PhasePlan, SLOPlan
from llmscen.driver import messages as m
from llmscen.driver.resources import FRESH_S, WorkerSample
from llmscen.metrics.merge import merge_points
from llmscen.metrics.results import (
    Meta,
    PhaseInfo,
    RunResults,
    ScopeSeries,
    Series,
    SeriesPoint,
    SloResult,
)
from llmscen.metrics.series import SEAL_AFTER
from llmscen.metrics.store import Key


@dataclass
class WorkerView:
    last: m.Progress | None = None
    cpu: list[float] = field(default_factory=list)         # cores, per second of this phase
    loop_lag: list[float] = field(default_factory=list)    # seconds, per second of this phase
    max_lag: list[float] = field(default_factory=list)


@dataclass
class PhaseLive:
    phase: PhasePlan
    started: float
    ended: float | None = None


class Live:
    def __init__(self, scenario: str, workers: int) -> None:
        self.scenario = scenario
        self.workers = {i: WorkerView() for i in range(workers)}
        # worker → scope → second → point, as each worker sealed them
        self.points: dict[int, dict[Key, dict[int, SeriesPoint]]] = {}
        self.phases: list[PhaseLive] = []
        self.origin_wall = time.monotonic()

    # -- what arrives ------------------------------------------------------------------
    def progress(self, report: m.Progress) -> None:
        view = self.workers.setdefault(report.worker, WorkerView())
        view.last = report
        if report.tick:
            view.cpu.append(report.cpu)
            view.loop_lag.append(report.loop_lag)
            view.max_lag.append(report.max_lag)
        mine = self.points.setdefault(report.worker, {})
        for scope in report.points:
            seconds = mine.setdefault(scope.key, {})
            for point in scope.points:
                seconds[point.t] = point

    def phase_started(self, phase: PhasePlan, at: float) -> None:
        self.phases.append(PhaseLive(phase, at))
        for view in self.workers.values():
            view.cpu, view.loop_lag, view.max_lag = [], [], []

    def phase_ended(self, at: float) -> None:
        if self.phases:
            self.phases[-1].ended = at

    # -- what the driver reads ---------------------------------------------------------
    def running(self) -> str | None:
        """The phase running now, None between phases."""
        return self.phases[-1].phase.name if self.phases and self.phases[-1].ended is None \
            else None

    def worker_samples(self, now: float) -> dict[int, WorkerSample]:
        """What each worker said of its own CPU and memory in its last second, for those
        whose last once-a-second report is fresh (a phase is running on them)."""
        return {index: WorkerSample(view.last.cpu, view.last.rss)
                for index, view in self.workers.items()
                if view.last is not None and view.last.tick and now - view.last.now < FRESH_S}

    def counts(self, workers: Iterable[int] | None = None) -> m.Counts:
        chosen = self.workers if workers is None else {i: self.workers[i] for i in workers}
        requests = ok = checks = not_sent = 0
        errors: dict[str, int] = {}
        for view in chosen.values():
            if view.last is None:
                continue
            c = view.last.counts
            requests += c.requests
            ok += c.ok
            checks += c.check_failures
            not_sent += c.not_sent
            for k, n in c.errors.items():
                errors[k] = errors.get(k, 0) + n
        return m.Counts(requests, ok, checks, not_sent, errors)

    def in_flight(self) -> int:
        return sum(v.last.in_flight for v in self.workers.values() if v.last is not None)

    def sealed(self) -> int:
        """Seconds before this one are complete on every worker that reports."""
        nows = [v.last.now for v in self.workers.values() if v.last is not None]
        return int(min(nows)) - SEAL_AFTER if nows else -1

    def results(self) -> RunResults:
        """A results view of what arrived so far: phases and per-second series only."""
        phases = [PhaseInfo(name=p.phase.name, kind=p.phase.kind, warmup=p.phase.warmup,
                            started=p.started, ended=p.ended if p.ended is not None else
                            max(p.started, self.sealed()), sweep=p.phase.sweep)
                  for p in self.phases]
        merged: dict[Key, dict[int, list[SeriesPoint]]] = {}
        for mine in self.points.values():
            for key, seconds in mine.items():
                into = merged.setdefault(key, {})
                for t, point in seconds.items():
                    into.setdefault(t, []).append(point)
        scopes = [ScopeSeries(phase=k[0], request=k[1], target=k[2],
                              points=[merge_points(points) for _, points in sorted(s.items())])
                  for k, s in merged.items()]
        return RunResults(meta=Meta(scenario=self.scenario), phases=phases,
                          series=Series(scopes=scopes))

    def worker_series(self, worker: int) -> list[ScopeSeries]:
        """What one worker reported of its per-second series (for a worker that was lost)."""
        return [ScopeSeries(phase=k[0], request=k[1], target=k[2],
                            points=[p for _, p in sorted(seconds.items())])
                for k, seconds in self.points.get(worker, {}).items()]

    def failed_abort(self, slos: Iterable[SLOPlan]) -> SloResult | None:
        """The first `abort: true` SLO that failed on the windows complete so far."""
        chosen = [s for s in slos if s.abort and s.window]
        if not chosen:
            return None
        until = self.sealed()
        view = self.results()
        for slo in chosen:
            result = evaluate_one(slo, view, until=until)
            if result.passed is False and result.measured is not None:
                return result
        return None
