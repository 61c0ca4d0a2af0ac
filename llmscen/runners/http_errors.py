"""How an aiohttp-based runner classifies a failed call (see docs/plugins.md, error classes).

Shared by the `openai`/`vllm` runners and available to plugin authors whose runner
speaks HTTP through aiohttp (the `ollama` example uses it).
"""

from __future__ import annotations

import asyncio
import errno

import aiohttp

from llmscen.engine.protocol import Exchange
from llmscen.runners.guard import describe

DESCRIPTORS_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE})


def classify_client_error(exc: Exception, ex: Exchange, timeout: float,
                          runner: str) -> tuple[str, str]:
    """(error class, message) for an exception raised while sending or reading;
    `timeout` is the limit that applied, `runner` names the plugin for internal errors."""
    if isinstance(exc, asyncio.TimeoutError):
        stage = "no response" if not ex.first_byte_ns else "response not complete"
        return "timeout", f"{stage} within {timeout:g}s"
    if (isinstance(exc, OSError) and exc.errno in DESCRIPTORS_EXHAUSTED) or \
            (isinstance(getattr(exc, "os_error", None), OSError) and \
            exc.os_error.errno in DESCRIPTORS_EXHAUSTED):  # type: ignore[attr-defined]
        # the load generator's own limit: never the server's fault
        return "client", f"too many open files on the client ({describe(exc)})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect", describe(exc)
    if isinstance(exc, aiohttp.InvalidURL):
        return "client", f"invalid URL: {exc}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "protocol", f"response cut off: {describe(exc)}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "protocol", f"malformed response: {describe(exc)}"
    if isinstance(exc, aiohttp.ClientError):
        if ex.first_byte_ns:
            return "protocol", f"connection lost during the response: {describe(exc)}"
        return "connect", f"connection lost before a response: {describe(exc)}"
    return "client", f"internal error in the {runner} runner: {describe(exc)}"
