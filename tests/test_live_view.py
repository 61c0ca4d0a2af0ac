"""The live view: figures from what the workers report, a panel on a terminal, lines in CI."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from llmscen.cli.live_figures import Figures
from llmscen.cli.progress import LineView, PanelView, make_display
from llmscen.compile.plan import PhasePlan, Plan
from llmscen.driver import messages as m
from llmscen.driver.live import Live
from llmscen.metrics.histogram import SERIES_DIGITS, Histogram
from llmscen.metrics.results import ScopeSeries, SeriesPoint

ROOT = Path(__file__).resolve().parent.parent
RAMP = PhasePlan(name="ramp", kind="open", seed=1, rate=10, ramp_to=50, duration=20)
SOAK = PhasePlan(name="soak", kind="closed", seed=1, users=40, spawn_rate=4, duration=20)


def plan(*phases: PhasePlan) -> Plan:
    return Plan(name="demo", file="demo.yaml", seed=1, services=(), targets=(), data=(),
                phases=phases, requests=(), slos=())


def encoded(values_ms: list[float]) -> str:
    h = Histogram("duration", SERIES_DIGITS)
    h.record_many([int(v * 1000) for v in values_ms])
    return h.encode()


def second(t: int, requests: int, errors: dict[str, int], latency_ms: float) -> SeriesPoint:
    return SeriesPoint(t=t, requests=requests, ok=requests - sum(errors.values()),
                       errors=errors, latency=encoded([latency_ms] * requests),
                       ttft=encoded([latency_ms / 10] * requests))


def feed(live: Live, worker: int, now: float, done: int, in_flight: int, phase: str = "ramp",
         points: list[SeriesPoint] | None = None, users: int = 0,
         errors: dict[str, int] | None = None) -> None:
    live.progress(m.Progress(
        worker=worker, now=now, phase=phase, tick=True,
        counts=m.Counts(requests=done, ok=done - sum((errors or {}).values()),
                        errors=dict(errors or {})),
        in_flight=in_flight, max_lag=0.003, loop_lag=0.001, cpu=0.25,
        points=[ScopeSeries(phase=phase, request="chat", target="t", points=points)]
        if points else [], users=users))


def ramp_run(workers: int = 2, until: int = 10, each: Callable[[Live], None] | None = None
             ) -> Live:
    """`until` seconds into RAMP: every worker sends 15/s, 2 of them fail each second after
    the fifth; `each(live)` after every worker's report."""
    live = Live("demo", workers)
    live.phase_started(RAMP, 0.0)
    for now in range(1, until + 1):
        for w in range(workers):
            points = [second(now - 3, 15, {"http": 1, "timeout": 1} if now > 7 else {},
                             200 + 100 * w)] if now >= 3 else []
            feed(live, w, float(now), done=15 * now, in_flight=5, points=points,
                 errors={"http": max(0, now - 7), "timeout": max(0, now - 7)})
            if each is not None:
                each(live)
    return live


def test_the_figures_put_the_asked_load_beside_the_achieved_one() -> None:
    figures = Figures(phases=1)
    figures.phase_started(Live("demo", 2))
    frames = []
    live = ramp_run(each=lambda live: frames.append(figures.frame(live)))
    frame = frames[-1]
    assert frame.elapsed == 10.0 and frame.remaining == 10.0
    assert frame.asked == 30.0                      # halfway up 10 → 50
    assert frame.done_rate == pytest.approx(30.0)   # 2 workers × 15/s
    assert frame.in_flight == 10 and frame.cpu == pytest.approx(0.5)
    iv = frame.interval
    assert iv is not None and iv.end == live.sealed() and iv.end - iv.start == 5
    assert iv.requests == 2 * 5 * 15
    assert iv.errors == {"http": 2 * 3, "timeout": 2 * 3}       # seconds 5, 6, 7 of the series
    assert iv.latency.p50 is not None and 0.19 <= iv.latency.p50 <= 0.31
    assert iv.latency.p95 is not None and iv.latency.p95 >= 0.29     # worker 1 is slower
    assert iv.ttft.p50 is not None and iv.ttft.p50 < iv.latency.p50


def test_views_work_out_the_interval_only_for_frames_they_show() -> None:
    # the interval's percentiles cost the run's event loop milliseconds a second
    quiet = make_display(plan(RAMP), quiet=True)
    quiet.phase_started(RAMP, Live("demo", 2))
    seen: list[bool] = []

    def quiet_each(live: Live) -> None:
        quiet.progress(live)
        seen.append(quiet.frame is not None and quiet.frame.interval is not None)

    ramp_run(until=12, each=quiet_each)
    assert seen and not any(seen)
    lines = LineView(plan(RAMP), io.StringIO(), every=5)
    lines.phase_started(RAMP, Live("demo", 2))
    detailed: list[float] = []

    def lines_each(live: Live) -> None:
        lines.progress(live)
        if lines.frame is not None and lines.frame.interval is not None:
            detailed.append(lines.frame.settled)

    ramp_run(until=12, each=lines_each)
    assert detailed == [5.0, 10.0], detailed


def test_ci_lines_come_once_per_interval_and_say_everything() -> None:
    out = io.StringIO()
    view = LineView(plan(RAMP), out, verbose=1, every=5)
    view.phase_started(RAMP, Live("demo", 2))
    ramp_run(until=12, each=view.progress)
    view.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "[    0.0s] phase ramp (1 of 1: open, 10→50/s, 20s)"
    ticks = [line for line in lines if re.match(r"\[ *\d+\.\ds\] ramp ", line)]
    assert [line.split("]")[0] for line in ticks] == ["[    5.0s", "[   10.0s"]
    last = ticks[-1]
    for part in ("10s of 20s · 10s left", "asked 30.0/s", "done 30.0/s", "in flight 10",
                 "latency p50 ", "ttft p50 ", "errors 8.0% (http 4.0%, timeout 4.0%)",
                 "CPU 50%"):
        assert part in last, (part, last)
    workers = [line.strip() for line in lines if "worker " in line]
    assert workers[2:4] == [
        "worker 0: CPU 25% · loop lag 1ms · schedule lag 3ms · in flight 5 · 150 done",
        "worker 1: CPU 25% · loop lag 1ms · schedule lag 3ms · in flight 5 · 150 done"]
    assert lines[-1].endswith("ramp: 360 done, 340 ok, 20 errors (5.6%)")


def test_a_closed_phase_shows_users_running_against_users_asked() -> None:
    live = Live("demo", 1)
    out = io.StringIO()
    view = LineView(plan(SOAK), out, every=5)
    live.phase_started(SOAK, 0.0)
    view.phase_started(SOAK, live)
    for now in range(1, 6):
        feed(live, 0, float(now), done=3 * now, in_flight=4 * now, phase="soak", users=4 * now)
        view.progress(live)
    assert "users 20 running of 21 asked" in out.getvalue()


def test_a_terminal_gets_a_panel_redrawn_in_place() -> None:
    live = ramp_run(workers=1, until=11)
    out = io.StringIO()
    from rich.console import Console

    console = Console(file=out, force_terminal=True, width=110, color_system=None)
    view = PanelView(plan(RAMP), console, verbose=1)
    view.phase_started(RAMP, live)
    view.progress(live)
    time.sleep(0.6)
    feed(live, 0, 12.0, done=180, in_flight=5)
    view.progress(live)
    view.close()
    text = out.getvalue()
    assert "demo · phase 1/1 ramp (open, 10→50/s)" in text
    assert "asked 32.0/s" in text and "in flight 5" in text
    assert re.search(r"latency +p50 \S+ p95 \S+ +\(seconds \d+–\d+\)", text)
    assert "worker 0" in text and "\x1b[" in text     # drawn with cursor moves


def test_quiet_shows_nothing_and_logs_go_where_the_view_is() -> None:
    import logging

    out = io.StringIO()
    view = make_display(plan(RAMP), quiet=True, stream=out, log_level="info")
    live = ramp_run(workers=1)
    view.phase_started(RAMP, live)
    view.progress(live)
    view.note("a note")
    logging.getLogger("llmscen.driver").info("said at info")
    assert out.getvalue() == "llmscen INFO llmscen.driver: said at info\n"
    view = make_display(plan(RAMP), stream=out, log_level="warning")   # replaces the handler
    logging.getLogger("llmscen.driver").info("not shown")
    assert isinstance(view, LineView) and "not shown" not in out.getvalue()
    ours = [h for h in logging.getLogger("llmscen").handlers if getattr(h, "llmscen_cli", False)]
    assert len(ours) == 1
    view.close()                  # the run is over: its stream is not written to any more
    assert ours[0] not in logging.getLogger("llmscen").handlers


@pytest.mark.slow
def test_a_real_run_in_lines_mode_with_verbose(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "llmscen.cli.main", "run", "scenarios/smoke.yaml", "-v",
         "--workers", "1", "--progress", "lines", "--set", "phases.0.requests=null",
         "--set", "phases.0.duration=6s", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    err = proc.stderr
    assert "phase smoke (1 of 1: open, 4/s, 6s)" in err
    # the line every 5 s: its phase clock is 4 s or 5 s, by which side of the second the
    # tick fell on (a loaded machine printed "[    5.0s] smoke 4s of 6s")
    assert re.search(r"\[ +\d+\.\ds\] smoke [45]s of 6s · \ds left \| asked 4\.0/s", err), err
    assert "worker 0: CPU " in err
    assert re.search(r"llmscen INFO llmscen\.driver\.services: service 'sim' ready at "
                     r"http://127\.0\.0\.1:\d+", err), err
    assert "smoke: 24 done, 24 ok, 0 errors" in err


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_the_panel_in_a_real_terminal(tmp_path: Path) -> None:
    """Runs peak.yaml in tmux and reads the screen; LLMSCEN_UPDATE_SCREENSHOT=1 keeps it as
    docs/live-view.txt and, with its colours, docs/live-view.svg."""
    session = f"llmscen-live-{os.getpid()}"
    command = (f"{sys.executable} -m llmscen.cli.main run scenarios/peak.yaml -v --workers 2 "
               "--set phases.0.duration=1s --set phases.1.duration=4s "
               "--set phases.2.duration=10s --set phases.3.duration=3s "
               f"--out {tmp_path}/out; echo llmscen-exited-$?; sleep 30")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "118", "-y", "24",
                    "-c", str(ROOT), command], check=True)
    try:
        screen = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            time.sleep(1)
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                    capture_output=True, text=True, check=True).stdout
            if "phase 3/4 peak" in screen and re.search(r"ttft +p50", screen) \
                    and "worker 1" in screen and re.search(r"[5-9]s of 10s", screen):
                break
        assert "peak · phase 3/4 peak (open, 100/s poisson)" in screen, screen
        assert re.search(r"load +asked 100\.0/s · sent [\d.]+/s · done [\d.]+/s · in flight",
                         screen), screen
        assert re.search(r"latency +p50 \S+ p95 \S+", screen) and "worker 0" in screen
        assert re.search(r"ramp: \d+ done, \d+ ok, 0 errors", screen), screen
        if os.environ.get("LLMSCEN_UPDATE_SCREENSHOT"):
            ansi = subprocess.run(["tmux", "capture-pane", "-p", "-e", "-t", session],
                                  capture_output=True, text=True, check=True).stdout
            (ROOT / "docs" / "live-view.txt").write_text(screen.rstrip() + "\n")
            (ROOT / "docs" / "live-view.svg").write_text(terminal_svg(ansi))
        # Ctrl-C, as a person would: the run stops and stops the simulator it started
        subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True)
        deadline = time.monotonic() + 60
        while "llmscen-exited-" not in screen and time.monotonic() < deadline:
            time.sleep(0.5)
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-S", "-200", "-t", session],
                                    capture_output=True, text=True, check=True).stdout
        assert "llmscen-exited-3" in screen or "llmscen-exited-0" in screen, screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


def terminal_svg(ansi: str) -> str:
    """The captured screen as an SVG picture of a terminal (rich draws it); fonts are the
    viewer's own monospace ones, so the picture fetches nothing."""
    from rich.console import Console
    from rich.text import Text

    console = Console(record=True, width=118, file=io.StringIO(), force_terminal=True)
    console.print(Text.from_ansi(ansi.rstrip()), soft_wrap=True)
    svg = console.export_svg(title="llmscen run scenarios/peak.yaml -v --workers 2")
    return re.sub(r"@font-face \{.*?\}\s*", "", svg, flags=re.S)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_closing_the_terminal_stops_the_run_and_keeps_its_results(tmp_path: Path) -> None:
    """SIGHUP (the terminal went away) is an interrupt: the services stop, the files are
    written, though nothing can be shown any more."""
    import socket
    from urllib.parse import urlsplit

    from llmscen.metrics.results import RunResults

    session = f"llmscen-hup-{os.getpid()}"
    out = tmp_path / "out"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "20",
                    "-c", str(ROOT), f"{sys.executable} -m llmscen.cli.main run "
                    f"scenarios/peak.yaml --workers 1 --out {out}; sleep 30"], check=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.5)
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                    capture_output=True, text=True, check=True).stdout
            if "phase ramp" in screen:
                break
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    deadline = time.monotonic() + 60
    while not (out / "report.html").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    results = RunResults.load(out / "results.json")
    assert results.outcome is not None and results.outcome.status == "interrupted"
    assert sum(s.counters.requests for s in results.scopes) > 0
    (target,) = results.meta.targets
    parts = urlsplit(target.url or "")
    assert parts.hostname == "127.0.0.1" and parts.port
    with pytest.raises(OSError):     # the simulator it started is gone, not orphaned
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
