"""The handler that turns engine events into saved results."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from llmscen.compile.plan import PhasePlan, Plan
from llmscen.engine.events import BaseHandler, Completed
from llmscen.metrics.results import (
    MAX_SAMPLES,
    CheckSummary,
    Meta,
    RunResults,
    Sample,
    ServerMetrics,
)
from llmscen.metrics.store import MetricStore

_SECRET_PATTERNS = (
    # "access_token": "...", token=..., "api_key": "..."
    re.compile(r"""(?i)(["']?[\w-]*(?:token|secret|password|api[_-]?key)[\w-]*["']?\s*[:=]\s*["']?)"""
               r"""([^"'\s,}&]{4,})"""),
    re.compile(r"(?i)(bearer\s+)([\w.~+/=-]{8,})"),
    re.compile(r"()(eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{4,})"),          # JWTs
    re.compile(r"()(sk-[A-Za-z0-9_-]{16,})"),                            # API keys
)


def scrub(text: str) -> str:
    """Mask secret-looking values in text that goes into results (sample outputs)."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


def expectation_names(expect: Any) -> list[str]:
    """The checks an `expect:` block asks for, in the order written."""
    if expect is None:
        return []
    return [name for name in type(expect).model_fields if name in expect.model_fields_set]


class Recorder(BaseHandler):
    """Aggregates a run; `results()` freezes it (also after an interrupted run)."""

    def __init__(self, meta: Meta) -> None:
        self.meta = meta
        self.store = MetricStore()
        self.phase_starts: dict[str, float] = {}
        self.plan: Plan | None = None
        self.checks: dict[tuple[str, str], CheckSummary] = {}
        self.expectations: dict[str, list[str]] = {}
        self.server: list[ServerMetrics] = []

    def run_started(self, plan: Plan) -> None:
        self.plan = plan
        self.meta.started_at = dt.datetime.now(dt.timezone.utc)
        for request in plan.requests:
            multi = len(request.steps) > 1
            for step in request.steps:
                name = f"{request.name}.{step.name}" if multi else request.name
                self.expectations[name] = expectation_names(step.expect)

    def phase_started(self, phase: PhasePlan, now: float) -> None:
        self.phase_starts[phase.name] = now

    def phase_ended(self, phase: PhasePlan, now: float) -> None:
        self.store.mark_phase(phase.name, self.phase_starts.get(phase.name, now), now,
                              phase.kind, phase.warmup, planned_duration=phase.duration,
                              sweep=phase.sweep)

    def completed(self, event: Completed) -> None:
        self.store.record(event.phase, event.request, event.target, event.exchange,
                          goodput_met=event.goodput_met, now=event.now)
        names = self.expectations.get(event.request) or []
        if not (names or event.failures) or event.exchange.error not in (None, "check"):
            return
        # a check may report a detail (`outputs.images.shape`) of its expectation (`outputs`)
        failed: dict[str, str] = {}
        for check, message in event.failures:
            top = check.split(".", 1)[0]
            detail = f"{check}: {message}" if check != top else message
            failed.setdefault(top if top in names else check, detail)
        for name in [*names, *(f for f in failed if f not in names)]:
            summary = self.checks.get((event.request, name))
            if summary is None:
                summary = self.checks[(event.request, name)] = CheckSummary(
                    request=event.request, expectation=name)
            if name in failed:
                summary.failed += 1
                if len(summary.samples) < MAX_SAMPLES:
                    summary.samples.append(Sample(message=scrub(failed[name]),
                                                  output=scrub(event.exchange.text)))
            else:
                summary.passed += 1

    def in_flight(self, now: float, count: int) -> None:
        self.store.note_in_flight(now, count)

    def note(self, message: str) -> None:
        self.meta.notes.append(message)

    def server_metrics(self, phase: str, target: str, before: dict[str, float],
                       after: dict[str, float]) -> None:
        delta = {k: v - before.get(k, 0.0) for k, v in after.items()}
        self.server.append(ServerMetrics(phase=phase, target=target, before=before,
                                         after=after, delta=delta))

    def run_ended(self, now: float, interrupted: bool) -> None:
        self.meta.ended_at = dt.datetime.now(dt.timezone.utc)
        self.meta.interrupted = interrupted

    def results(self) -> RunResults:
        if self.meta.ended_at is None:
            self.meta.ended_at = dt.datetime.now(dt.timezone.utc)
        return self.store.to_results(self.meta, checks=list(self.checks.values()),
                                     server_metrics=self.server)
