"""A connection pool that tells a request whether it got a reused connection.

Servers may close an idle keep-alive connection at any moment (llama.cpp does
after every streamed reply). A request that fails on such a connection before
any response byte never reached the server's handler, so sending it again on
a new connection is safe; one that fails on a new connection is a real error.
aiohttp only retries idempotent methods and does not say which case happened.
"""

from __future__ import annotations

import contextvars
import weakref
from typing import Any

import aiohttp

# Set while a request picks its connection; per task, so concurrent requests don't mix.
_REUSED: contextvars.ContextVar[bool] = contextvars.ContextVar("llmscen_reused", default=False)

# Failures that a closed pooled connection produces (connect errors are told apart below).
# ClientConnectionResetError ("Cannot write to closing transport") is new in aiohttp 3.10.
STALE_CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    aiohttp.ServerDisconnectedError, aiohttp.ClientOSError,
    getattr(aiohttp, "ClientConnectionResetError", aiohttp.ClientOSError))


class ReuseTrackingConnector(aiohttp.TCPConnector):
    """A TCPConnector that marks, per task, whether `connect` handed out a pooled connection."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._used: weakref.WeakSet[Any] = weakref.WeakSet()

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
        conn = await super().connect(req, traces, timeout)
        proto = conn.protocol
        used = self._used
        if proto in used:
            _REUSED.set(True)
        else:
            used.add(proto)
        return conn


def forget_reuse() -> None:
    """Call before each attempt; `connect` sets the flag again if it reuses."""
    _REUSED.set(False)


def was_reused() -> bool:
    """Whether this task's last request went out on a pooled connection."""
    return _REUSED.get()


def is_stale_connection(exc: BaseException) -> bool:
    """A failure that a pooled connection closed by the server would cause."""
    return isinstance(exc, STALE_CONNECTION_ERRORS) \
        and not isinstance(exc, aiohttp.ClientConnectorError)
