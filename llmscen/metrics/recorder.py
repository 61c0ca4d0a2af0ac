"""The handler that turns engine events into saved results."""

from __future__ import annotations

import datetime as dt
from typing import Any

from llmscen.compile.plan import Plan, StepPlan
from llmscen.engine.events import (
    BaseHandler,
    Completed,
    Note,
    NotSent,
    PhaseEnded,
    PhaseStarted,
    RunEnded,
    RunStarted,
    ServerScrape,
    Tick,
)
from llmscen.metrics.consistency import ConsistencyTracker
from llmscen.metrics.replay import with_figures
from llmscen.metrics.results import (
    MAX_SAMPLES,
    CheckSummary,
    Meta,
    ReplayInfo,
    RequestInfo,
    RunResults,
    Sample,
    ServerMetrics,
    StepInfo,
)
from llmscen.metrics.server import ServerSeries
from llmscen.metrics.server_histograms import phase_histograms
from llmscen.metrics.store import MetricStore
from llmscen.spec.metrics import split_key
from llmscen.spec.secrets import Scrubber


def expectation_names(expect: Any) -> list[str]:
    """The checks an `expect:` block asks for, in the order written."""
    if expect is None:
        return []
    return [name for name in type(expect).model_fields if name in expect.model_fields_set]


def step_checks(step: StepPlan) -> list[str]:
    """What is judged of each response to `step`: its expectations, and its captures."""
    names = expectation_names(step.expect)
    return [*names, *(["capture"] if step.capture else []), *(["record"] if step.record else [])]


def declared_requests(plan: Plan) -> list[RequestInfo]:
    """Every request of the plan with its steps' checks, as results list them."""
    out = []
    for request in plan.requests:
        multi = len(request.steps) > 1
        out.append(RequestInfo(name=request.name, target=request.target, steps=[
            StepInfo(name=f"{request.name}.{step.name}" if multi else request.name,
                     expectations=step_checks(step),
                     expects_error=getattr(step.expect, "error", None) is not None)
            for step in request.steps]))
    return out


class Recorder(BaseHandler):
    """Aggregates a run; `results()` freezes it (also after an interrupted run)."""

    def __init__(self, meta: Meta) -> None:
        self.meta = meta
        self.scrub = Scrubber()     # credential shapes until the plan brings its secrets
        self.store = MetricStore(scrub=self.scrub)
        self.phase_starts: dict[str, float] = {}
        self.plan: Plan | None = None
        self.checks: dict[tuple[str, str], CheckSummary] = {}
        self.expectations: dict[str, list[str]] = {}
        self.server: list[ServerMetrics] = []
        self.server_series = ServerSeries()     # read while phases run (worker 0)
        self.requests: list[RequestInfo] = []
        self.consistency = ConsistencyTracker(lambda text: self.scrub(text))
        self.replays: dict[str, ReplayInfo] = {}   # replay phase → its arrivals so far

    def on_run_started(self, event: RunStarted) -> None:
        self.plan = event.plan
        self.store.large_chunk = event.plan.run.large_chunk
        self.scrub = self.store.scrub = event.plan.scrubber()   # text enters results here
        self.meta.started_at = dt.datetime.now(dt.timezone.utc)
        self.requests = declared_requests(event.plan)
        for request in self.requests:
            for step in request.steps:
                self.expectations[step.name] = step.expectations

    def on_phase_started(self, event: PhaseStarted) -> None:
        self.phase_starts[event.phase.name] = event.now
        phase = event.phase
        if phase.replay is not None:
            self.replays[phase.name] = ReplayInfo(phase=phase.name, data=phase.replay,
                                                  speed=phase.speed)

    def on_phase_ended(self, event: PhaseEnded) -> None:
        phase = event.phase
        offered = None
        if phase.kind == "open" and phase.duration:   # this worker's part: workers add up
            offered = ((phase.load_at(0.0) or 0.0) + (phase.load_at(phase.duration) or 0.0)) / 2
        users = phase.users_ramp_to if phase.users_ramp_to is not None else phase.users
        # a group of a `groups` phase belongs to it as a sweep's step does to the sweep
        self.store.mark_phase(phase.name, event.started, event.now, phase.kind, phase.warmup,
                              planned_duration=phase.duration, sweep=phase.sweep or phase.parent,
                              offered_rate=offered, users=users,
                              planned=[(event.started + t, v) for t, v in phase.planned_curve()],
                              vars=phase.vars)

    def on_completed(self, event: Completed) -> None:
        self.store.record(event.phase, event.request, event.target, event.exchange,
                          goodput_met=event.goodput_met, now=event.now)
        if event.arrival and event.phase in self.replays and event.exchange.sent_ns:
            replay = self.replays[event.phase]
            ex = event.exchange
            replay.intended.append(round(event.started * 1e6))
            replay.lag.append((ex.sent_ns - ex.intended_ns) // 1000)
        names = self.expectations.get(event.request) or []
        error = event.exchange.error
        if event.key is not None and error in (None, "check"):
            self.consistency.add(event.phase, event.request, event.key, event.exchange)
        if not (names or event.failures):
            return
        if error not in (None, "check"):
            # failed before it could be checked: it counts against every check of its step
            for name in names:
                summary = self._summary(event.request, name)
                summary.unchecked[error] = summary.unchecked.get(error, 0) + 1
            return
        # a check may report a detail (`outputs.images.shape`) of its expectation (`outputs`)
        failed: dict[str, str] = {}
        for check, message in event.failures:
            top = check.split(".", 1)[0]
            detail = f"{check}: {message}" if check != top else message
            failed.setdefault(top if top in names else check, detail)
        for name in [*names, *(f for f in failed if f not in names)]:
            summary = self._summary(event.request, name)
            if name in failed:
                summary.failed += 1
                if len(summary.samples) < MAX_SAMPLES:
                    summary.samples.append(Sample(message=self.scrub(failed[name]),
                                                  output=self.scrub(event.exchange.text)))
            else:
                summary.passed += 1

    def _summary(self, request: str, name: str) -> CheckSummary:
        summary = self.checks.get((request, name))
        if summary is None:
            summary = self.checks[(request, name)] = CheckSummary(request=request,
                                                                  expectation=name)
        return summary

    def on_not_sent(self, event: NotSent) -> None:
        self.store.record_not_sent(event.phase, event.request, event.target, event.count,
                                   now=event.now)

    def on_tick(self, event: Tick) -> None:
        self.store.note_in_flight(event.now, event.in_flight)

    def on_note(self, event: Note) -> None:
        self.meta.notes.append(self.scrub(event.message))

    def on_server_scrape(self, event: ServerScrape) -> None:
        # typed: what the phase did to each counter (a reset: its new value); untyped: every
        # series' change, and readers guess from the name (older plugins)
        if event.types:
            delta = {k: v - event.before.get(k, 0.0) if v >= event.before.get(k, 0.0) else v
                     for k, v in event.after.items()
                     if event.types.get(split_key(k)[0]) == "counter"}
        else:
            delta = {k: v - event.before.get(k, 0.0) for k, v in event.after.items()}
        self.server.append(ServerMetrics(phase=event.phase, target=event.target,
                                         before=event.before, after=event.after, delta=delta,
                                         types=dict(event.types),
                                         histograms=phase_histograms(
                                             event.buckets_before, event.buckets_after, delta)))

    def on_run_ended(self, event: RunEnded) -> None:
        self.meta.ended_at = dt.datetime.now(dt.timezone.utc)
        self.meta.interrupted = event.interrupted

    def results(self) -> RunResults:
        if self.meta.ended_at is None:
            self.meta.ended_at = dt.datetime.now(dt.timezone.utc)
        results = self.store.to_results(self.meta, checks=list(self.checks.values()),
                                        server_metrics=self.server)
        results.series.resources = self.server_series.series()
        results.requests = list(self.requests)
        results.consistency = list(self.consistency.records.values())
        results.meta.notes = list(dict.fromkeys([*results.meta.notes,
                                                 *self.consistency.notes()]))
        results.replay = [with_figures(r, self.server) for r in self.replays.values()]
        return results
