"""The live view of a run: the whole run (every worker summed), refreshed once a second.

On a terminal a small panel is redrawn in place (rich); elsewhere — CI logs, a
pipe, `--progress lines` — one plain line is appended every `INTERVAL_S`
seconds. Both show, per phase: elapsed and remaining time, the load asked for
beside what was achieved (arrivals per second, or users), latency and TTFT
percentiles and error % by class over the last complete seconds, requests in
flight and the client's own CPU. `-v` adds a line per worker and llmscen's info
log; `-q` shows nothing until the summary. The final line is printed from the
saved results, so it matches the tables under it.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live as RichLive
from rich.logging import RichHandler
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from llmscen.cli.live_figures import INTERVAL_S, Figures, Frame, Percentiles
from llmscen.compile.plan import PhasePlan, Plan
from llmscen.driver.live import Live
from llmscen.metrics.results import RunResults
from llmscen.spec.units import show

REFRESH_S = 0.5         # the panel is redrawn at most this often


def _time(seconds: float | None) -> str:
    return "–" if seconds is None else show("latency", seconds)


def _clock(seconds: float, up: bool = False) -> str:
    s = math.ceil(seconds) if up else int(seconds)
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s" if s < 3600 else \
        f"{s // 3600}h{s % 3600 // 60:02d}m"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}/s"


def _cores(value: float) -> str:
    return f"{value * 100:.0f}%"


def describe_load(phase: PhasePlan) -> str:
    """`open, 10→50/s poisson`, `closed, 50 users`, `pause`."""
    if phase.kind == "open":
        rate = f"{phase.rate or 0:g}" + (f"→{phase.ramp_to:g}" if phase.ramp_to is not None
                                         else "")
        arrival = "" if phase.arrival == "constant" else f" {phase.arrival}"
        return f"open, {rate}/s{arrival}"
    if phase.kind == "closed":
        users = f"{phase.users or 0}" + (f"→{phase.users_ramp_to}" if phase.users_ramp_to
                                         is not None else "")
        return f"closed, {users} users"
    if phase.kind == "parallel":
        return f"parallel, {len(phase.groups)} groups"
    if phase.kind == "each":
        return f"each, {len(phase.cases)} cases"
    return "pause"


def load_text(frame: Frame) -> str:
    """Asked beside achieved: `asked 30/s · sent 29.6/s · done 29.1/s` or `users 12 of 50`."""
    phase = frame.phase
    if phase is None or phase.kind == "pause":
        return "pause"
    if phase.kind == "closed":
        return (f"users {frame.users} running of {int(frame.asked or 0)} asked · done "
                f"{_rate(frame.done_rate)}")
    users = f"users {frame.users} running · " if frame.users else ""
    asked = f"asked {_rate(frame.asked)} · " if frame.asked is not None else ""
    return f"{users}{asked}sent {_rate(frame.sent_rate)} · done {_rate(frame.done_rate)}"


def percentiles_text(name: str, p: Percentiles) -> str:
    return f"{name} p50 {_time(p.p50)} p95 {_time(p.p95)}"


def errors_text(frame: Frame) -> str:
    """Error % of the last interval, by class; the phase's counts beside."""
    iv = frame.interval
    share = iv.error_share if iv is not None else None
    if share is None:
        head = "–"
    else:
        head = f"{share:.1%}"
        if iv is not None and iv.errors:
            head += " (" + ", ".join(f"{k} {n / iv.requests:.1%}" for k, n in
                                     sorted(iv.errors.items(), key=lambda kv: -kv[1])) + ")"
    c = frame.counts
    failed = sum(c.errors.values())
    tail = f" · phase: {c.requests:,} done, {c.ok:,} ok, {failed:,} errors"
    if c.check_failures:
        tail += f", {c.check_failures:,} failed checks"
    if c.not_sent:
        tail += f", {c.not_sent:,} not sent"
    return head + tail


def client_text(frame: Frame) -> str:
    worst_loop = max((w.loop_lag for w in frame.workers), default=0.0)
    worst_lag = max((w.schedule_lag for w in frame.workers), default=0.0)
    text = f"CPU {_cores(frame.cpu)} of a core"
    if len(frame.workers) > 1:
        text += f" ({len(frame.workers)} workers)"
    return text + f" · loop lag {_time(worst_loop)} · schedule lag {_time(worst_lag)}"


def worker_lines(frame: Frame) -> list[str]:
    return [f"worker {w.index}: CPU {_cores(w.cpu)} · loop lag {_time(w.loop_lag)} · "
            f"schedule lag {_time(w.schedule_lag)} · in flight {w.in_flight}"
            + (f" · users {w.users}" if w.users else "") + f" · {w.requests:,} done"
            for w in frame.workers]


def time_text(frame: Frame) -> str:
    left = frame.remaining
    planned = f" of {_clock(frame.phase.duration)}" if frame.phase and frame.phase.duration \
        else ""
    return f"{_clock(frame.elapsed)}{planned}" + (f" · {_clock(left, up=True)} left" if left
                                                   else "")


def interval_label(frame: Frame) -> str:
    iv = frame.interval
    return f"seconds {iv.start}–{iv.end}" if iv is not None else "no complete second yet"


class _View:
    """What both views share: the figures, notes, the phase summaries, the final line."""

    def __init__(self, plan: Plan, *, quiet: bool, verbose: int) -> None:
        self.plan = plan
        self.quiet = quiet
        self.verbose = verbose
        self.figures = Figures(len(plan.phases))
        self.frame: Frame | None = None
        self.log_handler: logging.Handler | None = None
        self.gone = False       # the terminal went away: the run goes on and saves its files

    # what the driver calls (driver.session.Display); a display that cannot write any
    # more (a closed terminal, a broken pipe) goes quiet instead of stopping the run
    def phase_started(self, phase: PhasePlan, live: Live) -> None:
        try:
            self._phase_started(phase, live)
        except OSError:
            self.gone = True

    def progress(self, live: Live) -> None:
        try:
            self.frame = self.figures.frame(live, detailed=self.shows(live))
            if not self.gone:
                self.show(self.frame)
        except OSError:
            self.gone = True

    def note(self, message: str) -> None:
        try:
            self.print(f"note: {message}")
        except OSError:
            self.gone = True

    def _phase_started(self, phase: PhasePlan, live: Live) -> None:
        self._phase_done()
        self.figures.phase_started(live)
        self.frame = None
        at = live.phases[-1].started if live.phases else 0.0
        self.print(f"[{at:7.1f}s] phase {phase.name} ({self.figures.number} of "
                   f"{len(self.plan.phases)}: {describe_load(phase)}"
                   + (f", {_clock(phase.duration)}" if phase.duration else "")
                   + (", warmup" if phase.warmup else "") + ")")

    # what the CLI calls
    def finished(self, results: RunResults) -> None:
        """The last line, from the saved results: the same counts as the table below it."""
        self.close()
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
        self.print(f"[{end:7.1f}s] run {state}: {requests} requests, {ok} ok, {errors} errors, "
                   f"{checks} check failures{extra}")

    def close(self) -> None:
        """The run is over: the last phase's line; llmscen's log goes back to its default."""
        try:
            self._phase_done()
        except OSError:
            self.gone = True
        if self.log_handler is not None:
            logging.getLogger("llmscen").removeHandler(self.log_handler)
            self.log_handler = None

    def _phase_done(self) -> None:
        frame, self.frame = self.frame, None
        if frame is None or frame.phase is None or frame.phase.kind == "pause":
            return
        c = frame.counts
        failed = sum(c.errors.values())
        share = f" ({failed / c.requests:.1%})" if c.requests and failed else ""
        self.print(f"[{frame.now:7.1f}s]   {frame.phase.name}: {c.requests:,} done, {c.ok:,} ok, "
                   f"{failed:,} errors{share}" + (f", {c.check_failures:,} failed checks"
                                                  if c.check_failures else ""))

    def print(self, text: str) -> None:
        raise NotImplementedError

    def show(self, frame: Frame) -> None:
        raise NotImplementedError

    def shows(self, live: Live) -> bool:
        """Whether this report's frame will be shown in full (its interval figures)."""
        return not self.gone


class LineView(_View):
    """A plain line every `INTERVAL_S` seconds of the run: for CI logs and pipes."""

    def __init__(self, plan: Plan, stream: TextIO, *, quiet: bool = False, verbose: int = 0,
                 every: float = INTERVAL_S) -> None:
        super().__init__(plan, quiet=quiet, verbose=verbose)
        self.stream = stream
        self.every = every
        self.next_at = every

    def print(self, text: str) -> None:
        if not (self.quiet or self.gone):
            self.stream.write(text + "\n")
            self.stream.flush()

    def shows(self, live: Live) -> bool:
        settled = min((v.last.now for v in live.workers.values() if v.last is not None),
                      default=0.0)
        return not (self.quiet or self.gone) and settled >= self.next_at

    def show(self, frame: Frame) -> None:
        # once every worker has reported the second, so the counts are whole
        if frame.settled < self.next_at or self.quiet:
            return
        self.next_at = (frame.settled // self.every + 1) * self.every
        self.print(self.line(frame))
        if self.verbose:
            for line in worker_lines(frame):
                self.print("           " + line)

    @staticmethod
    def line(frame: Frame) -> str:
        name = frame.phase.name if frame.phase else "-"
        iv = frame.interval
        parts = [f"[{frame.now:7.1f}s] {name} {time_text(frame)}", load_text(frame),
                 f"in flight {frame.in_flight}"]
        if iv is not None:
            parts += [percentiles_text("latency", iv.latency)]
            if iv.ttft.p50 is not None:
                parts.append(percentiles_text("ttft", iv.ttft))
        parts += ["errors " + errors_text(frame), f"CPU {_cores(frame.cpu)}"]
        return " | ".join(parts)


class PanelView(_View):
    """A panel redrawn in place on a terminal."""

    def __init__(self, plan: Plan, console: Console, *, verbose: int = 0) -> None:
        super().__init__(plan, quiet=False, verbose=verbose)
        self.console = console
        self.live = RichLive(console=console, auto_refresh=False, transient=True,
                             redirect_stdout=False, redirect_stderr=False)
        self.drawn = 0.0
        self.started = False

    def print(self, text: str) -> None:
        if not self.gone:
            self.console.print(Text(text), highlight=False, soft_wrap=True)

    def show(self, frame: Frame) -> None:
        now = time.monotonic()
        if now - self.drawn < REFRESH_S:
            return
        self.drawn = now
        if not self.started:
            self.live.start()
            self.started = True
        self.live.update(self.panel(frame), refresh=True)

    def close(self) -> None:
        super().close()
        if self.started:
            self.started = False
            try:
                self.live.stop()
            except OSError:
                self.gone = True

    def panel(self, frame: Frame) -> Group:
        phase = frame.phase
        title = Text()
        title.append(f"{self.plan.name} ", style="bold")
        if phase is not None:
            title.append(f"· phase {frame.number}/{frame.phases} ")
            title.append(phase.name, style="bold cyan")
            title.append(f" ({describe_load(phase)})")
        head = Table.grid(padding=(0, 2))
        head.add_row(title, Text(time_text(frame)))
        rows = Table.grid(padding=(0, 2))
        rows.add_column(style="dim", justify="right")
        rows.add_column()
        if phase is not None and phase.duration:
            rows.add_row("time", ProgressBar(total=phase.duration,
                                             completed=min(frame.elapsed, phase.duration),
                                             width=40))
        rows.add_row("load", Text(load_text(frame) + f" · in flight {frame.in_flight}"))
        iv = frame.interval
        label = f"   ({interval_label(frame)})"
        if iv is not None:
            rows.add_row("latency", Text(percentiles_text("", iv.latency).strip() + label))
            if iv.ttft.p50 is not None:
                rows.add_row("ttft", Text(percentiles_text("", iv.ttft).strip()))
        errors = errors_text(frame)
        style = "red" if iv is not None and iv.errors else ""
        rows.add_row("errors", Text(errors, style=style))
        rows.add_row("client", Text(client_text(frame)))
        if self.verbose:
            for line in worker_lines(frame):
                name, _, rest = line.partition(": ")
                rows.add_row(name, Text(rest))
        return Group(head, rows)


class Quiet(_View):
    def print(self, text: str) -> None:
        pass

    def shows(self, live: Live) -> bool:
        return False

    def show(self, frame: Frame) -> None:
        pass


def _columns(stream: TextIO) -> int | None:
    """The terminal's width (rich guesses 80 for a stream that is not stdout)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return None


def make_display(plan: Plan, *, quiet: bool = False, verbose: int = 0, mode: str = "auto",
                 log_level: str = "warning", stream: TextIO | None = None) -> _View:
    """The view `llmscen run` shows on `stream` (stderr), with llmscen's log set up to print
    through it."""
    stream = stream or sys.stderr
    tty = stream.isatty() and os.environ.get("TERM") != "dumb"
    view: _View
    if quiet:
        view = Quiet(plan, quiet=True, verbose=verbose)
        handler: logging.Handler = logging.StreamHandler(stream)
    elif mode == "live" or (mode == "auto" and tty):
        console = Console(file=stream, force_terminal=True if mode == "live" else None,
                          highlight=False, width=_columns(stream))
        view = PanelView(plan, console, verbose=verbose)
        handler = RichHandler(console=console, show_path=False, show_time=False,
                              markup=False, rich_tracebacks=False)
    else:
        view = LineView(plan, stream, verbose=verbose)
        handler = logging.StreamHandler(stream)
    if not isinstance(handler, RichHandler):
        handler.setFormatter(logging.Formatter("llmscen %(levelname)s %(name)s: %(message)s"))
    set_log(handler, log_level)
    view.log_handler = handler
    return view


def set_log(handler: logging.Handler, level: str) -> None:
    """Send llmscen's own log (`logging.getLogger("llmscen")`) to `handler` at `level`,
    replacing the handler an earlier run in this process installed."""
    logger = logging.getLogger("llmscen")
    for old in [h for h in logger.handlers if getattr(h, "llmscen_cli", False)]:
        logger.removeHandler(old)
    handler.llmscen_cli = True   # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level.upper())
