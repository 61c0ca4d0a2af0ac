"""The event loop a run uses: uvloop when installed, else asyncio's own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_loop(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `factory()` to completion on a fresh loop and return its value."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(factory())
    runner = getattr(asyncio, "Runner", None)
    if runner is None:   # Python 3.10: no asyncio.Runner
        return uvloop.run(factory())
    with runner(loop_factory=uvloop.new_event_loop) as r:
        return r.run(factory())
