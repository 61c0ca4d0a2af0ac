"""How the `triton` runner classifies a failed call: error class, HTTP-style status, message."""

from __future__ import annotations

import asyncio

from llmscen.runners.guard import describe

# gRPC status → HTTP status, as grpc-gateway maps them
GRPC_TO_HTTP = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501, "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
_CONNECT_HINTS = ("failed to connect", "connection refused", "connection reset", "socket closed",
                  "connect failed", "dns resolution", "broken pipe")


def classify(exc: BaseException, limit: float, got_bytes: bool) -> tuple[str, int | None, str]:
    """(error class, HTTP-style status or None, message) for an exception from tritonclient."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout", None, f"no complete response within {limit:g}s"
    code, message = _status_of(exc)
    if code is not None:
        if code == "DEADLINE_EXCEEDED":
            return "timeout", None, f"no complete response within {limit:g}s"
        lowered = message.lower()
        if code.isdigit():
            return "http", int(code), f"HTTP {code}: {message}"
        if code == "UNAVAILABLE" and (not got_bytes or any(h in lowered for h in _CONNECT_HINTS)):
            return "connect", None, f"UNAVAILABLE: {message}"
        return "http", GRPC_TO_HTTP.get(code, 500), f"{code}: {message}"
    if isinstance(exc, OSError) or type(exc).__name__.startswith(("ClientConnector",
                                                                   "ServerDisconnected",
                                                                   "ClientOS")):
        return ("protocol" if got_bytes else "connect"), None, describe(exc)
    return "client", None, f"internal error in the triton runner: {describe(exc)}"


def _status_of(exc: BaseException) -> tuple[str | None, str]:
    """The status code (gRPC name, or HTTP digits) and message of a tritonclient/grpc error."""
    status = getattr(exc, "status", None)
    if callable(status):   # tritonclient.utils.InferenceServerException
        value = status()
        get_message = getattr(exc, "message", None)
        message = get_message() if callable(get_message) else str(exc)
        if value is None:
            return None, str(message)
        return str(value).removeprefix("StatusCode."), str(message)
    code = getattr(exc, "code", None)
    if callable(code):     # grpc.aio.AioRpcError from a stream
        details = getattr(exc, "details", None)
        name = getattr(code(), "name", str(code()))
        return str(name), str(details() if callable(details) else exc)
    return None, str(exc)

