"""Interrupts and lost workers lose nothing that was measured (issue 10.2).

Every way a CI runner stops a run — SIGINT to the process alone or to its
group, twice, SIGTERM — with one worker and with two, in an open and a closed
phase: results.json holds every request the request log saw complete, the
cancelled ones counted as such, and the counts balance. A worker killed
mid-run stops the run, is named, and what it sent before its last snapshot is
kept.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import psutil
import pytest

from llmscen.cli import exitcodes
from llmscen.metrics.results import RunResults

pytestmark = pytest.mark.slow

PHASES = {
    "open": "{name: long, duration: 60s, arrival_rate: 30}",
    "closed": "{name: long, duration: 60s, users: 8}",
}
SCENARIO = """
version: 1
services:
  sim: {{builtin: openai-sim, options: {{ttft: 30ms, itl: 20ms, output_tokens: 30}}}}
targets:
  chat: {{plugin: openai, service: sim, model: sim-model, timeout: 10s}}
phases:
  - {phase}
requests:
  - name: stream
    target: chat
    stream: true
    body: {{messages: [{{role: user, content: hello}}], max_tokens: 30}}
"""


def start(tmp_path: Path, phase: str, workers: int, extra: str = "", kept: bool = False
          ) -> tuple[subprocess.Popen[str], Path, Path, list[str]]:
    """The run, once traffic flows and 2.5 s more; `kept`: once a snapshot of every worker
    holds requests, however slow a loaded machine is."""
    scenario = tmp_path / "long.yaml"
    scenario.write_text(SCENARIO.format(phase=PHASES.get(phase, phase)) + extra)
    out, log = tmp_path / "out", tmp_path / "requests.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "llmscen.cli.main", "run", str(scenario),
                             "--out", str(out), "--workers", str(workers),
                             "--log-requests", str(log),
                             *(["--log-level", "info"] if kept else [])],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    assert proc.stdout is not None
    seen = []
    waiting = {f"worker {i}: what it measured is kept if it is lost" for i in range(workers)}
    for line in proc.stdout:     # until traffic flows, however slow start-up is
        seen.append(line)
        waiting = {w for w in waiting if w not in line}
        if not waiting if kept else "phase long" in line:
            break
    assert any("phase long" in line for line in seen), "".join(seen)
    if not kept:
        time.sleep(2.5)
    return proc, out, log, seen


def logged(log: Path) -> tuple[Counter[str], int]:
    """Completed calls by error class (None: ok), and calls counted as not sent."""
    done: Counter[str] = Counter()
    not_sent = 0
    for line in log.read_bytes().splitlines():
        record = orjson.loads(line)
        if "not_sent" in record:
            not_sent += record["not_sent"]
        else:
            done[str(record["error"])] += 1
    return done, not_sent


SIGNALS = ["int", "int-group", "int-twice", "term"]


@pytest.mark.parametrize("phase", sorted(PHASES))
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("how", SIGNALS)
def test_an_interrupt_keeps_every_completed_request(tmp_path: Path, how: str, workers: int,
                                                     phase: str) -> None:
    proc, out, log, seen = start(tmp_path, phase, workers)
    if how == "int-group":
        os.killpg(proc.pid, signal.SIGINT)
    elif how == "term":
        proc.send_signal(signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGINT)
        if how == "int-twice":
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    output = "".join(seen) + rest
    assert proc.returncode == exitcodes.COULD_NOT_RUN, output
    assert "INTERRUPTED" in output and "Traceback" not in output, output
    assert (out / "junit.xml").exists() and (out / "report.html").exists()
    results = RunResults.load(out / "results.json")
    assert results.meta.interrupted
    (scope,) = results.scopes
    c = scope.counters
    done, not_sent = logged(log)
    # nothing the log saw complete is missing, nothing is counted twice
    assert c.requests == sum(done.values()) and c.requests > 10, (c, done)
    assert c.ok == done["None"]
    assert c.errors.get("cancelled", 0) == done["cancelled"]
    assert c.not_sent == not_sent
    assert c.requests == c.ok + c.error_total + c.check_failures


@pytest.mark.parametrize("workers", [1, 2])
def test_arrivals_waiting_for_a_slot_when_the_run_stops_count_as_not_sent(
        tmp_path: Path, workers: int) -> None:
    # 20 arrivals in the first second, two in flight at a time (~0.6 s each): when the
    # interrupt comes most are still waiting for a slot, and each is still accounted for
    phase = "{name: long, duration: 1s, arrival_rate: 20, arrival: constant, max_in_flight: 2}"
    proc, out, log, seen = start(tmp_path, phase, workers)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    output = "".join(seen) + rest
    assert "INTERRUPTED" in output and "Traceback" not in output, output
    (scope,) = RunResults.load(out / "results.json").scopes
    c = scope.counters
    assert c.requests + c.not_sent == 20, (c, output)
    assert c.not_sent > 0 and logged(log)[1] == c.not_sent, c


def test_a_lost_worker_stops_the_run_and_keeps_what_it_reported(tmp_path: Path) -> None:
    proc, out, log, seen = start(tmp_path, "open", workers=2,
                                 extra="run: {on_worker_lost: stop}\n", kept=True)
    workers = [p for p in psutil.Process(proc.pid).children()
               if "spawn_main" in " ".join(p.cmdline())]
    assert len(workers) == 2, [p.cmdline() for p in workers]
    victim = workers[1]
    victim.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    rest, _ = proc.communicate(timeout=60)
    took = time.monotonic() - killed
    output = "".join(seen) + rest
    assert proc.returncode == exitcodes.COULD_NOT_RUN, output
    assert took < 15, "the run stops when a worker is lost, not at the end of the phase"
    assert "was killed by SIGKILL" in output and "Traceback" not in output, output
    results = RunResults.load(out / "results.json")
    assert results.outcome is not None
    lost = [r for r in results.outcome.reasons if r.kind == "worker_lost"]
    assert len(lost) == 1
    by_worker: Counter[int] = Counter()
    for line in log.read_bytes().splitlines():
        record = orjson.loads(line)
        if "not_sent" not in record:
            by_worker[record["worker"]] += 1
    kept = lost[0].detail["kept"]
    worker = lost[0].detail["worker"]
    # its requests up to its last snapshot (every 2 s) are kept: at most ~3 s of 15/s lost
    assert 0 < kept <= by_worker[worker]
    assert by_worker[worker] - kept <= 60, (kept, by_worker)
    total = sum(s.counters.requests for s in results.scopes)
    assert total == by_worker[1 - worker] + kept
    run_case = results.outcome.cases[0]
    assert run_case.kind == "run" and run_case.status == "error"
