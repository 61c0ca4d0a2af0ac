"""Targets that pace their tokens, for comparing load generators the way real servers load them.

    python benchmarks/paced_server.py sim      # start, print the URL, serve until Ctrl-C
    python benchmarks/paced_server.py xpyd --check

A static SSE body arrives in one burst; a real server spaces its events, so a client pays a
wake-up per event. These servers stream 64 tokens 1 ms apart (llama-server: as fast as its
model runs) and count finished requests server-side, like nginx's stub_status:

  sim     the bundled openai-sim: ttft 1 ms, itl 1 ms, 64 tokens, model `bench`;
          counted by its /metrics `vllm:request_success_total`
  xpyd    xpyd-sim 0.5.0 (scripts/install-real-servers.sh): prefill 1 ms, 1 ms per token;
          counted by `xpyd_sim_request_duration_seconds_count`
  llama   llama.cpp's llama-server with SmolLM2-135M (real tokens, a few hundred tokens/s
          on this machine, 8 slots, one thread); counted as `llamacpp:tokens_predicted_total`
          / 64 (the clients send `ignore_eos`, so a response is 64 tokens)

Each runs pinned (`taskset -c 0`) in its own session and is stopped with its group.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODEL = "bench"
TOKENS = 64
KINDS = ("sim", "xpyd", "llama")


class PacedTarget:
    """A running pacing server; `status()` as StaticTarget's: requests finished, in flight."""

    self_requests = 0       # a status fetch is not counted as a request
    idle_active = 0

    def __init__(self, kind: str, url: str, pid: int, log: Path) -> None:
        self.kind, self.root, self.pid, self.log = kind, url, pid, log

    def url(self, mode: str) -> str:
        return self.root

    def status(self) -> dict[str, int]:
        with urllib.request.urlopen(self.root + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            match = re.match(r"([^{\s]+)(?:\{[^}]*\})?\s+(\S+)", line)
            if match:
                name = match.group(1)
                with contextlib.suppress(ValueError):
                    values[name] = values.get(name, 0.0) + float(match.group(2))
        if "vllm:request_success_total" in values:              # openai-sim
            done = values["vllm:request_success_total"]
            active = values.get("vllm:num_requests_running", 0.0)
        elif "xpyd_sim_request_duration_seconds_count" in values:  # xpyd-sim
            done = values["xpyd_sim_request_duration_seconds_count"]
            active = values.get("xpyd_sim_active_requests", 0.0)
        else:                                                     # llama-server
            done = values.get("llamacpp:tokens_predicted_total", 0.0) / TOKENS
            active = values.get("llamacpp:requests_processing", 0.0)
        return {"requests": int(done), "active": int(active)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


sys.path.insert(0, str(REPO / "tests"))       # tests/realservers.py is not a package
from realservers import RealServersMissing, real_server_paths  # noqa: E402

__all__ = ["KINDS", "PacedTarget", "RealServersMissing", "paced_target"]


def _argv(kind: str, port: int) -> list[str]:
    if kind == "sim":
        options = {"ttft": "1ms", "itl": "1ms", "output_tokens": TOKENS, "model": MODEL}
        return [sys.executable, "-m", "llmscen.services.openai_sim", "--host", "127.0.0.1",
                "--port", str(port), "--options", json.dumps(options)]
    paths = real_server_paths(require=["xpyd_sim"] if kind == "xpyd"
                              else ["llama_server", "gguf"])
    if kind == "xpyd":
        return [str(paths.xpyd_sim), "serve", "--host", "127.0.0.1", "--port", str(port),
                "--model", MODEL, "--prefill-delay-ms", "1", "--decode-delay-per-token-ms", "1",
                "--eos-min-ratio", "1.0"]
    return [str(paths.llama_server), "-m", str(paths.gguf), "-a", MODEL, "--host", "127.0.0.1",
            "--port", str(port), "-c", "16384", "-np", "8", "-t", "1", "--metrics"]


@contextlib.contextmanager
def paced_target(kind: str, cpu: int | None = 0, timeout: float = 60.0) -> Iterator[PacedTarget]:
    """Start a pacing server on a free loopback port; stop its process group on exit."""
    if kind not in KINDS:
        raise SystemExit(f"unknown paced server {kind!r} ({', '.join(KINDS)})")
    port = _free_port()
    argv = _argv(kind, port)
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    log = Path(tempfile.mkstemp(prefix=f"llmscen-paced-{kind}-", suffix=".log")[1])
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    target = PacedTarget(kind, f"http://127.0.0.1:{port}", proc.pid, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} exited ({proc.returncode}):\n"
                                   f"{log.read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(OSError, ValueError):
                target.status()
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} not ready within {timeout:g} s")
            time.sleep(0.1)
        yield target
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with contextlib.suppress(OSError):
            log.unlink()


def _check(target: PacedTarget) -> None:
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Count."}],
                       "max_tokens": TOKENS, "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
    request = urllib.request.Request(target.root + "/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    start = time.monotonic()
    with urllib.request.urlopen(request, timeout=60) as resp:
        events = [e for e in resp.read().split(b"\n\n") if e.startswith(b"data: ")]
    print(f"{target.kind}: {len(events)} events in {time.monotonic() - start:.3f} s; "
          f"status {target.status()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--cpu", default="0", help="core to pin the server to, or 'none'")
    parser.add_argument("--check", action="store_true", help="stream once, then stop")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda signum, _f: sys.exit(128 + signum))
    with paced_target(args.kind, cpu=None if args.cpu == "none" else int(args.cpu)) as target:
        if args.check:
            _check(target)
            return
        print(f"{args.kind}: {target.root}/v1/chat/completions  (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
