"""llmscen's triton runner vs NVIDIA perf_analyzer: same triton-sim server, one run.

    .venv/bin/python benchmarks/triton/compare.py --reps 3 --duration 10

Starts ONE triton-sim (image_size 64, step_delay 0; llm_stream with small TTFT/ITL), then
for every repetition and mode, in turn (the client order rotates each repetition), runs:

  perf_analyzer   -m flux|llm_stream -i grpc --concurrency-range C [--streaming]
                  --input-data pa_{flux,llm}_input.json, 3 windows of (warmup+duration+1)/3
  llmscen-wN      llmscen run benchmarks/triton/{flux,stream}-closed.yaml (closed model,
                  `users: C`, no think time, a warm-up phase, then a `load` phase of
                  duration+1 s)
                  --target …=<the same server> --workers N --quiet

Figures per run:

  tool infer/s     what the tool reports: perf_analyzer's `Inferences/Second`;
                   llmscen: completed requests of phase `load` / its wall time (results.json)
  p50/p99          latency as each tool reports it (perf_analyzer: whole request, also for
                   the decoupled model in 2.51; llmscen: whole request, plus TTFT when streaming)
  server infer/s   Triton's own nv_inference_request_success counter for the model, over a
                   driver-chosen window: from `--warmup` s after the first completion, for
                   `--duration` s (cut short if the client stops earlier)
  client cores     CPU seconds of the client's process tree (/proc, sampled 4x/s) over that
                   window / window; `per core` = server infer/s / client cores
  server cores     the same for tritonserver and its Python backend stubs
  client CPU s     the whole client process (wait4 rusage: start-up and teardown included)

By default the scheduler places server and client (they share the cores, as a user's run
would); `--pin` puts the server (and this driver) on core 0 and every client on core 1.
Traffic goes to 127.0.0.1 only. The server is stopped on exit, on Ctrl-C and on SIGTERM;
each client run is killed after a deadline.
Writes `runs.jsonl`, `summary.json` and `summary.md` to --out (default: a temp dir).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PYTHON = Path(sys.executable)
LLMSCEN = PYTHON.parent / "llmscen"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.25
MARGIN_S = 1.0   # clients run this much longer than warm-up + window

MODES = {
    # mode: (model, scenario, scenario target, perf_analyzer input, default concurrency)
    "flux": ("flux", HERE / "flux-closed.yaml", "flux", HERE / "pa_flux_input.json", 8),
    "stream": ("llm_stream", HERE / "stream-closed.yaml", "llm", HERE / "pa_llm_input.json", 32),
}


@dataclass
class Run:
    mode: str
    client: str
    rep: int
    concurrency: int
    ok: bool = False
    error: str = ""
    loadavg: list[float] = field(default_factory=list)   # 1/5/15 min, at start
    wall_s: float = 0.0            # the client process, start to exit
    cpu_s: float = 0.0             # the client process tree, wait4 rusage
    tool_rps: float = 0.0          # requests/s as the tool reports it
    tool_requests: int = 0
    tool_seconds: float = 0.0
    tool_responses_ps: float | None = None   # streamed responses/s, when reported
    p50_ms: float | None = None
    p99_ms: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    errors: int = 0
    window_s: float = 0.0
    server_rps: float = 0.0        # Triton's own count over the window
    client_cores: float = 0.0      # client CPU over the window / window
    server_cores: float = 0.0      # tritonserver + its Python stubs, over the window
    per_core: float = 0.0          # server_rps / client_cores


# -- processes -----------------------------------------------------------------------


def tree_cpu(*pgids: int) -> list[float]:
    """CPU seconds of each process group in `pgids`: user+system of its live processes, plus
    the children they reaped (cutime+cstime), so a worker that exits keeps counting."""
    total = dict.fromkeys(pgids, 0)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        pgid = int(fields[2])
        if pgid in total:
            total[pgid] += sum(int(x) for x in fields[11:15])   # utime stime cutime cstime
    return [total[g] / CLK_TCK for g in pgids]


def server_count(metrics_url: str, model: str) -> float | None:
    """nv_inference_request_success of `model` (all versions), None if unreadable."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    total = 0.0
    pattern = re.compile(r'^nv_inference_request_success\{[^}]*model="' + re.escape(model) +
                         r'"[^}]*\}\s+(\S+)', re.M)
    for m in pattern.finditer(text):
        total += float(m.group(1))
    return total


def interp(samples: Sequence[tuple[float, ...]], t: float, idx: int) -> float:
    """Linear interpolation of column `idx` of (time, ...) samples at time t."""
    if t <= samples[0][0]:
        return samples[0][idx]
    for (t0, *a), (t1, *b) in itertools.pairwise(samples):
        if t0 <= t <= t1:
            f = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
            return a[idx - 1] + f * (b[idx - 1] - a[idx - 1])
    return samples[-1][idx]


def run_client(cmd: list[str], *, cpus: set[int] | None, metrics_url: str, model: str,
               server_pgid: int, warmup: float, duration: float, deadline: float, log: Path,
               run: Run) -> None:
    """Start `cmd`, sample server count and client CPU, wait; fill the window figures."""
    def preexec() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    base = server_count(metrics_url, model) or 0.0
    run.loadavg = [round(x, 2) for x in os.getloadavg()]
    with open(log, "wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=preexec)
        samples: list[tuple[float, float, float, float]] = []   # t, count, client, server cpu
        status, usage, exited = 0, None, False
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    exited = True
                    break
                now = time.monotonic()
                if now - started > deadline:
                    os.killpg(proc.pid, signal.SIGKILL)
                    _, status, usage = os.wait4(proc.pid, 0)
                    exited = True
                    run.error = f"killed after {deadline:.0f} s"
                    break
                count = server_count(metrics_url, model)
                cpu, server_cpu = tree_cpu(proc.pid, server_pgid)
                if count is not None:
                    samples.append((time.monotonic() - started, count - base, cpu, server_cpu))
                time.sleep(SAMPLE_S)
        finally:
            if not exited:   # interrupted: take the client down with us
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        run.wall_s = time.monotonic() - started
        run.cpu_s = usage.ru_utime + usage.ru_stime if usage else 0.0
    if proc.returncode != 0 and not run.error:
        run.error = f"exit code {proc.returncode}"
    # the window: from `warmup` s after the first completion the server saw, for `duration` s,
    # ending early if the traffic stopped earlier (last increase of the count)
    moving = [s for s in samples if s[1] > 0]
    if len(moving) < 2:
        run.error = run.error or "the server saw no traffic"
        return
    first = moving[0][0]
    last = next(s[0] for s in samples if s[1] >= samples[-1][1])   # traffic ended here
    start, end = first + warmup, min(first + warmup + duration, last - SAMPLE_S)
    if end - start < 1.0:
        run.error = run.error or f"window too short ({end - start:.2f} s)"
        return
    run.window_s = end - start
    run.server_rps = (interp(samples, end, 1) - interp(samples, start, 1)) / run.window_s
    run.client_cores = (interp(samples, end, 2) - interp(samples, start, 2)) / run.window_s
    run.server_cores = (interp(samples, end, 3) - interp(samples, start, 3)) / run.window_s
    run.per_core = run.server_rps / run.client_cores if run.client_cores > 0 else 0.0


# -- the two tools ---------------------------------------------------------------------


def perf_analyzer_cmd(pa: str, mode: str, url: str, conc: int, warmup: float,
                      duration: float, csv_path: Path) -> list[str]:
    model, _, _, data, _ = MODES[mode]
    interval_ms = int((warmup + duration + MARGIN_S) * 1000 / 3)
    cmd = [pa, "-m", model, "-u", url, "-i", "grpc", "--concurrency-range", str(conc),
           "--input-data", str(data), "--measurement-interval", str(interval_ms),
           # exactly 3 windows: accept the first 3 as stable, whatever they measured
           "--stability-percentage", "999", "--max-trials", "3", "-f", str(csv_path)]
    if mode == "stream":
        cmd.append("--streaming")
    return cmd


def read_perf_analyzer(csv_path: Path, log: Path, run: Run) -> None:
    with open(csv_path, newline="") as f:
        row = next(csv.DictReader(f))
    run.tool_rps = float(row["Inferences/Second"])
    if "Response Throughput" in row:
        run.tool_responses_ps = float(row["Response Throughput"])
    run.p50_ms = float(row["p50 latency"]) / 1000
    run.p99_ms = float(row["p99 latency"]) / 1000
    text = log.read_text(errors="replace")
    m = re.search(r"Request count: (\d+)", text)
    if m:
        run.tool_requests = int(m.group(1))
        run.tool_seconds = run.tool_requests / run.tool_rps if run.tool_rps else 0.0


def llmscen_cmd(mode: str, url: str, conc: int, workers: int, warmup: float,
                duration: float, out: Path) -> list[str]:
    _, scenario, target, _, _ = MODES[mode]
    return [str(LLMSCEN), "run", str(scenario), "--target", f"{target}={url}",
            "--set", f"phases.0.users={conc}", "--set", f"phases.1.users={conc}",
            "--set", f"phases.0.duration={warmup:g}s",
            "--set", f"phases.1.duration={duration + MARGIN_S:g}s",
            "--workers", str(workers), "--quiet", "--out", str(out)]


def read_llmscen(results_json: Path, run: Run) -> None:
    from llmscen.metrics.query import aggregate
    from llmscen.metrics.results import RunResults

    results = RunResults.load(results_json)
    agg = aggregate(results, phase="load")
    c = agg.counters
    run.tool_requests = c.requests
    run.tool_seconds = agg.wall_seconds
    run.tool_rps = c.requests / agg.wall_seconds if agg.wall_seconds else 0.0
    run.errors = c.error_total + c.check_failures
    run.tool_responses_ps = None

    def ms(metric: str, stat: str) -> float | None:
        v = agg.value(metric, stat)
        return None if v is None else v * 1000

    run.p50_ms, run.p99_ms = ms("latency", "p50"), ms("latency", "p99")
    run.ttft_p50_ms, run.ttft_p99_ms = ms("ttft", "p50"), ms("ttft", "p99")
    if c.output_tokens and agg.wall_seconds:   # streamed: one token per response
        run.tool_responses_ps = c.output_tokens / agg.wall_seconds


# -- summary -----------------------------------------------------------------------------


def median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def summarize(runs: list[Run], clients: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in dict.fromkeys(r.mode for r in runs):
        rows = {}
        for client in clients:
            rs = [r for r in runs if r.mode == mode and r.client == client and r.ok]
            if not rs:
                continue
            rows[client] = {
                "reps": len(rs),
                "concurrency": rs[0].concurrency,
                "tool_rps": median([r.tool_rps for r in rs]),
                "tool_rps_all": [round(r.tool_rps, 1) for r in rs],
                "responses_ps": median([r.tool_responses_ps for r in rs]),
                "server_rps": median([r.server_rps for r in rs]),
                "client_cores": median([r.client_cores for r in rs]),
                "server_cores": median([r.server_cores for r in rs]),
                "per_core": median([r.per_core for r in rs]),
                "cpu_s": median([r.cpu_s for r in rs]),
                "wall_s": median([r.wall_s for r in rs]),
                "p50_ms": median([r.p50_ms for r in rs]),
                "p99_ms": median([r.p99_ms for r in rs]),
                "ttft_p50_ms": median([r.ttft_p50_ms for r in rs]),
                "ttft_p99_ms": median([r.ttft_p99_ms for r in rs]),
                "errors": sum(r.errors for r in rs),
                "loadavg1": median([r.loadavg[0] for r in rs]),
            }
        # ratios per repetition (runs of one rep ran back to back), then the median
        base = {r.rep: r for r in runs if r.mode == mode and r.client == "perf_analyzer" and r.ok}
        for client, row in rows.items():
            if client == "perf_analyzer":
                continue
            pairs = [(r, base[r.rep]) for r in runs
                     if r.mode == mode and r.client == client and r.ok and r.rep in base]
            row["ratio_tool"] = median([r.tool_rps / b.tool_rps for r, b in pairs if b.tool_rps])
            row["ratio_server"] = median([r.server_rps / b.server_rps for r, b in pairs
                                          if b.server_rps])
            row["ratio_per_core"] = median([r.per_core / b.per_core for r, b in pairs
                                            if b.per_core])
            row["ratio_tool_all"] = [round(r.tool_rps / b.tool_rps, 3) for r, b in pairs
                                     if b.tool_rps]
        out[mode] = rows
    return out


def fmt(v: float | None, spec: str = ".0f") -> str:
    return "–" if v is None else format(v, spec)


def markdown(summary: dict[str, Any]) -> str:
    lines = []
    for mode, rows in summary.items():
        conc = next(iter(rows.values()))["concurrency"] if rows else "?"
        lines += [f"### {mode} (concurrency {conc})", "",
                  "| client | infer/s (tool) | ratio | server infer/s | ratio | client cores "
                  "| infer/s per client core | ratio | server cores | client CPU s | p50 ms "
                  "| p99 ms "
                  "| TTFT p50/p99 ms | responses/s | reps (infer/s each) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for client, r in rows.items():
            ttft = ("–" if r["ttft_p50_ms"] is None
                    else f"{r['ttft_p50_ms']:.1f} / {r['ttft_p99_ms']:.1f}")
            lines.append(
                f"| {client} | {fmt(r['tool_rps'])} | {fmt(r.get('ratio_tool'), '.2f')} "
                f"| {fmt(r['server_rps'])} | {fmt(r.get('ratio_server'), '.2f')} "
                f"| {fmt(r['client_cores'], '.2f')} | {fmt(r['per_core'])} "
                f"| {fmt(r.get('ratio_per_core'), '.2f')} | {fmt(r['server_cores'], '.2f')} "
                f"| {fmt(r['cpu_s'], '.1f')} "
                f"| {fmt(r['p50_ms'], '.1f')} | {fmt(r['p99_ms'], '.1f')} | {ttft} "
                f"| {fmt(r['responses_ps'])} | {r['reps']} ({', '.join(map(str, r['tool_rps_all']))}) |")
        lines.append("")
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="flux,stream")
    ap.add_argument("--clients", default="perf_analyzer,llmscen-w1,llmscen-w2",
                    help="perf_analyzer, llmscen-wN (N worker processes)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds before the window")
    ap.add_argument("--flux-concurrency", type=int, default=MODES["flux"][4])
    ap.add_argument("--stream-concurrency", type=int, default=MODES["stream"][4])
    ap.add_argument("--ttft", default="5ms", help="llm_stream time to first token")
    ap.add_argument("--itl", default="2ms", help="llm_stream inter-token latency")
    ap.add_argument("--tokens", type=int, default=16, help="llm_stream tokens per reply "
                                                           "(pa_llm_input.json asks for 16)")
    ap.add_argument("--pin", action="store_true",
                    help="pin the server (and this driver) to core 0 and every client to core 1")
    ap.add_argument("--perf-analyzer", help="path of perf_analyzer (default: run "
                                            "install-perf-analyzer.sh, which caches it)")
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between runs")
    ap.add_argument("--out", help="output folder (default: a new temp dir)")
    return ap.parse_args(argv)


def install_perf_analyzer() -> str:
    done = subprocess.run(["bash", str(HERE / "install-perf-analyzer.sh")], check=True,
                          capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))
    from llmscen.services.triton_sim import start_triton_sim

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    for m in modes:
        if m not in MODES:
            raise SystemExit(f"unknown mode {m!r}; known: {', '.join(MODES)}")
    for c in clients:
        if c != "perf_analyzer" and not re.fullmatch(r"llmscen-w\d+", c):
            raise SystemExit(f"unknown client {c!r}")
    pa = args.perf_analyzer or (install_perf_analyzer() if "perf_analyzer" in clients else "")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="llmscen-bench-triton-"))
    out.mkdir(parents=True, exist_ok=True)
    pin = args.pin and len(os.sched_getaffinity(0)) >= 2
    server_cpus, client_cpus = ({0}, {1}) if pin else (None, None)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    conc = {"flux": args.flux_concurrency, "stream": args.stream_concurrency}
    options = {"image_size": 64, "step_delay": 0, "ttft": args.ttft, "itl": args.itl,
               "output_tokens": args.tokens}
    deadline = args.warmup + args.duration + 60
    meta = {"started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "argv": sys.argv, "options": options, "pinned": pin, "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(), "perf_analyzer": pa}
    if server_cpus:
        os.sched_setaffinity(0, server_cpus)   # the server inherits it; so does this driver
    runs: list[Run] = []
    print(f"output: {out}", flush=True)
    try:
        with start_triton_sim(options) as sim:
            print(f"triton-sim grpc={sim.grpc_url} ready in {sim.startup_seconds:.1f} s "
                  f"(pinned: {pin})", flush=True)
            with open(out / "runs.jsonl", "w") as jl:
                for rep in range(args.reps):
                    for mode in modes:
                        model = MODES[mode][0]
                        order = clients[rep % len(clients):] + clients[:rep % len(clients)]
                        for client in order:
                            run = Run(mode, client, rep, conc[mode])
                            tag = f"{mode}-{client}-r{rep}"
                            log = out / f"{tag}.log"
                            if client == "perf_analyzer":
                                csv_path = out / f"{tag}.csv"
                                cmd = perf_analyzer_cmd(pa, mode, sim.grpc_url, conc[mode],
                                                        args.warmup, args.duration, csv_path)
                            else:
                                workers = int(client.split("-w")[1])
                                run_dir = out / tag
                                cmd = llmscen_cmd(mode, sim.grpc_url, conc[mode], workers,
                                                  args.warmup, args.duration, run_dir)
                            run_client(cmd, cpus=client_cpus, metrics_url=sim.metrics_url,
                                       model=model, server_pgid=sim.pid, warmup=args.warmup,
                                       duration=args.duration,
                                       deadline=deadline, log=log, run=run)
                            try:
                                if client == "perf_analyzer":
                                    read_perf_analyzer(csv_path, log, run)
                                else:
                                    read_llmscen(run_dir / "results.json", run)
                                    for extra in ("report.html", "junit.xml"):
                                        with contextlib.suppress(OSError):
                                            (run_dir / extra).unlink()
                                run.ok = not run.error
                            except Exception as exc:  # report and go on
                                run.error = run.error or f"cannot read results: {exc}"
                            runs.append(run)
                            jl.write(json.dumps(asdict(run)) + "\n")
                            jl.flush()
                            print(f"{tag:28s} {'ok ' if run.ok else 'ERR'} "
                                  f"tool {run.tool_rps:7.1f}/s  server {run.server_rps:7.1f}/s  "
                                  f"cores {run.client_cores:4.2f} (server "
                                  f"{run.server_cores:4.2f})  per-core {run.per_core:7.0f}  "
                                  f"cpu {run.cpu_s:5.1f}s  p50 {fmt(run.p50_ms, '.1f')} ms  "
                                  f"load {run.loadavg[0] if run.loadavg else '?'}  {run.error}",
                                  flush=True)
                            time.sleep(args.pause)
    except KeyboardInterrupt:
        print("interrupted; server stopped", file=sys.stderr)
    meta["ended_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    meta["loadavg_end"] = os.getloadavg()
    summary = summarize(runs, clients)
    (out / "summary.json").write_text(json.dumps({"meta": meta, "modes": summary}, indent=1))
    md = markdown(summary)
    (out / "summary.md").write_text(md)
    print()
    print(md)
    print(f"load average start {meta['loadavg_start']}, end {meta['loadavg_end']}; "
          f"files in {out}")
    return 0 if runs and all(r.ok for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
