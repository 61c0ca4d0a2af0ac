"""Child processes that serve targets: start, wait for readiness, stop with no orphans.

Each child gets its own process group, so stopping it also stops whatever it
spawned (a shell, a server's workers). Output goes to a log file whose last
lines are quoted when the process fails to come up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from llmscen.engine.protocol import ServiceError

LISTENING_RE = re.compile(rb"^LISTENING (.+)$", re.M)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    last = text.strip().splitlines()[-lines:]
    return "\n".join("    " + line for line in last)


class Child:
    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log

    def exit_status(self) -> str | None:
        """None while running; else how it ended, with its log's last lines."""
        code = self.proc.returncode
        if code is None:
            return None
        if code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        detail = tail(self.log, 10)
        return f"service {self.name!r} {how}" + (f"; last lines of {self.log}:\n{detail}"
                                                 if detail else "")

    def pid(self) -> int | None:
        """The process (its group's leader), None once it has exited."""
        return self.proc.pid if self.proc.returncode is None else None

    def failed(self, why: str) -> ServiceError:
        detail = tail(self.log)
        return ServiceError(f"service {self.name!r} {why}" +
                            (f"; last lines of {self.log}:\n{detail}" if detail else
                             f" (log: {self.log})"))

    async def stop(self, grace: float = 5.0) -> None:
        if self.proc.returncode is not None:
            # the leader exited on its own; what it started may still be running in its group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(self.proc.wait(), grace)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        else:
            # the leader is gone; make sure nothing it started lingers
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)


@asynccontextmanager
async def spawn(name: str, argv: Sequence[str], *, log_dir: str | None,
                env: Mapping[str, str] | None = None, cwd: str | None = None,
                shell: bool = False) -> AsyncIterator[Child]:
    """Start a child in its own session; stop it (and its group) on exit."""
    directory = Path(log_dir) if log_dir else Path(tempfile.gettempdir())
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / f"service-{name}.log"
    full_env = {**os.environ, **(env or {})}
    with open(log, "wb") as out:
        try:
            if shell:
                proc = await asyncio.create_subprocess_shell(
                    argv[0], stdout=out, stderr=asyncio.subprocess.STDOUT,
                    stdin=asyncio.subprocess.DEVNULL, env=full_env, cwd=cwd,
                    start_new_session=True)
            else:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdout=out, stderr=asyncio.subprocess.STDOUT,
                    stdin=asyncio.subprocess.DEVNULL, env=full_env, cwd=cwd,
                    start_new_session=True)
        except OSError as exc:
            raise ServiceError(f"service {name!r} could not start {argv[0]!r}: "
                               f"{exc.strerror or exc}") from None
    child = Child(name, proc, log)
    try:
        yield child
    finally:
        await child.stop()


class Restartable:
    """A child that may be stopped and started again on the same address (a fault in the
    plan); while it is stopped on purpose, it is not reported as having died."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: str | None,
                 ready: Callable[[Child], Awaitable[None]], *,
                 env: Mapping[str, str] | None = None, cwd: str | None = None,
                 shell: bool = False) -> None:
        self.name, self.argv, self.log_dir, self.ready = name, list(argv), log_dir, ready
        self.env, self.cwd, self.shell = env, cwd, shell
        self.child: Child | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self.stopped = False

    async def start(self) -> None:
        stack = contextlib.AsyncExitStack()
        self.child = await stack.enter_async_context(spawn(
            self.name, self.argv, log_dir=self.log_dir, env=self.env, cwd=self.cwd,
            shell=self.shell))
        self._stack = stack
        try:
            await self.ready(self.child)
        except BaseException:
            await self.stop()
            raise
        self.stopped = False

    async def stop(self) -> None:
        self.stopped = True
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    def exit_status(self) -> str | None:
        if self.stopped or self.child is None:
            return None
        return self.child.exit_status()

    def pid(self) -> int | None:
        """The running child's process (its group's leader), None while stopped."""
        if self.stopped or self.child is None or self.child.proc.returncode is not None:
            return None
        return self.child.proc.pid


async def wait_listening(child: Child, timeout: float) -> dict[str, str]:
    """Wait for the `LISTENING URL` or `LISTENING scheme=URL ...` line our servers print.

    Returns URLs by scheme; a bare URL is `http`.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = LISTENING_RE.search(child.log.read_bytes())
        if m:
            urls = {}
            for item in m.group(1).decode().split():
                scheme, sep, value = item.partition("=")
                urls[scheme if sep else "http"] = value if sep else item
            return urls
        if child.proc.returncode is not None:
            raise child.failed(f"exited with code {child.proc.returncode} before listening")
        await asyncio.sleep(0.02)
    raise child.failed(f"did not start listening within {timeout:g}s")


async def wait_ready(child: Child, url: str, *, http_path: str | None, timeout: float) -> None:
    """Poll until `url` + `http_path` answers 2xx, or the TCP port accepts connections."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if child.proc.returncode is not None:
                raise child.failed(f"exited with code {child.proc.returncode} before it was "
                                   "ready")
            try:
                if http_path is not None:
                    async with session.get(url.rstrip("/") + http_path,
                                           timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if 200 <= resp.status < 300:
                            return
                        last = f"HTTP {resp.status}"
                else:
                    host, port = _host_port(url)
                    _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
                    writer.close()
                    return
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                last = type(exc).__name__
            await asyncio.sleep(0.1)
    raise child.failed(f"was not ready within {timeout:g}s (last check: {last})")


def _host_port(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    return host or "127.0.0.1", int(port)
