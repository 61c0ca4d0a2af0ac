"""Start and stop a real `tritonserver` (the binary inside the nvidia-pytriton wheel).

`start_triton_sim(options)` writes the model repository into a temp dir, starts
tritonserver in its own process group on free ports, waits until
`/v2/health/ready` answers 200 and returns a `TritonSim` handle. `stop()` sends
SIGTERM, waits `stop_timeout`, then SIGKILLs whatever is left of the group (the
Python backend stubs included) and removes the temp dir.

Only the wheel's files are used; pytriton itself is never imported.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import importlib.metadata
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .options import TritonSimOptions
from .repository import install_python_backend, write_model_repository

# PyTriton pins numpy<2, which has no build for Python 3.13: the extra is empty there
INSTALL_HINT = ("pip install 'llmscen[triton-sim]'" if sys.version_info < (3, 13) else
                "Python 3.10 to 3.12 with pip install 'llmscen[triton-sim]' (PyTriton needs "
                "numpy<2, which has no build for Python 3.13)")
_PORT_RETRIES = 3


class TritonSimError(RuntimeError):
    """The simulator could not be started (missing extra, bad install, server failed)."""


@dataclass(frozen=True)
class TritonDist:
    """Where the wheel keeps tritonserver and the shared libraries it links."""

    root: Path   # .../site-packages/pytriton/tritonserver
    libs: Path   # .../site-packages/nvidia_pytriton.libs

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"


def find_tritonserver() -> TritonDist:
    """Locate the tritonserver binary of the installed nvidia-pytriton wheel."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonSimError(f"triton-sim needs nvidia-pytriton, which brings the tritonserver "
                             f"binary: {INSTALL_HINT}")
    package = Path(next(iter(spec.submodule_search_locations))).resolve()
    dist = TritonDist(package / "tritonserver", package.parent / "nvidia_pytriton.libs")
    if not os.access(dist.binary, os.X_OK):
        raise TritonSimError(f"no executable tritonserver at {dist.binary}; reinstall with "
                             f"{INSTALL_HINT}")
    return dist


def _check_numpy() -> None:
    try:
        major = int(importlib.metadata.version("numpy").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        raise TritonSimError(f"triton-sim needs numpy<2 next to pytriton: {INSTALL_HINT}") from None
    if major >= 2:
        raise TritonSimError("triton-sim needs numpy<2: the Python backend of tritonserver 2.51 "
                             "crashes on BYTES tensors with numpy 2; run it from an environment "
                             f"made with {INSTALL_HINT}")


def _free_ports(host: str, count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _command_env(dist: TritonDist, workdir: Path, options: TritonSimOptions,
                 ports: dict[str, int], shm_prefix: str) -> tuple[list[str], dict[str, str]]:
    host = options.host
    cmd = [
        str(dist.binary),
        f"--model-repository={workdir / 'models'}",
        # every model loads at start, and the repository API may unload and load it again
        # (a `faults: [{unload: flux, ...}]` in a scenario)
        "--model-control-mode=explicit", "--load-model=*",
        f"--backend-directory={workdir / 'backends'}",
        f"--cache-directory={dist.root / 'caches'}",
        f"--grpc-address={host}", f"--grpc-port={ports['grpc']}",
        f"--http-address={host}", f"--http-port={ports['http']}",
        f"--metrics-address={host}", f"--metrics-port={ports['metrics']}",
        "--allow-gpu-metrics=false",         # no NVML/DCGM on CPU hosts
        "--pinned-memory-pool-byte-size=0",  # no CUDA pinned memory
        "--strict-readiness=true",           # ready only once every model is
        "--disable-auto-complete-config",    # our configs are complete; saves a stub per model
        "--exit-timeout-secs=3",             # default 30 s waits on idle keep-alive clients
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        "--backend-config=python,shm-growth-byte-size=16777216",
        f"--log-verbose={options.log_verbose}",
    ]
    env = dict(os.environ)
    # The backend stub embeds Python and links libpython: make it this interpreter's
    # (pyenv and Debian builds may both exist), and give it this environment's numpy.
    libdirs = [str(dist.libs), sysconfig.get_config_var("LIBDIR") or ""]
    env["LD_LIBRARY_PATH"] = _join_paths(*libdirs, env.get("LD_LIBRARY_PATH", ""))
    paths = sysconfig.get_paths()
    env["PYTHONPATH"] = _join_paths(paths["purelib"], paths["platlib"], env.get("PYTHONPATH", ""))
    env["PATH"] = _join_paths(str(Path(sys.executable).parent), env.get("PATH", ""))
    return cmd, env


def _join_paths(*parts: str) -> str:
    seen: list[str] = []
    for part in parts:
        for item in part.split(os.pathsep):
            if item and item not in seen:
                seen.append(item)
    return os.pathsep.join(seen)


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group `pgid`, from /proc."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != b"Z":
            pids.append(int(entry.name))
    return sorted(pids)


def _kill_group(proc: subprocess.Popen[bytes], timeout: float, shm_prefix: str) -> None:
    """SIGTERM the server, wait, then SIGKILL every process left in its group."""
    pgid = proc.pid  # start_new_session=True made the server a group leader
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            proc.wait()
    deadline = time.monotonic() + 2.0  # stubs exit on their own right after the server
    while group_pids(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if group_pids(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        # SIGKILL is delivered asynchronously: return once they are really gone
        deadline = time.monotonic() + 2.0
        while group_pids(pgid) and time.monotonic() < deadline:
            time.sleep(0.01)
    # a killed stub leaves its shared-memory regions behind
    for leftover in Path("/dev/shm").glob(f"{shm_prefix}*"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def _cleanup(proc: subprocess.Popen[bytes], workdir: Path, timeout: float, shm_prefix: str,
             log: IO[bytes]) -> None:
    try:
        _kill_group(proc, timeout, shm_prefix)
    finally:
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


class TritonSim:
    """A running simulator. Use as a context manager, or call `stop()`."""

    def __init__(self, proc: subprocess.Popen[bytes], workdir: Path, log_path: Path,
                 options: TritonSimOptions, ports: dict[str, int], startup_seconds: float,
                 shm_prefix: str, log: IO[bytes]) -> None:
        self.options = options
        self.ports = dict(ports)
        self.startup_seconds = startup_seconds
        self.log_path = log_path
        self._proc = proc
        self._workdir = workdir
        self._finalizer = weakref.finalize(self, _cleanup, proc, workdir, options.stop_timeout,
                                           shm_prefix, log)

    @property
    def grpc_url(self) -> str:
        """`host:port` of KServe v2 gRPC (what tritonclient.grpc takes)."""
        return f"{self.options.host}:{self.ports['grpc']}"

    @property
    def http_url(self) -> str:
        return f"http://{self.options.host}:{self.ports['http']}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.options.host}:{self.ports['metrics']}/metrics"

    @property
    def url(self) -> str:
        """The default target URL: gRPC, as the triton plugin's default protocol."""
        return self.grpc_url

    @property
    def urls(self) -> dict[str, str]:
        return {"grpc": self.grpc_url, "http": self.http_url, "metrics": self.metrics_url}

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def pids(self) -> list[int]:
        """The server and its Python backend stubs."""
        return group_pids(self._proc.pid)

    def log_tail(self, lines: int = 20) -> str:
        return _tail(self.log_path, lines)

    def stop(self) -> None:
        """Stop the server and every process it started; idempotent."""
        self._finalizer()  # runs once; later calls do nothing

    def __enter__(self) -> TritonSim:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.alive() else "stopped"
        return f"<TritonSim {state} grpc={self.grpc_url} http={self.http_url} pid={self.pid}>"


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    # skip the big option/model tables tritonserver prints at startup and shutdown
    kept = [line for line in text.splitlines() if line.strip() and line[:1] not in "|+"]
    return "\n".join(kept[-lines:])


def _probe_ready(host: str, port: int) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=1.0)
    try:
        conn.request("GET", "/v2/health/ready")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def _wait_ready(proc: subprocess.Popen[bytes], options: TritonSimOptions,
                ports: dict[str, int], log_path: Path) -> None:
    deadline = time.monotonic() + options.startup_timeout
    while True:
        code = proc.poll()
        if code is not None:
            raise TritonSimError(f"tritonserver exited with code {code} during startup; "
                                 f"last lines of its log:\n{_tail(log_path, 20)}")
        if _probe_ready(options.host, ports["http"]) and all(
                _listening(options.host, ports[k]) for k in ("grpc", "metrics")):
            return
        if time.monotonic() > deadline:
            raise TritonSimError(f"tritonserver was not ready after {options.startup_timeout:g} s; "
                                 f"last lines of its log:\n{_tail(log_path, 20)}")
        time.sleep(0.05)


def start_triton_sim(options: TritonSimOptions | Mapping[str, Any] | None = None, *,
                     log_file: str | os.PathLike[str] | None = None,
                     die_with_parent: bool = False) -> TritonSim:
    """Start tritonserver with the simulated models; return once it is ready.

    `log_file` keeps the server's output there (appended); by default it goes to
    the temp dir and is removed by `stop()`. `die_with_parent` has the kernel
    SIGTERM the server when the calling *thread* ends (for a process whose main
    thread owns the server, like this package's CLI). Raises `TritonSimError`.
    """
    if options is None:
        options = TritonSimOptions()
    elif not isinstance(options, TritonSimOptions):
        options = TritonSimOptions.model_validate(options)
    dist = find_tritonserver()
    _check_numpy()
    auto_ports = not (options.grpc_port or options.http_port or options.metrics_port)
    for attempt in range(_PORT_RETRIES):
        try:
            return _start_once(dist, options, log_file, die_with_parent)
        except _PortTaken as exc:
            if not auto_ports or attempt == _PORT_RETRIES - 1:
                raise TritonSimError(f"a port is already in use; {exc}") from None
    raise AssertionError("unreachable")


def _sigterm_on_parent_death() -> None:
    """Runs in the child before exec: PR_SET_PDEATHSIG(SIGTERM) (Linux)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


class _PortTaken(TritonSimError):
    pass


def _start_once(dist: TritonDist, options: TritonSimOptions,
                log_file: str | os.PathLike[str] | None, die_with_parent: bool) -> TritonSim:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="llmscen-triton-sim-"))
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    shm_prefix = f"llmscen{os.getpid()}_{uuid.uuid4().hex[:8]}_"
    try:
        install_python_backend(dist.root, workdir)
        write_model_repository(options, workdir / "models")
        free = iter(_free_ports(options.host, 3))
        ports = {k: getattr(options, f"{k}_port") or next(free) for k in ("grpc", "http", "metrics")}
        cmd, env = _command_env(dist, workdir, options, ports, shm_prefix)
        log_path = Path(log_file) if log_file else workdir / "tritonserver.log"
        log = open(log_path, "ab")  # noqa: SIM115 - owned by the returned handle
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=workdir,
                                preexec_fn=_sigterm_on_parent_death if die_with_parent else None)
        try:
            _wait_ready(proc, options, ports, log_path)
        except TritonSimError as exc:
            if "already in use" in _tail(log_path, 200):
                raise _PortTaken(str(exc)) from None
            raise
        return TritonSim(proc, workdir, log_path, options, ports,
                         time.monotonic() - started, shm_prefix, log)
    except BaseException:
        if proc is not None:
            _kill_group(proc, options.stop_timeout, shm_prefix)
        if log is not None:
            log.close()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
