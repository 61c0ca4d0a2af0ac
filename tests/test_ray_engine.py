"""`--engine ray` on a real two-node Ray cluster on this machine (issue 17).

The cluster is `ray.cluster_utils.Cluster`: a head and one more node, one CPU
each, started and shut down by this module (never `ray stop`). Every run goes
through the CLI as a subprocess — its own Ray driver — against the bundled
openai-sim on 127.0.0.1: the merged results equal what the simulator served
and what every actor logged; phases are barriers across actors; a killed actor
is named and what it measured up to its last snapshot is kept; Ctrl-C and
SIGTERM stop every actor and keep everything measured.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
from click.testing import CliRunner

from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.compile.compiler import compile_document
from llmscen.driver import messages as m
from llmscen.driver.cluster import loopback_problem, on_actor_clock, place
from llmscen.engine.registry import Registry
from llmscen.metrics.histogram import Histogram
from llmscen.metrics.results import ClusterInfo, RunResults
from llmscen.spec.loader import load_file

SCENARIO = """
version: 1
services:
  sim: {{builtin: openai-sim, options: {{ttft: 20ms, itl: 5ms, output_tokens: 10}}}}
targets:
  chat: {{plugin: vllm, service: sim, model: sim-model, timeout: 10s}}
phases:
{phases}
requests:
  - name: chat
    target: chat
    stream: true
    body: {{messages: [{{role: user, content: hi}}], max_tokens: 10}}
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    cluster_utils = pytest.importorskip("ray.cluster_utils",
                                        reason="pip install 'llmscen[ray]'")
    with socket.socket() as s:       # a free port for Ray Client (ray://)
        s.bind(("127.0.0.1", 0))
        client_port = s.getsockname()[1]
    started = cluster_utils.Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "ray_client_server_port": client_port})
    started.client_address = f"ray://127.0.0.1:{client_port}"
    try:
        started.add_node(num_cpus=1)
        started.wait_for_nodes()
        yield started
    finally:
        started.shutdown()


def command(scenario: Path, cluster: Any, out: Path, log: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "llmscen.cli.main", "run", str(scenario), "--engine", "ray",
            "--address", cluster.address, "--workers", "2", "--out", str(out),
            "--log-requests", str(log), "--progress", "lines", *extra]


def records(log: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in log.read_bytes().splitlines()]


def actor_processes() -> list[psutil.Process]:
    """This test's worker actors: Ray names their processes after the actor class."""
    return [p for p in psutil.Process().children(recursive=True)
            if "ActorWorker" in " ".join(p.cmdline())]


@pytest.mark.slow
@pytest.mark.ray
def test_a_run_on_two_nodes_merges_exactly_what_every_actor_measured(
        tmp_path: Path, cluster: Any) -> None:
    scenario = tmp_path / "two.yaml"
    scenario.write_text(SCENARIO.format(phases="  - {name: open, duration: 3s, arrival_rate: 12}"
                                               "\n  - {name: closed, users: 2, requests: 20}"))
    out, log = tmp_path / "out", tmp_path / "requests.jsonl"
    proc = subprocess.run(command(scenario, cluster, out, log), capture_output=True, text=True,
                          timeout=180, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output
    results = RunResults.load(out / "results.json")
    logged = records(log)

    # both actors worked, each on its own node, clocks measured against the driver's
    info = results.meta.cluster
    assert info is not None and info.engine == "ray" and results.meta.workers == 2
    assert sorted(w for n in info.nodes for w in n.workers) == [0, 1]
    assert len(info.nodes) == 2, info    # SPREAD: one actor per node
    for node in info.nodes:
        # one machine, one monotonic clock: the measured offset is within its own error
        assert abs(node.clock_offset) <= node.rtt, node
    assert {r["worker"] for r in logged} == {0, 1}

    for phase in ("open", "closed"):
        (scope,) = [s for s in results.scopes if s.phase == phase]
        mine = [r for r in logged if r["phase"] == phase and "not_sent" not in r]
        c = scope.counters
        assert c.requests == len(mine) and c.ok == c.requests, (phase, c)
        assert c.requests == c.ok + c.error_total + c.check_failures
        # the simulator's own count of what it served in the phase
        served = next(m for m in results.server_metrics if m.phase == phase)
        assert served.total("vllm:request_success_total") == c.requests, served.delta
        # merged histograms are the histogram of the union of every actor's records
        union = Histogram("duration")
        union.record_many(r["latency_us"] for r in mine)
        merged = Histogram.decode(scope.histograms["latency"])
        assert merged.count == union.count == len(mine)
        for p in (50.0, 90.0, 99.0, 100.0):
            a, b = merged.percentile(p), union.percentile(p)
            assert a is not None and b is not None
            assert abs(a - b) <= b * 2e-3 + 2, (phase, p, a, b)   # HDR's 3 digits, µs rounding
    (closed,) = [s for s in results.scopes if s.phase == "closed"]
    assert closed.counters.requests == 20   # the deterministic split: 10 each, none twice
    assert Counter(r["worker"] for r in logged if r["phase"] == "closed") == {0: 10, 1: 10}

    # the barrier: the second phase starts after every actor's last call of the first, on
    # the driver's timeline (each actor's times moved by its node's offset)
    first, second = results.phases
    last_open = max(r["t"] for r in logged if r["phase"] == "open")
    first_closed = min(r["t"] for r in logged if r["phase"] == "closed")
    slack = max(n.rtt for n in info.nodes)
    assert last_open <= second.started + slack, (last_open, second.started)
    assert first_closed >= second.started - slack
    assert first.ended <= second.started


LONG = "  - {name: long, duration: 60s, arrival_rate: 20}"


STOP_ON_LOSS = "run: {on_worker_lost: stop}\n"


def start(tmp_path: Path, cluster: Any, phases: str = LONG, extra: str = STOP_ON_LOSS,
          first: str = "long") -> tuple[subprocess.Popen[str], Path, Path, list[str]]:
    scenario = tmp_path / "long.yaml"
    scenario.write_text(SCENARIO.format(phases=phases) + extra)
    out, log = tmp_path / "out", tmp_path / "requests.jsonl"
    proc = subprocess.Popen(command(scenario, cluster, out, log, "--log-level", "info"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    seen = []
    waiting = {f"worker {i}: what it measured is kept if it is lost" for i in (0, 1)}
    for line in proc.stdout:      # until every worker's snapshot holds requests, however slow
        seen.append(line)         # start-up is on a loaded machine
        waiting = {w for w in waiting if w not in line}
        if not waiting:
            break
    assert not waiting and any(f"phase {first}" in line for line in seen), "".join(seen)
    return proc, out, log, seen


def actor_of(seen: list[str], worker: int) -> psutil.Process:
    """Worker `worker`'s actor process, as the driver logged it (--log-level info)."""
    pids = [int(p) for p in re.findall(rf"worker {worker}: Ray actor pid (\d+)", "".join(seen))]
    assert len(pids) == 1, "".join(seen)
    return psutil.Process(pids[0])


@pytest.mark.slow
@pytest.mark.ray
def test_a_killed_actor_is_named_and_what_it_measured_is_kept(tmp_path: Path,
                                                                cluster: Any) -> None:
    proc, out, log, seen = start(tmp_path, cluster)
    actors = actor_processes()
    assert len(actors) == 2, [p.cmdline() for p in actors]
    victim = actors[1]
    victim.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    rest, _ = proc.communicate(timeout=90)
    took = time.monotonic() - killed
    output = "".join(seen) + rest
    assert proc.returncode == exitcodes.COULD_NOT_RUN, output
    assert took < 30, "the run stops when an actor is lost, not at the end of the phase"
    assert "Traceback" not in output, output
    results = RunResults.load(out / "results.json")
    assert results.outcome is not None and results.meta.cluster is not None
    (lost,) = [r for r in results.outcome.reasons if r.kind == "worker_lost"]
    worker = lost.detail["worker"]
    assert f"worker {worker} (Ray actor pid {victim.pid}" in lost.message, lost
    assert "died [its worker process has died" in lost.message, lost
    assert victim.pid in next(n.pids for n in results.meta.cluster.nodes
                              if worker in n.workers)
    by_worker: Counter[int] = Counter(r["worker"] for r in records(log) if "not_sent" not in r)
    kept = lost.detail["kept"]
    # what it completed up to its last snapshot (every 2 s) is kept: at most ~3 s of 10/s lost
    assert 0 < kept <= by_worker[worker]
    assert by_worker[worker] - kept <= 40, (kept, by_worker)
    (scope,) = results.scopes
    c = scope.counters
    assert c.requests == by_worker[1 - worker] + kept
    assert c.requests == c.ok + c.error_total + c.check_failures
    gone = [p for p in actors if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not gone, "the other actor was stopped too"


@pytest.mark.slow
@pytest.mark.ray
def test_a_lost_actor_leaves_the_others_to_finish_and_worker_1_reads_the_server(
        tmp_path: Path, cluster: Any) -> None:
    """By default the run goes on without a lost actor: worker 0 killed in the first phase,
    worker 1 finishes both and takes over reading the server's metrics."""
    phases = ("  - {name: first, duration: 8s, arrival_rate: 10}\n"
              "  - {name: second, duration: 4s, arrival_rate: 10}")
    proc, out, log, seen = start(tmp_path, cluster, phases, extra="", first="first")
    victim = actor_of(seen, 0)
    victim.send_signal(signal.SIGKILL)
    rest, _ = proc.communicate(timeout=120)
    output = "".join(seen) + rest
    assert proc.returncode == exitcodes.COULD_NOT_RUN, output
    assert "Traceback" not in output, output
    results = RunResults.load(out / "results.json")
    assert results.outcome is not None
    (lost,) = [r for r in results.outcome.reasons if r.kind == "worker_lost"]
    assert lost.detail["worker"] == 0 and "the others went on without its share" in lost.message
    assert f"Ray actor pid {victim.pid}" in lost.message, lost
    logged = [r for r in records(log) if "not_sent" not in r]
    by_phase = {p: Counter(r["worker"] for r in logged if r["phase"] == p)
                for p in ("first", "second")}
    assert by_phase["second"][0] == 0 and by_phase["second"][1] >= 10, by_phase
    second = next(s for s in results.scopes if s.phase == "second")
    c = second.counters
    assert c.requests == by_phase["second"][1] and c.requests == c.ok + c.error_total + \
        c.check_failures
    # worker 1 read the server during the second phase and at its ends
    served = next(m for m in results.server_metrics if m.phase == "second")
    assert served.total("vllm:request_success_total") == c.requests, served.delta
    readings = [r for r in results.series.resources
                if r.phase == "second" and r.name.startswith("server.")]
    assert readings and max(len(r.points) for r in readings) >= 2, readings
    ok_first = next(s for s in results.scopes if s.phase == "first").counters.requests
    assert ok_first == by_phase["first"][1] + lost.detail["kept"]


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_the_driver_stops_every_actor_and_keeps_what_they_measured(
        tmp_path: Path, cluster: Any, how: signal.Signals) -> None:
    proc, out, log, seen = start(tmp_path, cluster)
    actors = actor_processes()
    assert len(actors) == 2, [p.cmdline() for p in actors]
    proc.send_signal(how)
    rest, _ = proc.communicate(timeout=90)
    output = "".join(seen) + rest
    assert proc.returncode == exitcodes.COULD_NOT_RUN, output
    assert "INTERRUPTED" in output and "Traceback" not in output, output
    results = RunResults.load(out / "results.json")
    assert results.meta.interrupted
    (scope,) = results.scopes
    c = scope.counters
    done: defaultdict[str, int] = defaultdict(int)
    for record in records(log):
        if "not_sent" not in record:
            done[str(record["error"])] += 1
    assert c.requests == sum(done.values()) and c.requests > 20, (c, done)
    assert c.ok == done["None"]
    assert c.requests == c.ok + c.error_total + c.check_failures
    _, alive = psutil.wait_procs(actors, timeout=10)
    assert not alive, "every actor is stopped with the run"


@pytest.mark.slow
@pytest.mark.ray
def test_a_lost_node_stops_the_run_and_keeps_what_its_actor_measured(tmp_path: Path,
                                                                       cluster: Any) -> None:
    (node,) = [n for n in cluster.list_all_nodes() if n is not cluster.head_node]
    proc, out, log, seen = start(tmp_path, cluster)
    try:
        cluster.remove_node(node, allow_graceful=False)   # its raylet and actor, killed
        rest, _ = proc.communicate(timeout=120)
    finally:
        cluster.add_node(num_cpus=1)                      # two nodes again for the others
        cluster.wait_for_nodes()
    output = "".join(seen) + rest
    assert proc.returncode == exitcodes.COULD_NOT_RUN, output
    assert "Traceback" not in output, output
    results = RunResults.load(out / "results.json")
    assert results.outcome is not None
    (lost,) = [r for r in results.outcome.reasons if r.kind == "worker_lost"]
    # Ray declares the node dead, or the actor stays unreachable past the driver's patience
    # (Ray names the node after "its node has died" in some of its messages)
    assert "died [its node has died" in lost.message or \
        "died [unreachable for 10s" in lost.message, lost
    by_worker: Counter[int] = Counter(r["worker"] for r in records(log) if "not_sent" not in r)
    worker, kept = lost.detail["worker"], lost.detail["kept"]
    assert 0 < kept <= by_worker[worker]
    (scope,) = results.scopes
    assert scope.counters.requests == by_worker[1 - worker] + kept


@pytest.mark.slow
@pytest.mark.ray
def test_an_abort_slo_judged_on_the_merged_data_stops_every_actor(tmp_path: Path,
                                                                   cluster: Any) -> None:
    scenario = tmp_path / "abort.yaml"
    scenario.write_text(SCENARIO.format(phases=LONG) +
                        "slos:\n  - {assert: latency.p50 < 1us, window: 1s, abort: true}\n")
    out, log = tmp_path / "out", tmp_path / "requests.jsonl"
    proc = subprocess.run(command(scenario, cluster, out, log), capture_output=True, text=True,
                          timeout=180, check=False)
    assert proc.returncode == exitcodes.ASSERTIONS_FAILED, proc.stdout + proc.stderr
    assert "FAILED: stopped early: latency.p50" in proc.stdout, proc.stdout
    results = RunResults.load(out / "results.json")
    (phase,) = results.phases
    assert phase.wall < 15, phase       # of 60 s: stopped once the first second was judged
    logged = records(log)
    assert {r["worker"] for r in logged} == {0, 1}
    # every actor stopped with the run: nothing completed well after the phase ended
    assert max(r["t"] for r in logged) <= phase.ended + 0.5, phase
    (scope,) = results.scopes
    assert scope.counters.requests == sum(1 for r in logged if "not_sent" not in r)


@pytest.mark.slow
@pytest.mark.ray
def test_a_ray_client_address_runs_the_same(tmp_path: Path, cluster: Any) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO.format(phases="  - {name: p, users: 2, requests: 6}"))
    argv = command(scenario, cluster, tmp_path / "out", tmp_path / "l.jsonl")
    argv[argv.index("--address") + 1] = cluster.client_address
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = RunResults.load(tmp_path / "out" / "results.json")
    assert results.meta.cluster is not None
    assert results.meta.cluster.address == cluster.client_address
    assert sum(len(n.workers) for n in results.meta.cluster.nodes) == 2
    assert results.scopes[0].counters.ok == 6


class FlakyRay:
    """`ray` whose client connects fail `fails` times as Ray's proxy fails (ray#63202)."""

    def __init__(self, fails: int) -> None:
        self.fails, self.inits, self.shutdowns = fails, 0, 0
        self.util = type("util", (), {"get_node_ip_address": staticmethod(lambda: "10.0.0.1")})

    def init(self, **_: Any) -> None:
        self.inits += 1
        if self.inits <= self.fails:
            raise ConnectionAbortedError("Initialization failure from server:\nTraceback "
                                         "(most recent call last):\n  File x\nRuntimeError: "
                                         "Starting Ray client server failed.")

    def shutdown(self) -> None:
        self.shutdowns += 1

    def nodes(self) -> list[dict[str, Any]]:
        return [{"Alive": True, "NodeManagerAddress": "10.0.0.1"}]

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": 2.0}


@pytest.mark.parametrize("fails", [1, 2])
def test_a_client_connect_ray_fails_to_start_is_tried_again(monkeypatch: pytest.MonkeyPatch,
                                                             fails: int) -> None:
    from llmscen.driver import cluster

    fake = FlakyRay(fails)
    monkeypatch.setattr(cluster, "_ray", lambda: fake)
    connected = cluster.RayCluster("ray://10.0.0.1:10001")
    assert (fake.inits, fake.shutdowns, connected.cpus) == (fails + 1, fails, 2)


def test_a_client_connect_that_keeps_failing_names_rays_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from llmscen.driver import cluster
    from llmscen.errors import InputError

    fake = FlakyRay(cluster.CLIENT_TRIES)
    monkeypatch.setattr(cluster, "_ray", lambda: fake)
    with pytest.raises(InputError, match="cannot connect to a Ray cluster: Initialization "
                       "failure from server: RuntimeError: Starting Ray client server failed"):
        cluster.RayCluster("ray://10.0.0.1:10001")
    assert fake.inits == cluster.CLIENT_TRIES


def test_a_traceback_ray_sends_back_is_cut_to_its_error() -> None:
    from llmscen.driver.cluster import ray_said

    sent = ("Initialization failure from server:\nTraceback (most recent call last):\n"
            '  File "/x/ray/util/client/server/proxier.py", line 765, in Datapath\n'
            "    if not self.proxy_manager.start_specific_server(\n"
            "RuntimeError: Starting Ray client server failed. See "
            "ray_client_server_23000.err for detail.\n")
    assert ray_said(RuntimeError(sent)) == (
        "Initialization failure from server: RuntimeError: Starting Ray client server "
        "failed. See ray_client_server_23000.err for detail.")
    assert ray_said(ConnectionError("no  cluster\nat 1.2.3.4")) == "no cluster at 1.2.3.4"


ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "distributed.md").read_text()


@pytest.mark.slow
@pytest.mark.ray
def test_the_documented_command_runs_as_written(tmp_path: Path, cluster: Any) -> None:
    block = re.search(r"```sh\n(.+?)\n```", DOC, re.S)
    assert block is not None and block.group(1).startswith("llmscen run ")
    argv = shlex.split(block.group(1).replace("HEAD:6379", cluster.address))
    proc = subprocess.run([sys.executable, "-m", "llmscen.cli.main", *argv[1:], "--out",
                           str(tmp_path / "out"), "--progress", "lines"], cwd=ROOT,
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = RunResults.load(tmp_path / "out" / "results.json")
    assert results.meta.workers == 2 and results.meta.cluster is not None


def test_the_documented_cluster_meta_is_what_results_hold() -> None:
    example = DOC.split("```json\n", 1)[1].split("\n```", 1)[0]
    meta = orjson.loads("{" + example + "}")
    info = ClusterInfo.model_validate(meta["cluster"])
    assert [n.workers for n in info.nodes] == [[0], [1]] and meta["workers"] == 2


@pytest.mark.ray
def test_more_workers_than_the_cluster_has_cpus_is_refused(tmp_path: Path,
                                                            cluster: Any) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO.format(phases="  - {name: p, users: 1, requests: 1}"))
    argv = command(scenario, cluster, tmp_path / "out", tmp_path / "l.jsonl", "--workers", "3")
    del argv[argv.index("--address"):argv.index("--address") + 2]   # auto: RAY_ADDRESS
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "RAY_ADDRESS": cluster.address})
    assert proc.returncode == exitcodes.INVALID_INPUT, proc.stdout + proc.stderr
    assert f"--workers 3: the Ray cluster at {cluster.address} offers 2 CPUs" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_without_ray_the_engine_names_the_extra(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)    # `import ray` fails as if not installed
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO.format(phases="  - {name: p, users: 1, requests: 1}"))
    result = CliRunner().invoke(cli, ["run", str(scenario), "--engine", "ray",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == exitcodes.INVALID_INPUT, result.output
    assert "pip install 'llmscen[ray]'" in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_address_without_the_ray_engine_is_refused(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO.format(phases="  - {name: p, users: 1, requests: 1}"))
    result = CliRunner().invoke(cli, ["run", str(scenario), "--address", "auto"])
    assert result.exit_code == exitcodes.INVALID_INPUT
    assert "--engine ray" in result.output


@pytest.mark.parametrize(("target", "hosts", "refused"), [
    ("service", ["10.0.0.1", "10.0.0.2"], True),      # services run on the driver's host
    ("http://127.0.0.1:8000", ["10.0.0.1", "10.0.0.2"], True),
    ("http://localhost:8000", ["10.0.0.1", "10.0.0.2"], True),
    ("http://[::1]:8000", ["10.0.0.1", "10.0.0.2"], True),
    ("http://10.0.0.9:8000", ["10.0.0.1", "10.0.0.2"], False),
    ("service", ["10.0.0.1"], False),                 # every node on the driver's host
    ("http://127.0.0.1:8000", ["10.0.0.1"], False),
])
def test_a_loopback_target_on_a_cluster_of_several_hosts_is_an_error(
        tmp_path: Path, registry: Registry, target: str, hosts: list[str],
        refused: bool) -> None:
    scenario = tmp_path / "s.yaml"
    text = SCENARIO.format(phases="  - {name: p, users: 1, requests: 1}")
    if target != "service":
        text = text.replace("service: sim,", f"url: '{target}',")
    scenario.write_text(text)
    plan = compile_document(load_file(scenario), registry)
    problem = loopback_problem(plan, hosts, driver="10.0.0.1")
    if not refused:
        assert problem is None
        return
    assert problem is not None
    assert "target 'chat'" in problem and "loopback" in problem and "10.0.0.2" in problem


class _Remote:
    def __init__(self, call: Any) -> None:
        self.remote = call


class SkewedActor:
    """Stands in for an actor handle on a node whose clock is `skew_ns` ahead of ours and
    answers after `delay` seconds each way (Ray itself is what this replaces)."""

    def __init__(self, skew_ns: int, delay: float) -> None:
        self.where = _Remote(self._where)
        self.skew_ns, self.delay = skew_ns, delay

    async def _where(self) -> dict[str, Any]:
        await asyncio.sleep(self.delay)
        now = time.perf_counter_ns() + self.skew_ns
        await asyncio.sleep(self.delay)
        return {"clock_ns": now, "pid": 1, "node": "n" * 32, "address": "10.0.0.2"}


@pytest.mark.parametrize("skew", [-3_000_000_000, 0, 7_500_000_000])
def test_a_nodes_clock_offset_is_measured_and_applied_to_every_instant_sent(skew: int) -> None:
    where = asyncio.run(place(SkewedActor(skew, delay=0.005)))
    assert where.rtt_ns >= 10_000_000
    assert abs(where.offset_ns - skew) <= where.rtt_ns // 2, where
    start = on_actor_clock(m.StartPhase(2, start_ns=10**12, origin_ns=10**11), where.offset_ns)
    assert isinstance(start, m.StartPhase) and start.index == 2
    assert (start.start_ns, start.origin_ns) == (10**12 + where.offset_ns,
                                                 10**11 + where.offset_ns)
    fault = on_actor_clock(m.FaultStarted(("chat",), 5 * 10**11, "x"), where.offset_ns)
    assert isinstance(fault, m.FaultStarted) and fault.at_ns == 5 * 10**11 + where.offset_ns
    assert on_actor_clock(m.Stop(), where.offset_ns) == m.Stop()
