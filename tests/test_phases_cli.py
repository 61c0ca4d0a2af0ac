"""Run semantics test plans rely on (issue 16): ordered phases on every worker, chosen requests,
test cases, several load models at once — through the CLI, against openai-sim."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults

pytestmark = pytest.mark.slow

SIM = """
version: 1
services:
  sim: {builtin: openai-sim, options: {ttft: 80ms, itl: 10ms, output_tokens: 6}}
targets:
  chat: {plugin: openai, service: sim, model: sim-model, timeout: 10s}
"""
REQUESTS = """
requests:
  - {name: single, target: chat, body: {messages: [{role: user, content: one}]}}
  - {name: batch, target: chat, body: {messages: [{role: user, content: many}]}}
  - {name: models, target: chat, api: models, expect: {status: 200}}
"""


def run_log(tmp_path: Path, text: str, workers: int) -> tuple[RunResults, list[dict[str, object]]]:
    scenario = tmp_path / "plan.yaml"
    scenario.write_text(text)
    out, log = tmp_path / f"out-{workers}", tmp_path / f"log-{workers}.jsonl"
    proc = subprocess.run([sys.executable, "-m", "llmscen.cli.main", "run", str(scenario),
                           "--out", str(out), "--workers", str(workers), "--quiet",
                           "--log-requests", str(log)], capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == exitcodes.OK, proc.stdout + proc.stderr
    lines = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    return RunResults.load(out / "results.json"), lines


ORDERED = SIM + """
phases:
  - {name: single, each: [single], times: 3}
  - {name: counted, users: 3, requests: 24, mix: [batch]}
  - {name: timed, duration: 2s, arrival_rate: 12, mix: [single, batch]}
  - {name: last, users: 2, requests: 6, mix: [models]}
""" + REQUESTS


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_phases_are_barriers_on_every_worker(tmp_path: Path, workers: int) -> None:
    results, log = run_log(tmp_path, ORDERED, workers)
    spans: dict[str, tuple[float, float]] = {}
    by_phase: dict[str, list[dict[str, object]]] = defaultdict(list)
    for record in log:
        by_phase[str(record["phase"])].append(record)
    for phase, records in by_phase.items():
        ends = [float(r["t"]) for r in records]               # type: ignore[arg-type]
        starts = [float(r["t"]) - int(r["latency_sent_us"]) / 1e6  # type: ignore[arg-type]
                  for r in records]
        spans[phase] = (min(starts), max(ends))
    names = [p.name for p in results.phases]
    assert names == ["single", "counted", "timed", "last"]
    for before, after in itertools.pairwise(names):
        # every request of the next phase started after every request of this one ended
        assert spans[after][0] >= spans[before][1], (before, spans[before], after, spans[after])
    counts = Counter(str(r["phase"]) for r in log)
    assert counts == {"single": 3, "counted": 24, "timed": 24, "last": 6}
    for phase in results.phases:
        agg = aggregate(results, phase=phase.name)
        assert agg.counters.requests == counts[phase.name]


def test_per_phase_wall_times_do_not_depend_on_the_worker_count(tmp_path: Path) -> None:
    one, _ = run_log(tmp_path, ORDERED, 1)
    three, _ = run_log(tmp_path, ORDERED, 3)
    for a, b in zip(one.phases, three.phases, strict=True):
        if a.name == "timed":     # a duration: its wall time is the duration, and a tail
            assert b.wall == pytest.approx(a.wall, rel=0.05), (a, b)
    timed = next(p for p in three.phases if p.name == "timed")
    assert aggregate(three, phase="timed").value("throughput") == pytest.approx(24 / timed.wall)


def test_cases_run_the_stated_number_of_times_in_order(tmp_path: Path) -> None:
    text = SIM + """
phases:
  - {name: cases, each: all, times: 2}
  - {name: together, each: [single, batch], times: 3, concurrent: true}
""" + REQUESTS
    results, log = run_log(tmp_path, text, 2)
    cases = [r["request"] for r in log if r["phase"] == "cases"]
    assert cases == ["single", "single", "batch", "batch", "models", "models"]
    together = Counter(str(r["request"]) for r in log if r["phase"] == "together")
    assert together == {"single": 3, "batch": 3}
    assert results.outcome is not None and results.outcome.status == "passed"


def test_groups_run_several_load_models_at_once(tmp_path: Path) -> None:
    text = SIM + """
phases:
  - name: mixed
    duration: 3s
    groups:
      chatters: {users: 4, mix: [batch]}
      probes: {arrival_rate: 5, mix: [models]}
slos:
  - {assert: latency.p95 < 2s, phase: mixed}
""" + REQUESTS.replace("  - {name: single, target: chat, body: {messages: [{role: user, "
                       "content: one}]}}\n", "")
    results, log = run_log(tmp_path, text, 2)
    assert [p.name for p in results.phases][:2] == ["mixed.chatters", "mixed.probes"]
    by_group = Counter(str(r["phase"]) for r in log)
    assert set(by_group) == {"mixed.chatters", "mixed.probes"}
    assert {str(r["request"]) for r in log if r["phase"] == "mixed.probes"} == {"models"}
    assert by_group["mixed.probes"] == 15
    # both ran the whole time, side by side
    probes = [float(r["t"]) for r in log if r["phase"] == "mixed.probes"]  # type: ignore[arg-type]
    chats = [float(r["t"]) for r in log if r["phase"] == "mixed.chatters"]  # type: ignore[arg-type]
    assert min(probes) < max(chats) and min(chats) < max(probes)
    slo = results.slos[0]
    assert slo.passed and slo.scope["phase"] == "mixed"
    mixed = aggregate(results, phase="mixed")
    assert mixed.counters.requests == len(log)
    assert mixed.wall_seconds < 4.5      # the groups overlap: their time counts once


def test_a_request_no_phase_sends_is_invalid(tmp_path: Path) -> None:
    scenario = tmp_path / "plan.yaml"
    scenario.write_text(SIM + """
phases:
  - {name: load, duration: 1s, arrival_rate: 2, mix: [single, batchh]}
""" + REQUESTS)
    result = CliRunner().invoke(cli, ["validate", str(scenario)])
    assert result.exit_code == exitcodes.INVALID_INPUT
    assert "unknown request 'batchh'; did you mean 'batch'?" in result.output
    assert "no phase sends request 'models'" in result.output
