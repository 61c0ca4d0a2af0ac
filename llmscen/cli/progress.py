"""The live progress line: phase, rate, in flight, errors."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from llmscen.compile.plan import PhasePlan
from llmscen.engine.events import BaseHandler, Completed


class Progress(BaseHandler):
    """One status line a second (overwritten on a terminal, appended elsewhere every 5 s)."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.quiet = quiet
        self.phase = "-"
        self.done = self.ok = self.errors = self.checks = 0
        self.last_done = 0
        self.last_time = time.monotonic()
        self.ticks = 0

    def _write(self, text: str, final: bool = False) -> None:
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def phase_started(self, phase: PhasePlan, now: float) -> None:
        self.phase = phase.name
        load = (f"{phase.rate:g}/s" if phase.kind == "open" else
                f"{phase.users} users" if phase.kind == "closed" else "pause")
        self._write(f"[{now:7.1f}s] phase {phase.name} ({phase.kind}, {load})", final=True)

    def completed(self, event: Completed) -> None:
        self.done += 1
        error = event.exchange.error
        if error is None:
            self.ok += 1
        elif error == "check":
            self.checks += 1
        else:
            self.errors += 1

    def set_counts(self, done: int, ok: int, errors: int, checks: int) -> None:
        """Totals from worker processes, which count on the parent's behalf."""
        self.done, self.ok, self.errors, self.checks = done, ok, errors, checks

    def in_flight(self, now: float, count: int) -> None:
        self.ticks += 1
        t = time.monotonic()
        rate = (self.done - self.last_done) / max(t - self.last_time, 1e-9)
        self.last_done, self.last_time = self.done, t
        if self.tty or self.ticks % 5 == 0:
            self._write(f"[{now:7.1f}s] {self.phase:<16} {rate:8.1f} done/s  in flight "
                        f"{count:<5} ok {self.ok}  errors {self.errors}  check failures "
                        f"{self.checks}")

    def note(self, message: str) -> None:
        self._write(f"note: {message}", final=True)

    def run_ended(self, now: float, interrupted: bool) -> None:
        state = "interrupted" if interrupted else "finished"
        self._write(f"[{now:7.1f}s] run {state}: {self.done} requests, {self.ok} ok, "
                    f"{self.errors} errors, {self.checks} check failures", final=True)
