"""How late would a read's time be, stamped when the client reads it? (issue 15)

    .venv/bin/python benchmarks/read_delay.py [--reps 3] [--duration 5] [--users 16,64]

Against the bundled openai-sim pacing its tokens (paced_server.py, core 0), `llmscen run
benchmarks/scenarios/sse.yaml --workers 1` on core 1, in a child process that notes, for
every socket read of its HTTP path, the time between the kernel's receive stamp (what
llmscen records, docs/targets.md) and the moment the read reached the runner: the delay a
tool stamping reads in user space adds to that read's TTFT or ITL. Printed per rep:
reads, their delay p50/p90/p99/max (µs), reads with no kernel stamp, and the client's CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def child(argv: list[str]) -> None:
    """Run the CLI in this process with each read's delay noted; print them as JSON last."""
    import llmscen.runners.openai_transport as transport
    from llmscen.runners import stamped

    delays: list[int] = []
    clock = stamped._clock
    received = transport.Connection.data_received_at

    def noted(self: transport.Connection, data: bytes, stamp_ns: int) -> None:
        delays.append(clock() - stamp_ns)
        received(self, data, stamp_ns)

    transport.Connection.data_received_at = noted  # type: ignore[method-assign]
    from llmscen.cli.main import main

    try:
        main(argv)
    finally:
        delays.sort()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(json.dumps({"delays": delays[:: max(1, len(delays) // 20000)], "reads": len(delays),
                          "cpu_s": usage.ru_utime + usage.ru_stime}))


def quantile(values: list[int], q: float) -> float:
    return values[int(q * (len(values) - 1))] / 1000 if values else float("nan")


def rep(url: str, users: int, duration: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        argv = ["taskset", "-c", "1", sys.executable, __file__, "--child", "run",
                str(HERE / "scenarios" / "sse.yaml"), "--target", f"api={url}",
                "--set", f"phases.0.duration={duration}s", "--set", f"phases.0.users={users}",
                "--workers", "1", "--out", out, "-q"]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"the run printed no delays (exit {proc.returncode}): {proc.stderr[-2000:]}")
    got = json.loads(lines[-1])
    d = got["delays"]
    return {"users": users, "reads": got["reads"], "p50_us": quantile(d, 0.5),
            "p90_us": quantile(d, 0.9), "p99_us": quantile(d, 0.99), "max_us": quantile(d, 1.0),
            "client_cpu_s": round(got["cpu_s"], 2)}


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--users", default="16,64")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from paced_server import paced_target

    rows = []
    with paced_target("sim", cpu=0) as target:
        for r in range(args.reps):
            for users in (int(u) for u in args.users.split(",")):
                row = rep(target.url("sse"), users, args.duration)
                row["rep"] = r + 1
                rows.append(row)
                print(f"rep {r + 1} users {users}: {row['reads']} reads, delay p50 "
                      f"{row['p50_us']:.0f} p90 {row['p90_us']:.0f} p99 {row['p99_us']:.0f} max "
                      f"{row['max_us']:.0f} µs, client CPU "
                      f"{row['client_cpu_s']} s, load {os.getloadavg()[0]:.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
