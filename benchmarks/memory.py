"""Does the client's memory stay flat over a long streamed run? (issue 15, goal 5)

    .venv/bin/python benchmarks/memory.py [--rate 1000] [--minutes 10] [--cpu 1]

One `llmscen run benchmarks/scenarios/sse-open.yaml --workers 1` at `--rate` streamed
responses per second for `--minutes` against the static nginx SSE target
(static_server.py, core 0), the client pinned to `--cpu`. The client's RSS is read
twice over: by the run itself (`client.memory`, sampled every second into results.json)
and from outside, /proc/PID/status VmRSS every 5 s. The goal: RSS at the end ≤ RSS at
1 minute + 50 MB. Prints a Markdown table; `--json FILE` keeps every sample.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from static_server import static_target  # noqa: E402

GOAL_MB = 50


def vm_rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def at(points: list[tuple[float, float]], second: float) -> float:
    """The sample nearest to `second`."""
    return min(points, key=lambda p: abs(p[0] - second))[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--cpu", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    duration = int(args.minutes * 60)
    llmscen = str(Path(sys.executable).with_name("llmscen"))
    out = Path(tempfile.mkdtemp(prefix="llmscen-memory-"))
    outside: list[tuple[float, float]] = []
    with static_target(cpu=0) as target:
        argv = ["taskset", "-c", str(args.cpu), llmscen, "run",
                str(HERE / "scenarios" / "sse-open.yaml"), "--workers", "1", "--quiet",
                "--target", f"api={target.url('sse')}", "--out", str(out),
                "--set", f"phases.0.duration={duration}s",
                "--set", f"phases.0.arrival_rate={args.rate}"]
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while proc.poll() is None:
            rss = vm_rss(proc.pid)
            if rss is not None:
                outside.append((time.monotonic() - started, rss))
            time.sleep(5)
        stderr = proc.stderr.read().decode() if proc.stderr else ""
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    series = next(r["points"] for r in results["series"]["resources"]
                  if r["name"] == "client.memory" and r["phase"] == "load")
    inside = [(float(s), float(v)) for s, v in series]
    ok = sum(s["counters"]["ok"] for s in results["scopes"])
    lag = next((s["histograms"].get("schedule_lag") for s in results["scopes"]), None)
    first, last = inside[0][0], inside[-1][0]
    rows = {"run (client.memory)": inside, "outside (VmRSS)": outside}
    print(f"{args.rate}/s streamed for {duration} s, exit {proc.returncode}, {ok} ok "
          f"({ok / max(duration, 1):.0f}/s), load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| read by | RSS at 1 min | RSS at the end | growth | goal (≤ 50 MB) |")
    print("|---|---|---|---|---|")
    for name, points in rows.items():
        one = at(points, first + 60)
        end = at(points, last if name.startswith("run") else points[-1][0])
        growth = (end - one) / 2**20
        print(f"| {name} | {one / 2**20:.1f} MB | {end / 2**20:.1f} MB | {growth:+.1f} MB | "
              f"{'met' if growth <= GOAL_MB else 'NOT met'} |")
    if proc.returncode not in (0, 1):
        print(f"\nllmscen exited {proc.returncode}:\n{stderr[-2000:]}")
    if args.json:
        args.json.write_text(json.dumps({"inside": inside, "outside": outside, "ok": ok,
                                         "lag": lag, "exit": proc.returncode}))


if __name__ == "__main__":
    main()
