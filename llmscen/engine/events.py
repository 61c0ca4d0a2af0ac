"""Events from the engine to whoever watches a run (metrics, progress, logs).

The engine knows only the `Handler` protocol; aggregation, the live display and
the JSONL log are handlers. `completed` fires once per call on the hot path,
so handlers keep it cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from llmscen.compile.plan import PhasePlan, Plan
from llmscen.engine.protocol import Exchange


@dataclass(slots=True)
class Completed:
    phase: str
    request: str         # `name`, or `name.step` for a step of a multi-step flow
    target: str
    exchange: Exchange
    failures: list[tuple[str, str]]   # (check, message) for failed expectations
    goodput_met: bool
    now: float           # seconds since the run started


class Handler(Protocol):
    def run_started(self, plan: Plan) -> None: ...
    def phase_started(self, phase: PhasePlan, now: float) -> None: ...
    def completed(self, event: Completed) -> None: ...
    def in_flight(self, now: float, count: int) -> None: ...
    def phase_ended(self, phase: PhasePlan, now: float) -> None: ...
    def note(self, message: str) -> None: ...
    def server_metrics(self, phase: str, target: str, before: dict[str, float],
                       after: dict[str, float]) -> None: ...
    def run_ended(self, now: float, interrupted: bool) -> None: ...


class BaseHandler:
    """No-op defaults, so a handler implements only what it watches."""

    def run_started(self, plan: Plan) -> None:
        pass

    def phase_started(self, phase: PhasePlan, now: float) -> None:
        pass

    def completed(self, event: Completed) -> None:
        pass

    def in_flight(self, now: float, count: int) -> None:
        pass

    def phase_ended(self, phase: PhasePlan, now: float) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def server_metrics(self, phase: str, target: str, before: dict[str, float],
                       after: dict[str, float]) -> None:
        pass

    def run_ended(self, now: float, interrupted: bool) -> None:
        pass


class Fanout(BaseHandler):
    """Sends each event to every handler, in order."""

    def __init__(self, handlers: list[Handler]) -> None:
        self.handlers = handlers

    def run_started(self, plan: Plan) -> None:
        for h in self.handlers:
            h.run_started(plan)

    def phase_started(self, phase: PhasePlan, now: float) -> None:
        for h in self.handlers:
            h.phase_started(phase, now)

    def completed(self, event: Completed) -> None:
        for h in self.handlers:
            h.completed(event)

    def in_flight(self, now: float, count: int) -> None:
        for h in self.handlers:
            h.in_flight(now, count)

    def phase_ended(self, phase: PhasePlan, now: float) -> None:
        for h in self.handlers:
            h.phase_ended(phase, now)

    def note(self, message: str) -> None:
        for h in self.handlers:
            h.note(message)

    def server_metrics(self, phase: str, target: str, before: dict[str, float],
                       after: dict[str, float]) -> None:
        for h in self.handlers:
            h.server_metrics(phase, target, before, after)

    def run_ended(self, now: float, interrupted: bool) -> None:
        for h in self.handlers:
            h.run_ended(now, interrupted)
