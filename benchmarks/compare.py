"""Compare load generators side by side against a static nginx target or a pacing server.

    python benchmarks/compare.py --modes json,sse,paced-sim --concurrency 64 --duration 10 \
        --reps 3 --client llmscen='llmscen run benchmarks/scenarios/{mode}.yaml --target api={url}'

Modes: json and sse against nginx (static bodies; a stream arrives in one burst); paced-sim,
paced-xpyd and paced-llama stream against a server that spaces its tokens (openai-sim and
xpyd-sim 1 ms apart, llama-server at its model's pace; see paced_server.py), at
--paced-concurrency streams; for the clients a paced mode is mode sse.

The server runs on core 0 (the driver too), each client on core 1 (`taskset -c 1`). For every
mode, repetition and client, in turn (A B C A B C ...), the driver starts the client, waits
until nginx sees its requests, lets it warm up, then measures a window of `--duration` s:

  responses/s            server-side: nginx stub_status `requests` delta / window
  client CPU             utime+stime of every process of the client's tree, from /proc,
                         sampled 5x/s over the window (cores = CPU seconds / window)
  per client core        server-side responses / client CPU seconds

Raw req/s swings a lot on shared machines; responses per client CPU second holds steady,
so the table leads with it and gives ratios to the baseline client (aiohttp_minimal).

Clients are name=command templates; placeholders: {url} (server root, append
/v1/chat/completions), {concurrency}, {duration} (whole seconds the client should run:
warm-up + window + margin), {mode} (json|sse), {stream} (true|false), {repo}, {python}
(the bench aiohttp venv's python). `NAME@sse=...` limits a client to one mode. Commands
run from the repo root, without a shell; start with `env VAR=value` to set variables.
Built-in clients come from benchmarks/install-peers.sh (its bench/peers.env); missing ones
are listed as skipped with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from paced_server import KINDS as PACED_KINDS  # noqa: E402
from paced_server import PacedTarget, RealServersMissing, paced_target  # noqa: E402
from static_server import StaticTarget, static_target  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
BASELINE = "aiohttp_minimal"
LLMSCEN = ("llmscen run benchmarks/scenarios/{mode}.yaml --target api={url} "
           "--set phases.0.duration={duration}s --set phases.0.users={concurrency} "
           "--workers 1 --out {tmp}/out -q")
SAMPLE_INTERVAL_S = 0.2


@dataclass
class Client:
    name: str
    template: str
    modes: frozenset[str] | None = None  # None: every mode
    skip_reason: str = ""
    notes: dict[str, str] = field(default_factory=dict)  # mode -> what it does


@dataclass
class RunResult:
    client: str
    mode: str
    rep: int
    ok: bool
    window_s: float = 0.0
    server_responses: int = 0
    client_cpu_s: float = 0.0
    responses_per_s: float = 0.0
    client_cores: float = 0.0
    per_client_core: float = 0.0
    exit_code: int | None = None
    client_summary: dict | None = None
    error: str = ""
    pids_seen: int = 0
    server_cores: float = 0.0
    other_cores: float = 0.0
    other_before: float = 0.0  # other load in the second before the client started
    killed: bool = False  # still running past its duration + grace: stopped by the driver


# --- clients ------------------------------------------------------------------------------


def cache_dir() -> Path:
    return Path(os.environ.get("LLMSCEN_CACHE") or Path.home() / ".cache" / "llmscen")


def read_peers_env() -> dict[str, str]:
    path = cache_dir() / "bench" / "peers.env"
    env: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if "=" in line:
                key, value = line.split("=", 1)
                env[key.strip()] = value.strip().strip('"')
    return env


def builtin_clients(peers: dict[str, str]) -> list[Client]:
    missing = "not installed: run benchmarks/install-peers.sh"
    py = peers.get("AIOHTTP_PYTHON", "")
    common = "--url {url} --concurrency {concurrency} --duration {duration} --mode {mode}"
    clients = [
        Client(BASELINE, f"{{python}} benchmarks/clients/aiohttp_minimal.py {common}",
               skip_reason="" if py else missing,
               notes={"json": "read + json.loads",
                      "sse": "lines + json.loads + timestamp per event"}),
        Client("aiohttp_iter_any", f"{{python}} benchmarks/clients/aiohttp_iter_any.py {common}",
               modes=frozenset({"sse"}), skip_reason="" if py else missing,
               notes={"sse": "iter_any + bytes.split, timestamp per read, no per-event JSON"}),
        Client("locust_fasthttp",
               f"{peers.get('LOCUST', '')} -f benchmarks/clients/locustfile.py --headless "
               "--users {concurrency} --spawn-rate {concurrency} -t {duration}s --host {url} "
               "--mode {mode} --only-summary --loglevel WARNING",
               skip_reason="" if peers.get("LOCUST") else missing,
               notes={"json": "FastHttpUser, status checked, body not parsed",
                      "sse": "FastHttpUser, 4 KB reads split on blank lines, no timing"}),
        Client("k6",
               f"{peers.get('K6', '')} run --quiet --vus {{concurrency}} --duration {{duration}}s "
               "-e URL={url} -e MODE={mode} benchmarks/clients/k6_chat.js",
               skip_reason="" if peers.get("K6") else missing,
               notes={"json": "Go; body read, status checked, not parsed",
                      "sse": "Go; whole stream read as one body, no SSE parsing"}),
        Client("guidellm",
               f"env HF_HUB_OFFLINE=1 {peers.get('GUIDELLM', '')} run "
               "--backend kind=openai_http,target={url},request_format=/v1/chat/completions "
               "--profile kind=concurrent,streams={concurrency} "
               "--data kind=synthetic_text,prompt_tokens=16,output_tokens=64 "
               f"--tokenizer kind=huggingface_auto,model={peers.get('GUIDELLM_TOKENIZER', '')} "
               "--constraint kind=max_duration,seconds={duration} "
               "--output kind=console --output kind=json,path={tmp}/guidellm.json "
               "--disable-console-interactive",
               modes=frozenset({"sse"}),
               skip_reason="" if peers.get("GUIDELLM") else
               (peers.get("GUIDELLM_SKIP_REASON") or missing),
               notes={"sse": "concurrent profile, per-token timing; imports torch"}),
        Client("llmscen", LLMSCEN,
               notes={"json": "body parsed, usage read, checks, ~10 HDR histograms per "
                              "response",
                      "sse": "every event decoded (text, tokens, usage), timed per read, "
                             "TTFT/ITL/tokens in HDR histograms, `expect: {status: 200}`"}),
        Client("wrk", f"{peers.get('WRK', '')} -t1 -c{{concurrency}} -d{{duration}}s "
               "-s benchmarks/clients/wrk_post.lua {url}/v1/chat/completions",
               skip_reason="" if peers.get("WRK") else "wrk not installed (apt-get install wrk)",
               notes={"json": "C, no parsing: the ceiling", "sse": "C, no parsing: the ceiling"}),
    ]
    return clients


def parse_client_option(spec: str) -> Client:
    if "=" not in spec:
        raise SystemExit(f"--client {spec!r}: expected NAME=COMMAND or NAME@MODE=COMMAND")
    name, template = spec.split("=", 1)
    modes = None
    if "@" in name:
        name, mode_list = name.split("@", 1)
        modes = frozenset(mode_list.split(","))
    return Client(name.strip(), template.strip(), modes)


# --- /proc CPU accounting -----------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, session, utime+stime ticks) for every process."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        rest = raw[raw.rfind(b")") + 2:].split()
        table[int(entry.name)] = (int(rest[1]), int(rest[3]), int(rest[11]) + int(rest[12]))
    return table


class TreeCPU:
    """CPU ticks of a process tree (descendants of root, or its session), sampled over time.

    Each pid's ticks are remembered at the first and the last sample it was seen in, so a
    process that exits mid-window loses at most one sampling interval of CPU.
    """

    def __init__(self, root: int):
        self.root = root
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.started = False

    def _tree(self, table: dict[int, tuple[int, int, int]]) -> dict[int, int]:
        children: dict[int, list[int]] = {}
        for pid, (ppid, _sid, _ticks) in table.items():
            children.setdefault(ppid, []).append(pid)
        members = {pid for pid, (_p, sid, _t) in table.items() if sid == self.root}
        seen: set[int] = set()
        stack = [self.root]
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            members.add(pid)
            stack.extend(children.get(pid, ()))
        return {pid: table[pid][2] for pid in members if pid in table}

    def sample(self, *, start: bool = False) -> None:
        ticks = self._tree(_proc_table())
        for pid, value in ticks.items():
            if start:
                self.first[pid] = value
            else:
                # A pid first seen after the window began started inside it, from zero.
                self.first.setdefault(pid, 0)
            self.last[pid] = value
        self.started = True

    def seconds(self) -> float:
        return sum(self.last[p] - self.first[p] for p in self.last) / CLK_TCK


def _busy_ticks() -> int:
    """Machine-wide busy CPU ticks (all cores) from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return user + nice + system + irq + softirq + steal


# --- one run ------------------------------------------------------------------------------


def _format(template: str, values: dict[str, str]) -> list[str]:
    try:
        text = template.format_map(values)
    except KeyError as exc:
        raise SystemExit(f"unknown placeholder {exc} in client command: {template}") from exc
    return shlex.split(text)


def _stop_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group
    proc.wait()


def _last_json_line(path: Path) -> dict | None:
    with contextlib.suppress(OSError):
        for line in reversed(path.read_text(errors="replace").splitlines()):
            line = line.strip()
            if line.startswith("{") and line.endswith("}"):
                with contextlib.suppress(ValueError):
                    return json.loads(line)
    return None


def _tail(path: Path, n: int = 8) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    return ""


def client_mode(mode: str) -> str:
    """What the clients are asked for: a paced mode is a stream."""
    return "sse" if mode.startswith("paced-") else mode


def _wait_idle(target: StaticTarget | PacedTarget, timeout: float = 10.0) -> None:
    """Wait until only our own status connection is open (the previous client is gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and target.status()["active"] > target.idle_active:
        time.sleep(0.1)


def wait_quiet(max_other: float, max_wait: float, exclude_pids: list[int]) -> float:
    """Wait (bounded) until the rest of the machine uses at most `max_other` cores.

    Returns the last reading. Shared machines run other people's jobs; a run that starts
    while they are busy measures them too. 0 disables the wait.
    """
    deadline = time.monotonic() + max_wait
    while True:
        trees = [TreeCPU(pid) for pid in exclude_pids]
        for t in trees:
            t.sample(start=True)
        b0, t0 = _busy_ticks(), time.monotonic()
        time.sleep(1.0)
        for t in trees:
            t.sample()
        other = ((_busy_ticks() - b0) / CLK_TCK - sum(t.seconds() for t in trees)) / (
            time.monotonic() - t0)
        if max_other <= 0 or other <= max_other or time.monotonic() >= deadline:
            return max(0.0, other)


def run_once(client: Client, mode: str, rep: int, target: StaticTarget | PacedTarget, args,
             workdir: Path, python: str) -> RunResult:
    result = RunResult(client=client.name, mode=mode, rep=rep, ok=False)
    client_duration = math.ceil(args.warmup + args.duration + args.margin)
    tmp = workdir / f"{client.name}-{mode}-{rep}"
    tmp.mkdir(parents=True, exist_ok=True)
    concurrency = args.paced_concurrency if mode.startswith("paced-") else args.concurrency
    asked = client_mode(mode)
    argv = _format(client.template, {
        "url": target.url(asked), "concurrency": str(concurrency),
        "duration": str(client_duration), "mode": asked,
        "stream": "true" if asked == "sse" else "false", "repo": str(REPO),
        "python": python, "tmp": str(tmp),
    })
    if args.client_cpu != "none":
        argv = ["taskset", "-c", args.client_cpu, *argv]
    out, err = tmp / "stdout.log", tmp / "stderr.log"
    _wait_idle(target)
    # The driver's tree includes nginx, its child.
    result.other_before = wait_quiet(args.max_other_load, args.quiet_wait, [os.getpid()])
    before = target.status()["requests"]
    launched = time.monotonic()
    # The driver's own venv comes first on PATH, so `llmscen ...` templates resolve.
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=fo,
                                stderr=fe, env=env, start_new_session=True)
    try:
        # 1. Wait for load, not a probe: at least max(8, concurrency) requests beyond our
        #    own status fetches (GuideLLM, say, GETs /v1/models then sets up for ~20 s).
        polls = 0
        while True:
            time.sleep(0.1)
            polls += 1
            now = target.status()["requests"]
            if now - before - polls * target.self_requests >= max(8, concurrency):
                traffic_at = time.monotonic()
                break
            if proc.poll() is not None:
                result.error = f"exited ({proc.returncode}) before sending requests"
                return result
            if time.monotonic() - launched > args.startup_timeout:
                result.error = f"no requests after {args.startup_timeout:g} s"
                return result
        # 2. Warm up, then measure the window.
        time.sleep(args.warmup)
        cpu = TreeCPU(proc.pid)
        server_cpu = TreeCPU(target.pid)
        cpu.sample(start=True)
        server_cpu.sample(start=True)
        busy0 = _busy_ticks()
        t0 = time.monotonic()
        r0 = target.status()["requests"]
        end = t0 + args.duration
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(SAMPLE_INTERVAL_S, left))
            cpu.sample()
        r1 = target.status()["requests"]
        t1 = time.monotonic()
        server_cpu.sample()
        busy1 = _busy_ticks()
        if proc.poll() is not None:
            result.error = f"client exited ({proc.returncode}) inside the window"
        # 3. Let the client finish by itself, bounded (its clock starts at most at its
        #    first request; slow starters such as GuideLLM spend their set-up before it).
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, traffic_at + client_duration + args.exit_grace
                                  - time.monotonic()))
    finally:
        if proc.poll() is None:
            result.killed = True
            _stop_group(proc)
    result.exit_code = proc.returncode
    result.window_s = t1 - t0
    result.server_responses = r1 - r0 - target.self_requests
    result.client_cpu_s = cpu.seconds()
    result.pids_seen = len(cpu.last)
    result.responses_per_s = result.server_responses / result.window_s
    result.client_cores = result.client_cpu_s / result.window_s
    result.server_cores = server_cpu.seconds() / result.window_s
    # Everything else the machine did meanwhile (other users, the driver): a noise gauge.
    result.other_cores = max(0.0, (busy1 - busy0) / CLK_TCK / result.window_s
                             - result.client_cores - result.server_cores)
    result.per_client_core = (result.server_responses / result.client_cpu_s
                              if result.client_cpu_s > 0 else 0.0)
    result.client_summary = _last_json_line(out)
    if result.server_responses <= 0 and not result.error:
        result.error = "no responses in the window"
    result.ok = not result.error
    if result.client_summary and result.client_summary.get("errors"):
        result.error = f"client reported {result.client_summary['errors']} errors"
    if result.exit_code not in (0, None) and not result.error and not result.killed:
        result.error = f"exit code {result.exit_code}: {_tail(err, 3)}"
    return result


# --- report -------------------------------------------------------------------------------


def _k(x: float) -> str:
    return f"{x / 1000:.2f}k" if x >= 1000 else f"{x:.0f}"


def markdown(results: list[RunResult], clients: list[Client], modes: list[str], args,
             meta: dict) -> str:
    lines = [
        f"Run {meta['date']} on {meta['machine']}; nginx {meta['nginx']} (or the pacing "
        "server) on core 0, each client "
        f"on core {args.client_cpu}; concurrency {args.concurrency}, window {args.duration:g} s "
        f"after {args.warmup:g} s warm-up, {args.reps} reps interleaved. Load average "
        f"{meta['loadavg_before'][0]:.1f} before, {meta['loadavg_after'][0]:.1f} after"
        + (f", everything at nice {meta['nice']}" if meta.get("nice") else "") + "; "
        "'other load' is what the rest of the machine used during the windows.",
        "",
    ]
    for mode in modes:
        rows = [r for r in results if r.mode == mode]
        if not rows:
            continue
        base = [r.per_client_core for r in rows if r.client == BASELINE and r.ok]
        base_med = statistics.median(base) if base else None
        title = {"json": " (~390 B body)", "sse": " (64-chunk SSE, one burst)"}.get(
            mode, f" (64-chunk SSE paced by {mode[6:]}, {args.paced_concurrency} streams)")
        lines += [
            f"### {mode.upper()}" + title,
            "",
            "| client | resp/s per client core, median (min–max) | ratio to "
            f"{BASELINE} | resp/s (median) | client CPU, cores | server CPU, cores | "
            "other load, cores | ok runs | notes |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for client in clients:
            mine = [r for r in rows if r.client == client.name]
            if not mine:
                continue
            good = [r for r in mine if r.ok]
            errors = sorted({r.error for r in mine if r.error})
            if not good:
                lines.append(f"| {client.name} | failed | | | | | | 0/{len(mine)} | "
                             f"{'; '.join(errors)[:200]} |")
                continue
            pcc = [r.per_client_core for r in good]
            med = statistics.median(pcc)
            ratio = f"{med / base_med:.2f}×" if base_med else "—"
            note = client.notes.get(client_mode(mode), "")
            if errors:
                note += f"; {'; '.join(errors)[:160]}"
            killed = sum(r.killed for r in mine)
            if killed:
                note += f"; stopped by the driver after its duration in {killed} run(s)"
            lines.append(
                f"| {client.name} | {_k(med)} ({_k(min(pcc))}–{_k(max(pcc))}) | {ratio} | "
                f"{_k(statistics.median(r.responses_per_s for r in good))} | "
                f"{statistics.median(r.client_cores for r in good):.2f} | "
                f"{statistics.median(r.server_cores for r in good):.2f} | "
                f"{statistics.median(r.other_cores for r in good):.2f} | "
                f"{len(good)}/{len(mine)} | {note} |")
        lines.append("")
    for mode, why in meta.get("skipped_modes", {}).items():
        lines += [f"### {mode.upper()}: skipped ({why})", ""]
    skipped = [c for c in clients if c.skip_reason]
    if skipped:
        lines.append("Skipped: " + "; ".join(f"{c.name} ({c.skip_reason})" for c in skipped))
        lines.append("")
    return "\n".join(lines)


def _nginx_version() -> str:
    with contextlib.suppress(OSError):
        out = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
        return out.strip().split("/")[-1]
    return "?"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--modes", default="json,sse,paced-sim,paced-xpyd")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--paced-concurrency", type=int, default=16,
                        help="streams in flight in the paced modes")
    parser.add_argument("--duration", type=float, default=10.0, help="measured window, s")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--margin", type=float, default=2.0,
                        help="extra seconds the client runs past the window")
    parser.add_argument("--startup-timeout", type=float, default=60.0)
    parser.add_argument("--exit-grace", type=float, default=45.0,
                        help="seconds a client may take to exit after its duration "
                             "(GuideLLM builds its report for ~30 s); then it is stopped")
    parser.add_argument("--max-other-load", type=float, default=0.3, metavar="CORES",
                        help="before each run, wait until the rest of the machine uses at "
                             "most this many cores (0: don't wait)")
    parser.add_argument("--quiet-wait", type=float, default=30.0, metavar="S",
                        help="longest wait for --max-other-load, then run anyway")
    parser.add_argument("--client", action="append", default=[], metavar="NAME=CMD",
                        help="extra client command template (repeatable)")
    parser.add_argument("--only", default="",
                        help="comma-separated built-in clients to run (--client ones always run)")
    parser.add_argument("--nice", type=int, default=0,
                        help="niceness of the driver, hence of the servers and clients it "
                             "starts (negative needs root): on a busy shared machine a paced "
                             "server only spaces its events, and a client only reads them one "
                             "at a time, when they get their CPU at once")
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1", help="core for clients, or 'none'")
    parser.add_argument("--md", type=Path, help="also write the Markdown table here")
    parser.add_argument("--json", type=Path, help="write every run's raw numbers here")
    parser.add_argument("--keep-logs", type=Path, help="keep client stdout/stderr here")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda signum, _f: sys.exit(128 + signum))  # clean up
    if args.nice:
        os.nice(args.nice)      # inherited by every server and client started below
    modes = [m for m in args.modes.split(",") if m]
    known = ("json", "sse", *(f"paced-{k}" for k in PACED_KINDS))
    for m in modes:
        if m not in known:
            raise SystemExit(f"unknown mode {m!r} ({', '.join(known)})")
    peers = read_peers_env()
    clients = builtin_clients(peers)
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {c.name for c in clients}
        if unknown:
            raise SystemExit(f"--only: unknown built-in clients {sorted(unknown)}")
        clients = [c for c in clients if c.name in wanted]
    clients += [parse_client_option(s) for s in args.client]  # --client ones always run
    runnable = [c for c in clients if not c.skip_reason]
    python = peers.get("AIOHTTP_PYTHON") or sys.executable

    plan = [(mode, rep, c) for mode in modes for rep in range(1, args.reps + 1)
            for c in runnable if c.modes is None or client_mode(mode) in c.modes]
    per_run = args.warmup + args.duration + args.margin + 4
    print(f"{len(plan)} runs, about {len(plan) * per_run / 60:.1f} min "
          f"(each ≤ {args.quiet_wait + args.startup_timeout + per_run + args.exit_grace:.0f} s)",
          file=sys.stderr)
    if args.server_cpu != "none":
        # The driver shares the server's core so it never steals the client's.
        os.sched_setaffinity(0, {int(args.server_cpu)})

    workdir = args.keep_logs or Path(tempfile.mkdtemp(prefix="llmscen-compare-"))
    workdir.mkdir(parents=True, exist_ok=True)
    meta = {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "loadavg_before": os.getloadavg(),
            "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
                       f"Linux {platform.release()}",
            "nginx": _nginx_version(), "argv": sys.argv, "nice": args.nice}
    results: list[RunResult] = []
    server_cpu = None if args.server_cpu == "none" else int(args.server_cpu)
    i = 0
    for mode in modes:
        runs = [(rep, client) for m, rep, client in plan if m == mode]
        target_cm = (paced_target(mode[6:], cpu=server_cpu) if mode.startswith("paced-")
                     else static_target(cpu=server_cpu))
        try:
            target = target_cm.__enter__()
        except (RealServersMissing, RuntimeError) as exc:
            print(f"{mode}: skipped: {exc}", file=sys.stderr)
            meta.setdefault("skipped_modes", {})[mode] = str(exc).splitlines()[0]
            i += len(runs)
            continue
        with contextlib.ExitStack() as stack:
            stack.push(target_cm)
            for rep, client in runs:
                i += 1
                r = run_once(client, mode, rep, target, args, workdir, python)
                results.append(r)
                status = "ok" if r.ok else f"FAILED: {r.error}"
                print(f"[{i}/{len(plan)}] {mode} rep {rep} {client.name}: "
                      f"{r.responses_per_s:,.0f} resp/s, {r.client_cores:.2f} client cores, "
                      f"{r.per_client_core:,.0f} per core (server {r.server_cores:.2f}, "
                      f"other {r.other_cores:.2f} cores) — {status}", file=sys.stderr,
                      flush=True)
                time.sleep(1.0)
    meta["loadavg_after"] = os.getloadavg()
    if not args.keep_logs:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)

    text = markdown(results, clients, modes, args, meta)
    print(text)
    if args.md:
        args.md.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "args": {k: str(v) for k, v in
                                                               vars(args).items()},
                                         "runs": [asdict(r) for r in results]}, indent=2))


if __name__ == "__main__":
    main()
