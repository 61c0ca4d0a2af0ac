"""Can the client keep an open-loop schedule near its closed-loop capacity? (issue 15, goal 4)

    .venv/bin/python benchmarks/open_loop.py [--reps 3] [--duration 10] [--json FILE]

Each rep, against the static nginx SSE target (static_server.py, core 0) with `llmscen
run --workers 1` pinned to core 1:

  closed   benchmarks/scenarios/sse.yaml, 64 users: the client's capacity C (ok/s)
  open     benchmarks/scenarios/sse-open.yaml at 50, 65, 75, 85 and 130 % of that C

and for each open run: the rate delivered (ok answers over the phase's real time: a client
behind its schedule sends past the planned end), the schedule lag (intended time to sent) p50,
p99 and max from the run's own histogram, in flight at most, the client's CPU, the
outcome, and, when the run called itself saturated, the largest lag its note named next
to the largest the histogram recorded (they should agree). Goals: 85 % of C sustained
(delivered within 2 % of asked, lag p99 < 50 ms, not saturated) and lag p99 < 2 ms at
50 %. The runs of a rep are back to back, so C is this minute's capacity.

Then, when benchmarks/install-peers.sh has installed it, k6 the same way on the same core
(`GOMAXPROCS=1`, clients/k6_open.js): its own closed C (64 VUs) and constant-arrival-rate
runs at the same shares of it. k6 has no schedule lag; it is held when it delivered within
2 % of the rate, dropped at most 2 % of the iterations and used less than 95 % of its core.
`--no-k6` leaves it out. Both tools pay the same block and wake-up per arrival
(wake_cost.py), so k6's ratio says how much of the gap is the machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import TreeCPU, read_peers_env
from static_server import static_target

HERE = Path(__file__).resolve().parent

SHARES = (0.5, 0.65, 0.75, 0.85, 1.3)


def run(scenario: str, url: str, server: int, out: Path, duration: int, sets: list[str]) -> dict[str, Any]:
    llmscen = str(Path(sys.executable).with_name("llmscen"))
    argv = [
        "taskset",
        "-c",
        "1",
        llmscen,
        "run",
        str(HERE / "scenarios" / scenario),
        "--workers",
        "1",
        "--quiet",
        "--target",
        f"api={url}",
        "--out",
        str(out),
        "--set",
        f"phases.0.duration={duration}s",
    ]
    for s in sets:
        argv += ["--set", s]
    nginx = TreeCPU(server)  # not the run's service: its CPU is not "other load"
    nginx.sample(start=True)
    done = subprocess.run(argv, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    nginx.sample()
    path = out / "results.json"
    if not path.exists():
        raise SystemExit(f"llmscen exited {done.returncode}:\n{done.stderr.decode()[-2000:]}")
    raw = json.loads(path.read_text())
    agg = aggregate(RunResults.load(path), phase="load")
    stats = {s["name"]: s for s in raw["resources"]["stats"] if s["phase"] == "load"}
    cores = (raw["meta"].get("client") or {}).get("cores") or os.cpu_count() or 1
    own = sum(
        s["mean"]
        for k, s in stats.items()
        if k == "client.cpu" or (k.startswith("service.") and k.endswith(".cpu"))
    )
    host = stats.get("host.cpu")
    # the largest lag the saturation note names (the whole delay since it gives both)
    said = [
        r["detail"].get("schedule_lag_max", r["detail"].get("client_lag_max"))
        for r in raw["outcome"]["reasons"]
        if r["kind"] == "client_saturated"
    ]
    phase = next(p for p in raw["phases"] if p["name"] == "load")
    # a client behind its schedule sends past the planned end: rates over the real time
    took = max(duration, phase["ended"] - phase["started"])
    flight = [p[1] for s in raw["series"]["in_flight"] for p in s["points"]]

    def ms(stat: str) -> float | None:
        v = agg.value("schedule_lag", stat)
        return None if v is None else v * 1e3

    client = stats.get("client.cpu", {})
    return {
        "ok_per_s": agg.counters.ok / took,
        "sent_per_s": agg.counters.requests / took,
        "seconds": took,
        "not_sent": agg.counters.not_sent,
        "errors": agg.counters.errors,
        "lag_p50_ms": ms("p50"),
        "lag_p99_ms": ms("p99"),
        "lag_max_ms": ms("max"),
        "in_flight_max": max(flight, default=0),
        "client_cpu_mean": client.get("mean"),
        "client_cpu_max": client.get("max"),
        "server_cores": nginx.seconds() / took,
        "others_cores": None
        if host is None
        else max(0.0, host["mean"] * cores - own - nginx.seconds() / took),
        "outcome": raw["outcome"]["status"],
        "note_lag_max_ms": said[0] * 1e3 if said and said[0] is not None else None,
    }


def run_k6(k6: str, url: str, out: Path, duration: int, rate: int | None) -> dict[str, Any]:
    """k6 pinned to core 1: closed (64 VUs) when `rate` is None, else constant-arrival-rate."""
    summary = out.with_suffix(".json")
    load = ["-e", f"RATE={rate}"] if rate else ["-e", "VUS=64"]
    argv = ["taskset", "-c", "1", k6, "run", "--quiet", "-e", f"URL={url.rstrip('/')}",
            "-e", f"DURATION={duration}", "-e", f"SUMMARY={summary}", *load,
            str(HERE / "clients" / "k6_open.js")]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, check=False, capture_output=True, text=True,
                          env={**os.environ, "GOMAXPROCS": "1"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not summary.exists():
        raise SystemExit(f"k6 exited {done.returncode}:\n{done.stderr[-2000:]}")
    metrics = json.loads(summary.read_text())["metrics"]
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    dropped = metrics.get("dropped_iterations", {}).get("values", {}).get("count", 0)
    errors = metrics.get("chat_errors", {}).get("values", {}).get("count", 0)
    iteration = metrics["iteration_duration"]["values"]
    return {
        "ok_per_s": (metrics["http_reqs"]["values"]["count"] - errors) / duration,
        "dropped": dropped,
        "iteration_p50_ms": iteration["p(50)"],
        "iteration_p99_ms": iteration["p(99)"],
        "vus_max": metrics.get("vus_max", {}).get("values", {}).get("max"),
        "client_cpu_mean": cpu / duration,   # with k6's start-up: a little over, not under
    }


def show(x: float | None, fmt: str = "{:.2f}") -> str:
    return "—" if x is None else fmt.format(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-k6", action="store_true", help="llmscen alone")
    args = parser.parse_args()
    k6 = None if args.no_k6 else read_peers_env().get("K6") or None
    folder = Path(tempfile.mkdtemp(prefix="llmscen-open-"))
    rows: list[dict[str, Any]] = []
    k6_all: list[dict[str, Any]] = []
    print(f"load average {os.getloadavg()[0]:.1f} at the start\n")
    print(
        "| rep | run | asked/s | delivered/s | lag p50 / p99 / max, ms | in flight ≤ | "
        "client CPU mean (max) | nginx | other load | outcome | note's max lag |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with static_target(cpu=0) as target:
        url = target.url("sse")
        for rep in range(1, args.reps + 1):
            closed = run("sse.yaml", url, target.pid, folder / f"closed-{rep}", args.duration, [])
            closed.update(rep=rep, run="closed", asked=None)
            rows.append(closed)
            capacity = closed["ok_per_s"]
            for share in SHARES:
                rate = round(capacity * share)
                r = run(
                    "sse-open.yaml",
                    url,
                    target.pid,
                    folder / f"open-{share}-{rep}",
                    args.duration,
                    [f"phases.0.arrival_rate={rate}"],
                )
                r.update(rep=rep, run=f"open {share:.0%}", asked=rate, share=share)
                rows.append(r)
            if k6:
                closed = run_k6(k6, url, folder / f"k6-closed-{rep}", args.duration, None)
                closed.update(rep=rep, tool="k6", run="closed", asked=None)
                k6_rows = [closed]
                for share in SHARES:
                    rate = round(closed["ok_per_s"] * share)
                    r = run_k6(k6, url, folder / f"k6-open-{share}-{rep}", args.duration, rate)
                    r.update(rep=rep, tool="k6", run=f"open {share:.0%}", asked=rate,
                             share=share)
                    k6_rows.append(r)
                k6_all.extend(k6_rows)
            for r in rows[-1 - len(SHARES) :]:
                print(
                    f"| {rep} | {r['run']} | {show(r['asked'], '{:,}')} | "
                    f"{r['ok_per_s']:,.0f} | {show(r['lag_p50_ms'])} / "
                    f"{show(r['lag_p99_ms'])} / {show(r['lag_max_ms'], '{:.1f}')} | "
                    f"{r['in_flight_max']:,} | {show(r['client_cpu_mean'], '{:.0%}')} "
                    f"({show(r['client_cpu_max'], '{:.0%}')}) | "
                    f"{r['server_cores']:.2f} | {show(r['others_cores'])} cores | {r['outcome']} | "
                    f"{show(r['note_lag_max_ms'], '{:.1f} ms')} |",
                    flush=True,
                )
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end\n")
    for share in SHARES:
        got = [r for r in rows if r.get("share") == share]
        held = [
            r
            for r in got
            if r["ok_per_s"] >= 0.98 * r["asked"]
            and (r["lag_p99_ms"] or 0) < 50
            and r["outcome"] != "invalid_measurement"
        ]
        p99 = statistics.median(r["lag_p99_ms"] or 0.0 for r in got)
        print(
            f"- {share:.0%} of capacity: held in {len(held)} of {len(got)} reps, median lag p99 {p99:.2f} ms"
        )
    if k6_all:
        print("\nk6 on the same core (GOMAXPROCS=1), its own C:\n")
        print("| rep | run | asked/s | delivered/s | dropped | iteration p50 / p99, ms | "
              "VUs ≤ | client CPU |")
        print("|---|---|---|---|---|---|---|---|")
        for r in k6_all:
            print(f"| {r['rep']} | {r['run']} | {show(r['asked'], '{:,}')} | "
                  f"{r['ok_per_s']:,.0f} | {r['dropped']:,} | {r['iteration_p50_ms']:.2f} / "
                  f"{r['iteration_p99_ms']:.2f} | {r['vus_max']} | "
                  f"{r['client_cpu_mean']:.0%} |")
        print()
        for share in SHARES:
            got = [r for r in k6_all if r.get("share") == share]
            held = [r for r in got if r["ok_per_s"] >= 0.98 * r["asked"]
                    and r["dropped"] <= 0.02 * r["asked"] * args.duration
                    and r["client_cpu_mean"] < 0.95]
            print(f"- k6, {share:.0%} of its capacity: held in {len(held)} of {len(got)} reps")
    if args.json:
        rows = [{**r, "tool": r.get("tool", "llmscen")} for r in rows] + k6_all
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
