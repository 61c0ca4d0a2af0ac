"""Start real third-party OpenAI-compatible servers for integration tests.

Helpers, not tests. Each ``start_*`` is a context manager that picks a free port,
binds 127.0.0.1, waits until the server answers its readiness URL, yields the
server's root URL (``http://127.0.0.1:PORT``; append ``/v1/chat/completions``),
and on exit stops the server's whole process group, so no process outlives it.

The servers come from ``scripts/install-real-servers.sh`` (cached under
``${LLMSCEN_CACHE:-~/.cache/llmscen}/real-servers``); ``real_server_paths()`` finds
them or raises ``RealServersMissing`` saying to run that script.

Typical pytest use::

    @pytest.fixture(scope="session")
    def llama_url():
        try:
            paths = real_server_paths(require=["llama_server", "gguf"])
        except RealServersMissing as exc:
            pytest.skip(str(exc))
        with start_llama_server(paths=paths) as url:
            yield url

The yielded URL is a ``str`` subclass with ``.model`` (the name to put in
requests), ``.pid`` and ``.log_tail()`` for diagnostics.

Known behaviour worth a test: llama-server closes a kept-alive connection after
a streamed reply; xpyd-sim with ``scheduling=True`` sends the empty role chunk
before the prefill delay (time TTFT at the first chunk with content).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "RealServerPaths",
    "RealServersMissing",
    "ServerStartError",
    "ServerURL",
    "real_server_paths",
    "start_llama_server",
    "start_llmock",
    "start_xpyd_sim",
]

INSTALL_SCRIPT = "scripts/install-real-servers.sh"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
LOOPBACK = "127.0.0.1"
_PORT_ATTEMPTS = 3
_STOP_GRACE_S = 5.0


class RealServersMissing(RuntimeError):
    """The cached third-party servers are not installed."""


class ServerStartError(RuntimeError):
    """A server exited or did not become ready in time; the message has its last log lines."""


@dataclass(frozen=True)
class RealServerPaths:
    root: Path
    xpyd_sim: Path
    llmock: Path
    llama_server: Path
    gguf: Path


class ServerURL(str):
    """Root URL of a running server (``http://127.0.0.1:PORT``) with diagnostics attached."""

    model: str
    pid: int
    log_path: Path

    def __new__(cls, url: str, *, model: str, pid: int, log_path: Path) -> ServerURL:
        self = super().__new__(cls, url)
        self.model = model
        self.pid = pid
        self.log_path = log_path
        return self

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)


def cache_root() -> Path:
    base = os.environ.get("LLMSCEN_CACHE") or str(Path.home() / ".cache" / "llmscen")
    return Path(base) / "real-servers"


def real_server_paths(
    require: Sequence[str] = ("xpyd_sim", "llmock", "llama_server", "gguf"),
) -> RealServerPaths:
    """Where the cached servers are; raises RealServersMissing naming what is absent."""
    root = cache_root()
    paths = RealServerPaths(
        root=root,
        xpyd_sim=root / "venv" / "bin" / "xpyd-sim",
        llmock=root / "venv" / "bin" / "llmock",
        llama_server=root / "bin" / "llama-server",
        gguf=root / "models" / GGUF_NAME,
    )
    missing = []
    for name in require:
        path = getattr(paths, name)  # AttributeError for a typo is the right error
        if not (path.is_file() and (name == "gguf" or os.access(path, os.X_OK))):
            missing.append(f"{name} ({path})")
    if missing:
        raise RealServersMissing(
            f"real servers not installed: {', '.join(missing)}. Run `{INSTALL_SCRIPT}` "
            f"(caches under $LLMSCEN_CACHE, now {root.parent}; llama-server takes ~7 min to build)."
        )
    return paths


@contextlib.contextmanager
def start_xpyd_sim(
    *,
    model: str = "sim",
    prefill_delay_ms: float = 100,
    decode_delay_per_token_ms: float = 20,
    eos_min_ratio: float = 1.0,
    timeout: float = 30.0,
    paths: RealServerPaths | None = None,
    **opts: object,
) -> Iterator[ServerURL]:
    """xpyd-sim 0.5.0. Extra ``opts`` become flags: ``scheduling=True, max_num_seqs=8``.

    ``eos_min_ratio=1.0`` keeps outputs at ``max_tokens`` (otherwise they stop early at random).
    """
    paths = paths or real_server_paths(require=["xpyd_sim"])
    options = {
        "model": model,
        "prefill_delay_ms": prefill_delay_ms,
        "decode_delay_per_token_ms": decode_delay_per_token_ms,
        "eos_min_ratio": eos_min_ratio,
        **opts,
    }

    def argv(port: int) -> list[str]:
        return [str(paths.xpyd_sim), "serve", "--host", LOOPBACK, "--port", str(port),
                *_flags(options)]

    with _serve("xpyd-sim", argv, ready_path="/health", model=model, timeout=timeout) as url:
        yield url


@contextlib.contextmanager
def start_llmock(
    *,
    timeout: float = 30.0,
    paths: RealServerPaths | None = None,
    **opts: object,
) -> Iterator[ServerURL]:
    """llmock 0.2.2, canned chat replies with faults injected from outside.

    ``opts`` become flags, lists repeat: ``error_rate=["429=0.2", "503=0.05"],
    stream_fault=["truncate=0.1"], stream_chunk_delay_ms=5, rpm=600``.
    Any model name is accepted; ``.model`` is ``gpt-4o-mini``.
    """
    paths = paths or real_server_paths(require=["llmock"])
    options = {"log_level": "warning", **opts}

    def argv(port: int) -> list[str]:
        return [str(paths.llmock), "serve", "--host", LOOPBACK, "--port", str(port),
                *_flags(options)]

    with _serve("llmock", argv, ready_path="/health", model="gpt-4o-mini",
                timeout=timeout) as url:
        yield url


@contextlib.contextmanager
def start_llama_server(
    *,
    parallel: int = 8,
    ctx_size: int = 16384,
    threads: int = 2,
    extra_args: Sequence[str] = (),
    timeout: float = 60.0,
    paths: RealServerPaths | None = None,
) -> Iterator[ServerURL]:
    """llama.cpp's llama-server with SmolLM2-135M-Instruct Q4_1, model alias ``smollm2``.

    ``ctx_size`` is shared by the ``parallel`` slots (16384 / 8 = 2048 tokens each).
    """
    paths = paths or real_server_paths(require=["llama_server", "gguf"])

    def argv(port: int) -> list[str]:
        return [str(paths.llama_server), "-m", str(paths.gguf), "-a", "smollm2",
                "--host", LOOPBACK, "--port", str(port), "-c", str(ctx_size),
                "-np", str(parallel), "-t", str(threads), "--metrics", *extra_args]

    # /health answers 503 while the model loads, 200 once it can serve.
    with _serve("llama-server", argv, ready_path="/health", model="smollm2",
                timeout=timeout) as url:
        yield url


# --- process handling --------------------------------------------------------------------


def _flags(options: Mapping[str, object]) -> list[str]:
    out: list[str] = []
    for key, value in options.items():
        if key in {"host", "port"}:
            raise ValueError(f"{key!r} is chosen by the helper (127.0.0.1, a free port)")
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            for item in value:
                out += [flag, str(item)]
        else:
            out += [flag, str(value)]
    return out


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _child_env() -> dict[str, str]:
    # The servers live in their own venv: keep our interpreter settings and any
    # LLMOCK_* overrides of the caller's environment away from them.
    return {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
        and not k.startswith("LLMOCK_")
    } | {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}


@contextlib.contextmanager
def _serve(
    name: str,
    argv_for_port: Callable[[int], list[str]],
    *,
    ready_path: str,
    model: str,
    timeout: float,
) -> Iterator[ServerURL]:
    logdir = Path(tempfile.mkdtemp(prefix=f"llmscen-{name}-"))
    try:
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = _free_port()
            log_path = logdir / f"{name}-{port}.log"
            proc = _spawn(argv_for_port(port), log_path)
            try:
                url = f"http://{LOOPBACK}:{port}"
                error = _wait_ready(proc, url + ready_path, timeout)
                if error is None:
                    yield ServerURL(url, model=model, pid=proc.pid, log_path=log_path)
                    return
                tail = _tail(log_path, 30)
                port_taken = "address already in use" in tail.lower()
                if port_taken and attempt < _PORT_ATTEMPTS:
                    continue  # another process took the port between probe and bind
                raise ServerStartError(
                    f"{name} {error} (port {port}).\ncommand: {' '.join(proc.args)}\n"
                    f"last log lines:\n{tail or '(empty log)'}"
                )
            finally:
                _stop(proc)
    finally:
        shutil.rmtree(logdir, ignore_errors=True)


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_child_env(),
            start_new_session=True,  # own process group: _stop kills every descendant
        )


def _wait_ready(proc: subprocess.Popen[bytes], ready_url: str, timeout: float) -> str | None:
    """None once ``ready_url`` answers 200; otherwise why not."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            return f"exited with code {code} before it was ready"
        try:
            with urllib.request.urlopen(ready_url, timeout=2) as resp:
                if resp.status == 200:
                    return None
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        time.sleep(0.05)
    return f"not ready after {timeout:g} s at {ready_url} (last: {last})"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    pgid = proc.pid  # start_new_session makes the child its group's leader
    for sig, grace in ((signal.SIGTERM, _STOP_GRACE_S), (signal.SIGKILL, _STOP_GRACE_S)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
        if proc.poll() is not None and not _group_alive(pgid):
            break
    proc.wait()
    # Descendants reparented to init may take a moment to be reaped.
    deadline = time.monotonic() + _STOP_GRACE_S
    while _group_alive(pgid) and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
