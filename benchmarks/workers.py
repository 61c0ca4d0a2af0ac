"""Which `--workers` delivers most on this machine? (issue 15, goal 6)

    .venv/bin/python benchmarks/workers.py [--reps 3] [--duration 10] [--json FILE]

Runs `llmscen run` closed loop (64 users, streamed, 64 tokens) with every worker count
from 1 to the machine's cores, and without `--workers` (the default), interleaved, in
two cases:

  nginx   the static SSE target (benchmarks/static_server.py), unpinned on the same
          cores: a server on this machine that the run does not start
  sim     openai-sim started by the run (`services:`), no pacing (ttft 0, itl 0)

and prints responses/s for each count (median, min-max), the count the default chose,
and the host's other load. Nothing is pinned: this is what a user's `llmscen run` gets.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import TreeCPU
from static_server import static_target

HERE = Path(__file__).resolve().parent
SIM = """\
version: 1
services:
  sim: {builtin: openai-sim, options: {ttft: 0ms, itl: 0ms}}
targets:
  api: {plugin: openai, service: sim, model: sim-model}
phases:
  - {name: load, duration: 10s, users: 64, think: 0s}
requests:
  - name: chat
    target: api
    stream: true
    body: {messages: [{role: user, content: Count.}], max_tokens: 64, ignore_eos: true}
    expect: {status: 200}
"""


def one(argv: list[str], out: Path, duration: int, server: int | None) -> dict[str, Any]:
    """One run; `server` is a server's pid that the run did not start (its CPU is not other load)."""
    llmscen = str(Path(sys.executable).with_name("llmscen"))
    tree = TreeCPU(server) if server else None
    if tree:
        tree.sample(start=True)
    run = subprocess.run(
        [llmscen, "run", *argv, "--quiet", "--out", str(out), "--set", f"phases.0.duration={duration}s"],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if tree:
        tree.sample()
    path = out / "results.json"
    if not path.exists():
        raise SystemExit(f"llmscen exited {run.returncode}:\n{run.stderr.decode()[-2000:]}")
    results = json.loads(path.read_text())
    ok = sum(s["counters"]["ok"] for s in results["scopes"])
    stats = {s["name"]: s["mean"] for s in results["resources"]["stats"] if s["phase"] == "load"}
    cores = (results["meta"].get("client") or {}).get("cores") or os.cpu_count() or 1
    own = sum(
        v for k, v in stats.items() if k == "client.cpu" or (k.startswith("service.") and k.endswith(".cpu"))
    )
    phase = next(p for p in results["phases"] if p["name"] == "load")
    server_cores = tree.seconds() / max(phase["ended"] - phase["started"], 1e-3) if tree else 0.0
    own += server_cores
    others = max(0.0, stats.get("host.cpu", 0.0) * cores - own) if "host.cpu" in stats else None
    return {
        "workers": results["meta"]["workers"],
        "ok_per_s": ok / duration,
        "server_cores": server_cores,
        "others_cores": others,
        "outcome": results["outcome"]["status"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    counts: list[int | None] = [None, *range(1, (os.cpu_count() or 1) + 1)]
    folder = Path(tempfile.mkdtemp(prefix="llmscen-workers-"))
    (folder / "sim.yaml").write_text(SIM)
    rows: list[dict[str, Any]] = []
    with static_target(cpu=None) as target:
        cases = {
            "nginx": [str(HERE / "scenarios" / "sse.yaml"), "--target", f"api={target.url('sse')}"],
            "sim": [str(folder / "sim.yaml")],
        }
        for rep in range(1, args.reps + 1):
            for case, argv in cases.items():
                for count in counts:
                    extra = [] if count is None else ["--workers", str(count)]
                    out = folder / f"{case}-{count}-{rep}"
                    r = one([*argv, *extra], out, args.duration, target.pid if case == "nginx" else None)
                    r.update(case=case, asked=count, rep=rep)
                    rows.append(r)
                    print(json.dumps(r), flush=True)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end\n")
    print("| case | --workers | responses/s, median (min–max) | other load | outcomes |")
    print("|---|---|---|---|---|")
    for case in cases:
        for count in counts:
            got = [r for r in rows if r["case"] == case and r["asked"] == count]
            rates = [r["ok_per_s"] for r in got]
            chose = "" if count is not None else f" (default: {got[0]['workers']})"
            others = [r["others_cores"] for r in got if r["others_cores"] is not None]
            other = f"{statistics.median(others):.2f} cores" if others else "?"
            print(
                f"| {case} | {count or '—'}{chose} | {statistics.median(rates):,.0f} "
                f"({min(rates):,.0f}–{max(rates):,.0f}) | {other} | "
                f"{', '.join(sorted({r['outcome'] for r in got}))} |"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
