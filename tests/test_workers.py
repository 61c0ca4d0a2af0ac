from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmscen.cli.main import cli
from llmscen.compile.compiler import compile_document
from llmscen.compile.share import share
from llmscen.engine.registry import Registry
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults
from llmscen.spec.loader import load_file

ROOT = Path(__file__).resolve().parent.parent


def test_share_splits_rates_users_and_counts(registry: Registry) -> None:
    plan = compile_document(load_file(ROOT / "scenarios/peak.yaml",
                                      overrides=["phases.0.requests=7"]), registry)
    parts = [share(plan, i, 3) for i in range(3)]
    for name in ("warmup", "ramp", "peak", "soak"):
        original = next(p for p in plan.phases if p.name == name)
        mine = [next(p for p in part.phases if p.name == name) for part in parts]
        if original.kind == "open":
            # one schedule, every third arrival each: the same arrivals as one worker
            assert [p.stride for p in mine] == [(0, 3), (1, 3), (2, 3)]
            assert {(p.rate, p.ramp_to, p.seed, p.max_requests) for p in mine} == {
                (original.rate, original.ramp_to, original.seed, original.max_requests)}
            continue
        if original.users is not None:
            assert sum(p.users or 0 for p in mine) == original.users
        if original.max_requests is not None:
            assert sum(p.max_requests or 0 for p in mine) == original.max_requests
        assert len({p.seed for p in mine}) == 3   # each worker its own random stream


def test_closed_phase_requests_follow_users(registry: Registry) -> None:
    plan = compile_document(load_file(ROOT / "scenarios/peak.yaml",
                                      overrides=["phases.3={users: 1, requests: 14}"]), registry)
    parts = [share(plan, i, 2) for i in range(2)]
    soak = [part.phases[3] for part in parts]
    assert [(p.users, p.max_requests) for p in soak] == [(1, 14), (0, 0)]


def test_test_cases_run_on_one_worker(registry: Registry) -> None:
    plan = compile_document(load_file(ROOT / "scenarios/flux.yaml"), registry)
    parts = [share(plan, i, 2) for i in range(2)]
    checks = [next(p for p in part.phases if p.name == "checks") for part in parts]
    assert [p.times for p in checks] == [2, 0]
    assert checks[0].cases == tuple(r.name for r in plan.requests)


@pytest.mark.slow
def test_two_workers_merge_into_one_result(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["run", str(ROOT / "tests/scenarios/engine/timing.yaml"),
                                      "--workers", "2", "--out", str(tmp_path), "--quiet",
                                      # timing bounds are test_engine_timing's business
                                      "--set", "slos=[]"])
    results = RunResults.load(tmp_path / "results.json")
    agg = aggregate(results)
    # 20/s for 5 s: the two workers' schedules add up to the whole rate
    assert 95 <= agg.counters.requests <= 102, result.output
    assert agg.counters.ok == agg.counters.requests
    assert results.meta.workers == 2
    hist = agg.histogram("itl")
    assert hist is not None and hist.count == 29 * agg.counters.requests
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_once_data_is_never_handed_out_twice_across_workers(tmp_path: Path) -> None:
    rows = [f"row-{i}" for i in range(30)]
    (tmp_path / "rows.csv").write_text("word\n" + "\n".join(rows) + "\n")
    (tmp_path / "once.yaml").write_text("""
version: 1
services:
  sim: {builtin: openai-sim, options: {ttft: 1ms, itl: 1ms, output_tokens: 2, echo_prompt: true}}
targets:
  chat: {plugin: openai, service: sim, model: sim-model}
data:
  words: {file: rows.csv, order: once}
phases:
  - {duration: 4s, arrival_rate: 40}
requests:
  - name: echo
    target: chat
    data: words
    body: {messages: [{role: user, content: "{{ row.word }}"}], max_tokens: 2}
""")
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "once.yaml"), "--out",
                                      str(tmp_path / "out"), "--quiet", "--workers", "2"])
    results = RunResults.load(tmp_path / "out" / "results.json")
    # 30 rows between two workers: each row once, then both stop early
    assert aggregate(results).counters.requests == 30, result.output
    assert any("has no rows left" in n for n in results.meta.notes)


def test_the_default_worker_count_leaves_room_for_local_services(registry: Registry) -> None:
    from llmscen.driver import default_workers

    local = compile_document(load_file(ROOT / "scenarios/smoke.yaml"), registry)
    remote = compile_document(load_file(ROOT / "scenarios/smoke.yaml"), registry,
                              {"chat": "http://127.0.0.1:9"})
    assert default_workers(local, cores=2) == 1        # the simulator takes a core
    assert default_workers(remote, cores=2) == 2       # its service is not started
    assert default_workers(local, cores=1) == 1
    assert default_workers(remote, cores=64) == 8


LOSS = """
version: 1
services:
  sim: {builtin: openai-sim, options: {ttft: 10ms, itl: 2ms, output_tokens: 4}}
targets:
  chat: {plugin: vllm, service: sim, model: sim-model, timeout: 10s}
phases:
  - {name: first, duration: 6s, arrival_rate: 10}
  - {name: second, duration: 3s, arrival_rate: 10}
requests:
  - {name: chat, target: chat, stream: true,
     body: {messages: [{role: user, content: hi}], max_tokens: 4}}
"""


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["continue", "stop"])
def test_a_lost_worker_process_ends_the_run_only_if_the_scenario_says_so(
        tmp_path: Path, policy: str) -> None:
    import os
    import re
    import signal
    import subprocess
    import sys

    import orjson

    from llmscen.cli import exitcodes

    (tmp_path / "s.yaml").write_text(LOSS + f"run: {{on_worker_lost: {policy}}}\n")
    log = tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmscen.cli.main", "run", str(tmp_path / "s.yaml"), "--workers",
         "2", "--out", str(tmp_path / "out"), "--log-requests", str(log), "--progress", "lines",
         "--log-level", "info"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "phase first" in line:
            break
    (pid,) = [int(p) for p in re.findall(r"worker 0: process pid (\d+)", "".join(seen))]
    time.sleep(2.5)
    os.kill(pid, signal.SIGKILL)
    rest, _ = proc.communicate(timeout=90)
    output = "".join(seen) + rest
    assert proc.returncode == exitcodes.COULD_NOT_RUN, output
    assert "Traceback" not in output, output
    results = RunResults.load(tmp_path / "out" / "results.json")
    assert results.outcome is not None
    (lost,) = [r for r in results.outcome.reasons if r.kind == "worker_lost"]
    assert lost.detail["worker"] == 0 and "was killed by SIGKILL" in lost.message, lost
    done = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    second = [r for r in done if r["phase"] == "second" and "not_sent" not in r]
    if policy == "stop":
        assert not second and [p.name for p in results.phases] == ["first"], output
        return
    assert "the others went on without its share" in lost.message
    assert second and {r["worker"] for r in second} == {1}
    scope = next(s for s in results.scopes if s.phase == "second")
    assert scope.counters.requests == len(second) == scope.counters.ok
    # worker 1 took over reading the server: the second phase has its delta and readings
    served = next(m for m in results.server_metrics if m.phase == "second")
    assert served.total("vllm:request_success_total") == len(second), served.delta
    assert any(r.phase == "second" and r.name.startswith("server.") and len(r.points) >= 2
               for r in results.series.resources)
