"""Typed events from the engine to whoever watches a run (metrics, logs, watchdogs).

Every event is a small dataclass; a handler has one entry point, `handle(event)`.
`BaseHandler` dispatches each event type to an `on_<event>` method (`on_completed`,
`on_phase_started`, ...), so a handler writes only the ones it watches.
`Completed` fires once per call on the hot path: handlers keep it cheap.

Times (`now`) are seconds since the run's shared origin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from llmscen.compile.plan import PhasePlan, Plan
from llmscen.engine.protocol import Exchange


@dataclass(slots=True)
class RunStarted:
    plan: Plan


@dataclass(slots=True)
class PhaseStarted:
    phase: PhasePlan
    now: float


@dataclass(slots=True)
class Completed:
    phase: str
    request: str         # `name`, or `name.step` for a step of a multi-step flow
    target: str
    exchange: Exchange
    failures: list[tuple[str, str]]   # (check, message) for failed expectations
    goodput_met: bool
    now: float
    key: tuple[str, str] | None = None   # `expect: consistent`: (digest, excerpt) of the
    #                                      request as rendered and sent
    started: float = 0.0   # the intended start, seconds since run start
    arrival: bool = True   # the flow's first call: its intended start is the schedule's


@dataclass(slots=True)
class NotSent:
    """Requests that were due but never sent: the phase or run stopped first, or the
    in-flight limit was reached (`why` says which)."""

    phase: str
    request: str
    target: str
    count: int
    why: str
    now: float


@dataclass(slots=True)
class Tick:
    """Once a second while a phase runs: what the load generator itself is doing."""

    now: float
    phase: str
    in_flight: int
    max_lag: float           # seconds: worst client lag (intended start → the client got to
    #                          the request, before any wait for an in-flight slot)
    loop_lag: float          # seconds: how late the engine's own one-second timer woke
    cpu: float               # this process's CPU over the second, in cores (1.0 = one core)
    slot_waits: int = 0      # arrivals that waited for an in-flight slot this second
    client_cap: bool = False  # the in-flight limit is the client's own (not max_in_flight)


@dataclass(slots=True)
class PhaseEnded:
    phase: PhasePlan
    started: float
    now: float


@dataclass(slots=True)
class Note:
    message: str


@dataclass(slots=True)
class ServerScrape:
    """The target's own metrics (e.g. Prometheus) around a phase."""

    phase: str
    target: str
    before: dict[str, float]
    after: dict[str, float]
    types: dict[str, str] = field(default_factory=dict)   # sample name → counter | gauge |
    #                                                        untyped; {} when not known
    buckets_before: dict[str, float] = field(default_factory=dict)   # histograms' buckets
    buckets_after: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class RunEnded:
    now: float
    interrupted: bool


Event = (RunStarted | PhaseStarted | Completed | NotSent | Tick | PhaseEnded | Note |
         ServerScrape | RunEnded)


class Handler(Protocol):
    def handle(self, event: Any) -> None: ...


def _method(cls: type) -> str:
    return "on_" + re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


_METHODS: dict[type, str] = {cls: _method(cls) for cls in (
    RunStarted, PhaseStarted, Completed, NotSent, Tick, PhaseEnded, Note, ServerScrape,
    RunEnded)}


class BaseHandler:
    """Dispatches `handle(event)` to `on_<event>(event)`; every method is a no-op here."""

    def handle(self, event: Any) -> None:
        getattr(self, _METHODS[type(event)])(event)

    def on_run_started(self, event: RunStarted) -> None:
        pass

    def on_phase_started(self, event: PhaseStarted) -> None:
        pass

    def on_completed(self, event: Completed) -> None:
        pass

    def on_not_sent(self, event: NotSent) -> None:
        pass

    def on_tick(self, event: Tick) -> None:
        pass

    def on_phase_ended(self, event: PhaseEnded) -> None:
        pass

    def on_note(self, event: Note) -> None:
        pass

    def on_server_scrape(self, event: ServerScrape) -> None:
        pass

    def on_run_ended(self, event: RunEnded) -> None:
        pass


class Fanout:
    """Sends each event to every handler, in order."""

    def __init__(self, handlers: list[Handler]) -> None:
        self.handlers = handlers

    def handle(self, event: Any) -> None:
        for h in self.handlers:
            h.handle(event)
