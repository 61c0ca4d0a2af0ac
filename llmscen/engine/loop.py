"""The event loop a run uses: uvloop when installed, else asyncio's own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


def run_loop(factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `factory()` to completion on a fresh loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(factory())
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(factory())
