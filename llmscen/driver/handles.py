"""Where workers run: in the driver's own event loop, or each in a local process (or in a
Ray actor: driver/cluster.py's `ActorHandle`).

A handle takes commands (`send`) and delivers the worker's reports to the
driver's queue; `alive()` says whether the worker can still report. Every kind
runs the same `Worker` with the same messages (driver/messages.py).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
from typing import Any, Protocol

from llmscen.compile.plan import Plan
from llmscen.driver import messages as m
from llmscen.driver.worker import Worker

log = logging.getLogger(__name__)


class Handle(Protocol):
    index: int

    def send(self, command: m.Command) -> None: ...
    def alive(self) -> bool: ...
    def exit_description(self) -> str: ...
    async def close(self) -> None: ...


class InProcess:
    """A worker in the driver's event loop (`--workers 1`): nothing to lose, no snapshots."""

    def __init__(self, plan: Plan, registry: Any, reports: asyncio.Queue[m.Report], *,
                 origin_ns: int, log_path: str | None) -> None:
        self.index = 0
        self.commands: asyncio.Queue[m.Command] = asyncio.Queue()
        self.worker = Worker(plan, 0, 1, registry, reports.put_nowait, origin_ns=origin_ns,
                             log_path=log_path, snapshots=False)
        self.task = asyncio.create_task(self.worker.serve(self.commands))

    def send(self, command: m.Command) -> None:
        self.commands.put_nowait(command)

    def alive(self) -> bool:
        return not self.task.done()

    def exit_description(self) -> str:
        return "ended"

    async def close(self) -> None:
        if not self.task.done():
            self.send(m.Finish())
        await asyncio.gather(self.task, return_exceptions=True)


def _process_main(plan: Plan, index: int, count: int, origin_ns: int, log_path: str | None,
                  commands: Any, reports: Any, parent: int) -> None:
    """A worker process: obey the driver; stop with it (signals are the driver's to handle)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from llmscen.engine.loop import run_loop
    from llmscen.engine.registry import Registry

    async def main() -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[m.Command] = asyncio.Queue()

        def pump() -> None:
            while True:
                try:
                    command = commands.get(timeout=1.0)
                except queue.Empty:
                    if os.getppid() != parent:      # the driver is gone: stop, keep nothing
                        loop.call_soon_threadsafe(inbox.put_nowait, m.Stop(abandon=True))
                        loop.call_soon_threadsafe(inbox.put_nowait, m.Finish())
                        return
                    continue
                except (EOFError, OSError):
                    return
                loop.call_soon_threadsafe(inbox.put_nowait, command)
                if isinstance(command, m.Finish):
                    return

        threading.Thread(target=pump, name="llmscen-commands", daemon=True).start()
        worker = Worker(plan, index, count, Registry.discover(), reports.put,
                        origin_ns=origin_ns, log_path=log_path)
        await worker.serve(inbox)

    try:
        run_loop(main)
    finally:
        reports.close()
        reports.join_thread()      # everything sent reaches the driver before we exit


class Process:
    """A worker in its own process (`--workers N`)."""

    def __init__(self, ctx: Any, plan: Plan, index: int, count: int, reports: Any, *,
                 origin_ns: int, log_path: str | None) -> None:
        self.index = index
        self.commands = ctx.Queue()
        self.proc = ctx.Process(target=_process_main, name=f"llmscen-worker-{index}",
                                daemon=True, args=(plan, index, count, origin_ns, log_path,
                                                   self.commands, reports, os.getpid()))
        self.proc.start()
        log.info("worker %d: process pid %d", index, self.proc.pid)

    def send(self, command: m.Command) -> None:
        self.commands.put(command)

    def alive(self) -> bool:
        return bool(self.proc.is_alive())

    def exit_description(self) -> str:
        code = self.proc.exitcode
        if code is None:
            return "still running"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with code {code}"

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.proc.join, 10)
        if self.proc.is_alive():
            self.proc.kill()
            await loop.run_in_executor(None, self.proc.join, 5)


class ReportPump:
    """Moves reports from a multiprocessing queue into the driver's asyncio queue."""

    def __init__(self, reports: Any, into: asyncio.Queue[m.Report]) -> None:
        self.reports = reports
        self.into = into
        self.loop = asyncio.get_running_loop()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="llmscen-reports", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                report = self.reports.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError):
                return
            self.loop.call_soon_threadsafe(self.into.put_nowait, report)

    async def close(self) -> None:
        # let reports already in the pipe through, then stop
        while True:
            try:
                report = self.reports.get_nowait()
            except (queue.Empty, EOFError, OSError):
                break
            self.into.put_nowait(report)
        self.stopping.set()
        await asyncio.get_running_loop().run_in_executor(None, self.thread.join, 2)


def spawn_processes(plan: Plan, count: int, reports_into: asyncio.Queue[m.Report], *,
                    origin_ns: int, log_path: str | None) -> tuple[list[Process], ReportPump]:
    ctx = mp.get_context("spawn")
    reports = ctx.Queue()
    handles = [Process(ctx, plan, i, count, reports, origin_ns=origin_ns, log_path=log_path)
               for i in range(count)]
    return handles, ReportPump(reports, reports_into)
