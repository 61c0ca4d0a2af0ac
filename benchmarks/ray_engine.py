"""Client CPU per response: one local worker, two local workers, two Ray actors.

    .venv/bin/python benchmarks/ray_engine.py [--duration 10] [--users 16] [--reps 1]

The same closed loop against the bundled openai-sim (on 127.0.0.1), run three
ways through `run_plan`: `--workers 1`, `--workers 2`, and `--engine ray` with
two actors on a real two-node `ray.cluster_utils.Cluster` (one CPU per node)
that this script starts and shuts down. Each worker measures the CPU its own
process used every second (a Ray actor's includes Ray's threads in it: that is
the overhead asked about); the table gives the workers' CPU per response, and
the driver's own CPU (with one worker the worker runs in the driver's loop).
Needs the ray extra: pip install 'llmscen[ray]'.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

SCENARIO = """
version: 1
name: ray-bench
services:
  sim: {{builtin: openai-sim, options: {{ttft: 5ms, itl: 1ms, output_tokens: 16}}}}
targets:
  chat: {{plugin: openai, service: sim, model: sim-model, timeout: 10s}}
phases:
  - {{name: load, duration: {duration}s, users: {users}}}
requests:
  - name: chat
    target: chat
    stream: true
    body: {{messages: [{{role: user, content: hi}}], max_tokens: 16}}
"""


class CpuDisplay:
    """Keeps each worker's per-second CPU of the phase (a driver.session.Display)."""

    def __init__(self) -> None:
        self.cpu: dict[int, list[float]] = {}

    def phase_started(self, phase: Any, live: Any) -> None:
        self.cpu = {}

    def progress(self, live: Any) -> None:
        self.cpu = {i: list(view.cpu) for i, view in live.workers.items()}

    def note(self, message: str) -> None:
        pass


def run_once(mode: str, plan: Any, registry: Any, cluster: Any) -> dict[str, float]:
    from llmscen.driver import run_plan

    display = CpuDisplay()
    workers = 1 if mode == "local-1" else 2
    before = time.process_time()
    with tempfile.TemporaryDirectory() as out:
        done = run_plan(plan, registry, Path(out), workers=workers, display=display,
                        cluster=cluster if mode == "ray-2" else None)
    driver = time.process_time() - before
    ok = sum(s.counters.ok for s in done.results.scopes)
    client = sum(sum(seconds) for seconds in display.cpu.values())
    seconds = max((len(s) for s in display.cpu.values()), default=1)
    return {"responses": ok, "per_s": ok / seconds, "client_cpu_s": client,
            "us_per_response": client / max(ok, 1) * 1e6, "driver_cpu_s": driver,
            "driver_cores": driver / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--reps", type=int, default=1)
    args = parser.parse_args()

    from ray.cluster_utils import Cluster

    from llmscen.compile.compiler import compile_document
    from llmscen.driver.cluster import RayCluster
    from llmscen.engine.registry import Registry
    from llmscen.spec.loader import load_file

    registry = Registry.discover()
    scenario = Path(tempfile.mkdtemp()) / "ray-bench.yaml"
    scenario.write_text(SCENARIO.format(duration=args.duration, users=args.users))
    plan = compile_document(load_file(scenario), registry)
    started = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        started.add_node(num_cpus=1)
        started.wait_for_nodes()
        cluster = RayCluster(started.address)
        rows: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.reps):
            for mode in ("local-1", "local-2", "ray-2"):
                rows.setdefault(mode, []).append(run_once(mode, plan, registry, cluster))
        cluster.close()
    finally:
        started.shutdown()
    print(f"closed loop, {args.users} users, {args.duration}s, median of {args.reps}\n")
    print("| mode | responses/s | client CPU µs/response | driver CPU (cores) |")
    print("|---|---|---|---|")
    for mode, runs in rows.items():
        def med(key: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[key] for r in runs)
        print(f"| {mode} | {med('per_s'):.0f} | {med('us_per_response'):.0f} | "
              f"{med('driver_cores'):.3f} |")


if __name__ == "__main__":
    main()
