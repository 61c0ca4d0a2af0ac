"""Static OpenAI-shaped target served by nginx, for comparing load generators.

    python benchmarks/static_server.py            # start, print URLs, serve until Ctrl-C
    python benchmarks/static_server.py --check    # start, fetch each endpoint once, stop

Three ports on 127.0.0.1, all free ports picked at start:
  json    POST /v1/chat/completions -> ~390 B `chat.completion` with usage
  sse     POST /v1/chat/completions -> 64 `chat.completion.chunk` events, last with usage,
          then `data: [DONE]` (text/event-stream, arrives in one burst)
  status  GET /stub_status          -> nginx's counters (`requests` counts server-side)
Both json and sse answer GET /health and GET /v1/models.

nginx (Debian package `nginx`) runs with one worker, `daemon off`, pinned with
`taskset -c 0` (``cpu=None`` to not pin). The request body is ignored: what the
clients send does not change the response.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

HERE = Path(__file__).resolve().parent
NGINX_DIR = HERE / "nginx"
MODEL = "bench"
CHUNKS = 64
CREATED = 1_700_000_000
WORDS = [
    "The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "the",
    "load", "generator", "keeps", "counting", "every", "event", "it", "receives", "from",
    "the", "static", "server",
]


def chat_completion_body() -> bytes:
    content = " ".join(WORDS[:14])
    body = {
        "id": "chatcmpl-bench-000000000000000000000000",
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 12, "completion_tokens": 14, "total_tokens": 26},
    }
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def sse_body(chunks: int = CHUNKS) -> bytes:
    """`chunks` events: content deltas, a finish_reason chunk, then the usage chunk."""
    content_events = chunks - 2
    events = []

    def chunk(choices: list, **extra: object) -> bytes:
        event = {
            "id": "chatcmpl-bench-000000000000000000000000",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "system_fingerprint": "fp_bench",
            "choices": choices,
            **extra,
        }
        return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"

    for i in range(content_events):
        delta: dict[str, str] = {"content": (" " if i else "") + WORDS[i % len(WORDS)]}
        if i == 0:
            delta = {"role": "assistant", **delta}
        events.append(chunk([{"index": 0, "delta": delta, "logprobs": None,
                              "finish_reason": None}]))
    events.append(chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]))
    events.append(chunk([], usage={"prompt_tokens": 12, "completion_tokens": content_events,
                                   "total_tokens": 12 + content_events}))
    return b"".join(events) + b"data: [DONE]\n\n"


def models_body() -> bytes:
    body = {"object": "list", "data": [{"id": MODEL, "object": "model", "created": CREATED,
                                        "owned_by": "llmscen-bench"}]}
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True)
class StaticTarget:
    json_url: str
    sse_url: str
    status_url: str
    run_dir: Path
    pid: int
    self_requests: ClassVar[int] = 1    # stub_status counts its own fetch
    idle_active: ClassVar[int] = 1      # ... and its own connection

    def url(self, mode: str) -> str:
        return {"json": self.json_url, "sse": self.sse_url}[mode]

    def status(self) -> dict[str, int]:
        """stub_status counters; this fetch itself counts as one request."""
        with urllib.request.urlopen(self.status_url, timeout=5) as resp:
            text = resp.read().decode()
        found = re.search(r"Active connections:\s*(\d+)", text)
        if found is None:
            raise RuntimeError(f"not nginx's stub_status: {text[:200]!r}")
        active = int(found.group(1))
        accepts, handled, requests = map(int, text.splitlines()[2].split())
        return {"active": active, "accepts": accepts, "handled": handled, "requests": requests}


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _write_tree(run: Path, ports: dict[str, int]) -> None:
    for sub in ("tmp", "www/json/v1/chat", "www/sse/v1/chat"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    (run / "www/json/v1/chat/completions").write_bytes(chat_completion_body())
    (run / "www/sse/v1/chat/completions").write_bytes(sse_body())
    for mode in ("json", "sse"):
        (run / f"www/{mode}/v1/models").write_bytes(models_body())
    shutil.copy(NGINX_DIR / "common.conf", run / "common.conf")
    conf = (NGINX_DIR / "nginx.conf.in").read_text().replace("@RUN@", str(run))
    for name, port in ports.items():
        conf = conf.replace(f"@{name.upper()}_PORT@", str(port))
    (run / "nginx.conf").write_text(conf)
    # nginx workers drop to `nobody` when started as root: make the tree readable.
    for path in [run, *run.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def nginx_binary() -> str:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("nginx not found: `apt-get install nginx` (or run benchmarks/install-peers.sh)")


@contextlib.contextmanager
def static_target(cpu: int | None = 0, timeout: float = 10.0) -> Iterator[StaticTarget]:
    """Start nginx on free loopback ports; stop it (and its worker) on exit."""
    nginx = nginx_binary()
    run = Path(tempfile.mkdtemp(prefix="llmscen-nginx-"))
    proc = None
    try:
        for _attempt in range(3):
            ports = dict(zip(("json", "sse", "status"), _free_ports(3), strict=True))
            _write_tree(run, ports)
            argv = [nginx, "-p", str(run), "-c", str(run / "nginx.conf"), "-e",
                    str(run / "error.log")]
            if cpu is not None:
                argv = ["taskset", "-c", str(cpu), *argv]
            with open(run / "stderr.log", "wb") as stderr:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=stderr,
                                        start_new_session=True)
            target = StaticTarget(
                json_url=f"http://127.0.0.1:{ports['json']}",
                sse_url=f"http://127.0.0.1:{ports['sse']}",
                status_url=f"http://127.0.0.1:{ports['status']}/stub_status",
                run_dir=run, pid=proc.pid,
            )
            if _wait_ready(proc, target, timeout):
                yield target
                return
            _stop(proc)
            log = (run / "stderr.log").read_text() + (run / "error.log").read_text()
            if "Address already in use" not in log:
                raise RuntimeError(f"nginx did not start:\n{log[-2000:]}")
        raise RuntimeError("nginx: could not bind free ports after 3 attempts")
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(run, ignore_errors=True)


def _wait_ready(proc: subprocess.Popen, target: StaticTarget, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            target.status()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGQUIT)  # graceful: master waits for its worker
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # a worker left behind, if any


def _check(target: StaticTarget) -> None:
    def post(url: str) -> tuple[int, str, bytes]:
        req = urllib.request.Request(url + "/v1/chat/completions", method="POST",
                                     data=b'{"model":"bench","messages":[]}',
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()

    status, ctype, body = post(target.json_url)
    parsed = json.loads(body)
    assert status == 200 and ctype == "application/json" and parsed["usage"], (status, ctype)
    print(f"json: {status} {ctype} {len(body)} B, usage={parsed['usage']}")
    status, ctype, body = post(target.sse_url)
    events = [e for e in body.split(b"\n\n") if e.startswith(b"data: {")]
    last = json.loads(events[-1][6:])
    assert status == 200 and ctype == "text/event-stream" and last["usage"], (status, ctype)
    assert body.endswith(b"data: [DONE]\n\n")
    print(f"sse: {status} {ctype} {len(body)} B, {len(events)} chunk events, "
          f"last usage={last['usage']}, then [DONE]")
    for url in (target.json_url + "/health", target.sse_url + "/v1/models"):
        with urllib.request.urlopen(url, timeout=5) as resp:
            print(f"GET {url.split(':', 2)[2]}: {resp.status} {resp.read().decode().strip()}")
    print(f"stub_status: {target.status()}")


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", default="0", help="core to pin nginx to, or 'none'")
    parser.add_argument("--check", action="store_true", help="fetch each endpoint, then stop")
    args = parser.parse_args()
    cpu = None if args.cpu == "none" else int(args.cpu)
    signal.signal(signal.SIGTERM, _exit_on_signal)  # so `kill` stops nginx too
    with static_target(cpu=cpu) as target:
        if args.check:
            _check(target)
            return
        print(f"json:   {target.json_url}/v1/chat/completions")
        print(f"sse:    {target.sse_url}/v1/chat/completions")
        print(f"status: {target.status_url}")
        print("Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
