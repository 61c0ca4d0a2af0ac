"""Serve an aiohttp app on port 0 in a background thread, for plugin tests.

The contract suite (contract.py) runs each test in its own `asyncio.run`, and
`llmscen run` in a subprocess has its own process: a fake server for either
has to live on a loop of its own that outlives them, hence a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web


@contextlib.contextmanager
def serve_in_thread(make_app: Callable[[], web.Application], host: str = "127.0.0.1",
                    name: str = "test-server") -> Iterator[str]:
    """Start `make_app()` on a free port; yield its base URL (`http://127.0.0.1:PORT`).

    The app is made inside the server's thread, so anything it creates on
    startup belongs to that thread's event loop.
    """
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        runner = web.AppRunner(make_app(), access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, 0)
            await site.start()
            state["url"] = f"http://{host}:{runner.addresses[0][1]}"
            state["loop"] = asyncio.get_running_loop()
            state["stop"] = stop = asyncio.Event()
            ready.set()
            await stop.wait()
        finally:
            await runner.cleanup()

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced to the waiting caller
            state["error"] = exc
            ready.set()

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    if not ready.wait(10) or "error" in state:
        raise RuntimeError(f"{name} did not start: {state.get('error')!r}")
    try:
        yield state["url"]
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(10)
