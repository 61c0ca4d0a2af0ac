"""Servers that misbehave in one way each, for the contract suite (contract.py).

They speak just enough HTTP/1.1 to be believed and no protocol of their own,
so they test any plugin's failure paths without the author's cooperation.
Each records the raw bytes it received (to tell whether a secret was sent)
and signals when a request has arrived (to cancel a send mid-flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import TracebackType

import orjson

MODES = ("silent", "stall", "close", "cut", "garbage", "junk200", "echo500")
DESCRIPTIONS = {
    "silent": "accepts the request and never answers",
    "stall": "sends a 200 header and then nothing",
    "close": "closes the connection without answering",
    "cut": "sends a 200 header announcing 1000 bytes, 12 of them, then closes",
    "garbage": "answers with bytes that are not HTTP, then closes",
    "junk200": "answers 200 with a body that is neither JSON, SSE nor NDJSON",
    "echo500": "answers HTTP 500 with the whole request (headers and body) echoed in the body "
               "and a response header",
}
JUNK = b"{this is not json\n<html>nor SSE</html>\n\x00\x01 nor NDJSON\n"


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HostileServer:
    """`async with HostileServer("stall") as server:` serves on `server.url` until exit."""

    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        self.mode = mode
        self.url = ""
        self.received = bytearray()
        self.request_arrived = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def description(self) -> str:
        return f"a server that {DESCRIPTIONS[self.mode]}"

    async def __aenter__(self) -> HostileServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while request := await self._read_request(reader):
                if not await self._answer(reader, writer, request):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _read_request(self, reader: asyncio.StreamReader) -> bytes:
        """One request's bytes (headers, then a Content-Length or chunked body); b"" at EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            self.received += exc.partial
            return b""
        body = b""
        lowered = head.lower()
        for line in lowered.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                body = await reader.readexactly(int(line.split(b":", 1)[1]))
        if b"transfer-encoding: chunked" in lowered:
            body = await reader.readuntil(b"0\r\n\r\n")
        request = head + body
        self.received += request
        self.request_arrived.set()
        return request

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      request: bytes) -> bool:
        """Misbehave; True to keep the connection for another request."""
        mode = self.mode
        if mode == "silent":
            await reader.read()     # until the client gives up
            return False
        if mode == "stall":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            await writer.drain()
            await reader.read()
            return False
        if mode == "close":
            return False
        if mode == "cut":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"partial\": ")
        elif mode == "garbage":
            writer.write(b"\x16\x03\x01\x00 this is not HTTP at all\r\n\r\n")
        elif mode == "junk200":
            writer.write(response(200, "OK", JUNK, "application/json"))
            await writer.drain()
            return True
        else:   # echo500
            echoed = request.decode("utf-8", "replace")
            body = orjson.dumps({"error": {"message": f"you sent: {echoed}"},
                                 "message": echoed, "detail": echoed})
            flat = " ".join(echoed.split())[:2000].encode("ascii", "replace")
            writer.write(response(500, "Internal Server Error", body, "application/json",
                                  extra=b"X-Echo: " + flat + b"\r\n"))
            await writer.drain()
            return True
        await writer.drain()
        return False


def response(status: int, reason: str, body: bytes, content_type: str,
             extra: bytes = b"") -> bytes:
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n").encode() + extra + b"\r\n" + body
