"""The one way a runner's `send` ends: classified, never raised (but for cancellation)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from llmscen.engine.protocol import Exchange

CANCELLED = "the run stopped while the request was in flight"


async def guarded(attempt: Awaitable[None], exchange: Exchange,
                  classify: Callable[[Exception], tuple[str, str]]) -> None:
    """Await `attempt`; a bad server must not stop the run, so any exception becomes
    `exchange.error` via `classify(exc) -> (error class, message)`. Cancellation is
    recorded, then re-raised so the run can stop."""
    try:
        await attempt
    except asyncio.CancelledError:
        exchange.end_ns = exchange.end_ns or time.perf_counter_ns()
        exchange.fail("cancelled", CANCELLED)
        raise
    except Exception as exc:
        exchange.end_ns = exchange.end_ns or time.perf_counter_ns()
        error, message = classify(exc)
        exchange.fail(error, message)


def describe(exc: BaseException) -> str:
    """`Type: message`, or the type alone when the exception has no text."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
