"""The live progress line: the whole run (every worker summed), once a second.

On a terminal the line is redrawn in place; elsewhere (CI logs) a line is
appended every 5 seconds. The counts are the workers' own running totals, the
same ones results.json ends with; the final line is printed from the results.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from llmscen.compile.plan import PhasePlan
from llmscen.driver.live import Live
from llmscen.metrics.results import RunResults


class Progress:
    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.quiet = quiet
        self.phase: PhasePlan | None = None
        self.phase_at = 0.0
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

    def phase_started(self, phase: PhasePlan, live: Live) -> None:
        self.phase = phase
        self.phase_at = live.phases[-1].started if live.phases else 0.0
        load = (f"{phase.rate:g}/s" if phase.kind == "open" else
                f"{phase.users} users" if phase.kind == "closed" else "pause")
        self._write(f"[{self.phase_at:7.1f}s] phase {phase.name} ({phase.kind}, {load})",
                    final=True)

    def progress(self, live: Live) -> None:
        self.ticks += 1
        counts = live.counts()
        t = time.monotonic()
        rate = (counts.requests - self.last_done) / max(t - self.last_time, 1e-9)
        self.last_done, self.last_time = counts.requests, t
        if not (self.tty or self.ticks % (5 * max(1, len(live.workers))) == 0):
            return
        now = max((v.last.now for v in live.workers.values() if v.last), default=0.0)
        phase = self.phase
        name = phase.name if phase else "-"
        elapsed = now - self.phase_at
        left = f"/{phase.duration:.0f}s" if phase is not None and phase.duration else ""
        asked = f" of {phase.rate:g}/s" if phase is not None and phase.kind == "open" else ""
        errors = sum(counts.errors.values())
        share = f" ({errors / counts.requests:.1%})" if counts.requests and errors else ""
        self._write(f"[{now:7.1f}s] {name:<16} {elapsed:5.0f}s{left} {rate:8.1f}/s{asked}  "
                    f"in flight {live.in_flight():<5} ok {counts.ok}  errors {errors}{share}  "
                    f"check failures {counts.check_failures}")

    def note(self, message: str) -> None:
        self._write(f"note: {message}", final=True)

    def finished(self, results: RunResults) -> None:
        """The last line, from the saved results: the same counts as the table below it."""
        requests = ok = errors = checks = not_sent = 0
        for scope in results.scopes:
            c = scope.counters
            requests += c.requests
            ok += c.ok
            errors += c.error_total
            checks += c.check_failures
            not_sent += c.not_sent
        end = max((p.ended for p in results.phases), default=0.0)
        state = results.outcome.status.replace("_", " ") if results.outcome else "finished"
        extra = f", {not_sent} not sent" if not_sent else ""
        self._write(f"[{end:7.1f}s] run {state}: {requests} requests, {ok} ok, {errors} errors, "
                    f"{checks} check failures{extra}", final=True)
