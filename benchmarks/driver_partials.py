"""The driver's CPU for live partials from many workers, with simulated workers.

    .venv/bin/python benchmarks/driver_partials.py [--workers 16] [--duration 10]

This machine has too few cores for 16 real actors, so: one real run with two
local workers records every report they send (Progress once a second, a
Snapshot of the encoded histograms every 2 s, the rest), pickled as Ray would
carry them; then the reports are replayed as if from `--workers` workers — each
real report copied once per simulated worker — through unpickling and the
driver's own report handling (`Driver._on`: the live view's merge, window
SLOs, snapshots kept). The figure is the driver's CPU per second of run, in
cores. Ray's own transport threads are not in it (benchmarks/ray_engine.py
measures a real cluster).
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import tempfile
import time
from pathlib import Path

SCENARIO = """
version: 1
name: partials
services:
  sim: {{builtin: openai-sim, options: {{ttft: 5ms, itl: 2ms, output_tokens: 16}}}}
targets:
  chat: {{plugin: openai, service: sim, model: sim-model, timeout: 10s}}
phases:
  - {{name: load, duration: {duration}s, arrival_rate: 100}}
requests:
  - name: chat
    target: chat
    stream: true
    body: {{messages: [{{role: user, content: hi}}], max_tokens: 16}}
slos:
  - {{assert: latency.p95 < 10s, window: 5s, abort: true}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--duration", type=int, default=10)
    args = parser.parse_args()

    from llmscen.compile.compiler import compile_document
    from llmscen.driver import make_meta, run_plan
    from llmscen.driver import session as s
    from llmscen.engine.registry import Registry
    from llmscen.spec.loader import load_file

    registry = Registry.discover()
    folder = Path(tempfile.mkdtemp())
    (folder / "p.yaml").write_text(SCENARIO.format(duration=args.duration))
    plan = compile_document(load_file(folder / "p.yaml"), registry)

    recorded: list[bytes] = []
    original = s.Driver._on

    def recording(self: s.Driver, report: s.m.Report) -> None:
        recorded.append(pickle.dumps(report))
        original(self, report)

    s.Driver._on = recording  # type: ignore[method-assign]
    try:
        run_plan(plan, registry, folder / "out", workers=2)
    finally:
        s.Driver._on = original  # type: ignore[method-assign]

    # replay: every report once per simulated worker, to a driver that expects them all
    options = s.RunOptions(workers=args.workers)
    driver = s.Driver(plan, registry, make_meta(plan, registry, args.workers, []), options)
    driver.workers = s._Workers(handles=[])
    driver.live.phase_started(plan.phases[0], 0.0)
    kinds: dict[str, int] = {}
    began = time.process_time()
    for raw in recorded:
        for copy in range(args.workers // 2):
            report = pickle.loads(raw)
            kinds[type(report).__name__] = kinds.get(type(report).__name__, 0) + 1
            worker = getattr(report, "worker", 0) * (args.workers // 2) + copy
            driver._on(dataclasses.replace(report, worker=worker))
    used = time.process_time() - began
    size = sum(len(r) for r in recorded) * (args.workers // 2)
    print(f"{args.workers} simulated workers, {args.duration}s of reports "
          f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}; "
          f"{size / 1e6:.1f} MB pickled)")
    print(f"driver CPU: {used:.3f}s for {args.duration}s of run = "
          f"{used / args.duration * 100:.2f}% of a core")


if __name__ == "__main__":
    main()
