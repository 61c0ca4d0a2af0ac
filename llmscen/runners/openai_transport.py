"""HTTP/1.1 for the openai runner's requests, each read handled where it arrives.

aiohttp hands a body to the request's coroutine one read at a time; against a
server that paces its tokens every SSE event then costs a task wake-up and a
trip through aiohttp's stream reader (~30 µs), more than the event's parsing.
Here a connection is an asyncio Protocol: each read comes with its stamp (the
kernel's receive time over plain TCP on Linux, stamped.py; else the moment it is
handed over), goes to httptools' parser (llhttp, Node.js's) and its body straight
to the request's sink, so a streamed response is split, decoded and timed as it
arrives and its coroutine wakes once, at the end.

Keep-alive per origin, an optional connection limit, TLS through the loop.
A request that fails on a pooled connection before any response byte never
reached the server's handler (llama.cpp closes a kept-alive connection after
each streamed reply): it is sent once more on a connection of its own, and
counted in `reconnects`. Failures leave as `TransportError` with their error
class; timeouts and cancellation as asyncio's own exceptions.

Redirects, proxies and other URL schemes stay with aiohttp (openai.py).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httptools

from llmscen.runners import stamped
from llmscen.runners.guard import describe
from llmscen.runners.http_errors import DESCRIPTORS_EXHAUSTED

Sink = Callable[[bytes, int], None]    # (body bytes, stamp of their read); may raise
_T = TypeVar("_T")
_clock = time.perf_counter_ns
_DECODERS = {b"gzip": 16 + zlib.MAX_WBITS, b"x-gzip": 16 + zlib.MAX_WBITS,
             b"deflate": zlib.MAX_WBITS}


class TransportError(Exception):
    """A failed exchange, classified: `error` is the Exchange error class."""

    def __init__(self, error: str, message: str, *, stale: bool = False) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.stale = stale      # lost before any response byte, on a pooled connection


class Origin:
    """Where requests go: scheme, host, port and the bytes of the request line's target."""

    __slots__ = ("host", "key", "port", "tls")

    def __init__(self, tls: bool, host: str, port: int) -> None:
        self.tls, self.host, self.port = tls, host, port
        self.key = (tls, host, port)


def split_url(url: str) -> tuple[Origin, str, str] | None:
    """(origin, Host header value, request target) of an http(s) URL; None for anything
    this transport leaves to aiohttp (other schemes, credentials in the URL, no host)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    tls = parts.scheme == "https"
    default = 443 if tls else 80
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    header = shown if port in (None, default) else f"{shown}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Origin(tls, host, port or default), header, target


class Reply:
    """What came back: status, headers (lowercased names) and, unless a sink took it, the body."""

    __slots__ = ("body", "content_type", "end_ns", "headers", "reason", "status", "streamed")

    def __init__(self) -> None:
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.content_type = ""
        self.body: list[bytes] = []
        self.streamed = False       # the body went to the sink
        self.end_ns = 0


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; one request at a time. Over a StampedSocket (plain TCP
    on Linux) a read is stamped with the kernel's receive time, else when it is handed over."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | stamped.StampedSocket | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.served = 0             # responses completed on it
        self.closed = False
        self.keep = False
        self._future: asyncio.Future[Reply] | None = None
        self._live = False          # a request is waiting for its response
        self._reply = Reply()
        self._sink: Sink | None = None
        self._on_headers: Callable[[Reply, int], None] | None = None
        self._sinking = False
        self._held: list[bytes] = []
        self._decoder: Any = None
        self._now = 0
        self._got_bytes = False
        self._headers_done = False
        self._delimited = False     # Content-Length or chunked: EOF before the end is a cut
        self._raw_headers: list[tuple[bytes, bytes]] = []

    # -- the request side ----------------------------------------------------------------

    def request(self, data: bytes, sink: Sink | None, on_headers: Callable[[Reply, int], None],
                loop: asyncio.AbstractEventLoop) -> asyncio.Future[Reply]:
        """Write one request; the future resolves when its response has ended."""
        self._future = future = loop.create_future()
        self._live = True
        self._reply = Reply()
        self._sink = sink
        self._on_headers = on_headers
        self._sinking = self._got_bytes = self._headers_done = self._delimited = False
        self.keep = False
        self._decoder = None
        self._held = []
        self._raw_headers = []
        assert self.transport is not None
        self.transport.write(data)
        return future

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport | stamped.StampedSocket) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.data_received_at(data, _clock())

    def data_received_at(self, data: bytes, stamp_ns: int) -> None:
        if not self._live:
            self.close()            # bytes nobody asked for: the connection is not usable
            return
        self._now = stamp_ns
        self._got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            self._fail(exc.__context__ or exc)
        except httptools.HttpParserError as exc:
            stage = "body" if self._headers_done else "head"
            self._fail(TransportError("protocol", f"malformed response: the {stage} is not "
                                                  f"HTTP/1.1 ({exc})"))
        held = self._held
        if held:                        # this read's body, handed over at once
            body = held[0] if len(held) == 1 else b"".join(held)
            held.clear()
            if self._live and self._sink is not None:
                try:
                    self._sink(body, self._now)
                except Exception as exc:    # the sink refused the stream: stop reading it
                    self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        future = self._future
        if future is None or future.done():
            return
        if self._headers_done and not self._delimited:
            self._complete()        # the body of a response without length ends at EOF
            return
        why = describe(exc) if exc else "the server closed the connection"
        if self._headers_done:
            self._fail(TransportError("protocol", f"response cut off: {why}"))
        else:
            # nothing of a response yet: a pooled connection may simply have been closed
            stale = self.served > 0 and not self._got_bytes
            self._fail(TransportError("connect", f"connection lost before a response: {why}",
                                      stale=stale))

    # -- httptools callbacks -------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self._reply.reason = status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        reply = self._reply
        status = reply.status = self.parser.get_status_code()
        headers: dict[str, str] = {}
        for raw_name, raw_value in self._raw_headers:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if status < 200:            # 1xx: an interim response, the real one follows
            self._raw_headers = []
            return
        reply.headers = headers
        reply.content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        self._headers_done = True
        self._delimited = "content-length" in headers or "chunked" in headers.get(
            "transfer-encoding", "").lower()
        encoding = headers.get("content-encoding", "").strip().lower().encode()
        if encoding and encoding != b"identity":
            wbits = _DECODERS.get(encoding)
            if wbits is None:
                self._fail(TransportError("protocol", "response in an unsupported "
                                          f"Content-Encoding: {encoding.decode()!r}"))
                return
            self._decoder = zlib.decompressobj(wbits)
        reply.end_ns = self._now
        self._sinking = reply.streamed = (self._sink is not None and 200 <= status < 300
                                          and reply.content_type != "application/json")
        if self._on_headers is not None:
            self._on_headers(reply, self._now)

    def on_body(self, body: bytes) -> None:
        if not self._live:
            return
        if self._decoder is not None:
            try:
                body = self._decoder.decompress(body)
            except zlib.error as exc:
                self._fail(TransportError("protocol", f"response cut off: cannot decompress "
                                                      f"the body: {exc}"))
                return
        if self._sinking:
            self._held.append(body)     # one sink call per read, not per HTTP chunk
        else:
            self._reply.body.append(body)

    def _hand_over(self) -> None:
        held = self._held
        body = held[0] if len(held) == 1 else b"".join(held)
        held.clear()
        if not self._live or self._sink is None:
            return
        try:
            self._sink(body, self._now)
        except Exception as exc:        # the sink refused the stream: stop reading it
            self._fail(exc)

    def on_message_complete(self) -> None:
        if self._reply.status and self._reply.status < 200:
            return                  # the end of an interim response
        self.keep = self.parser.should_keep_alive()
        self._complete()

    # -- endings -------------------------------------------------------------------------

    def _complete(self) -> None:
        future = self._future
        if future is None or future.done():
            return
        if self._decoder is not None:
            tail = self._decoder.flush()
            self._decoder = None
            if tail:
                self.on_body(tail)
        if self._held:
            self._hand_over()
            if future.done():
                return
        self.served += 1
        self._live = False
        self._reply.end_ns = self._now or _clock()
        future.set_result(self._reply)

    def _fail(self, exc: BaseException) -> None:
        future = self._future
        self._live = False
        self.close()
        if future is not None and not future.done():
            self._reply.end_ns = self._now or _clock()
            future.set_exception(exc)


class Transport:
    """A pool of HTTP/1.1 connections (per origin) and the sending of one request."""

    def __init__(self, *, limit: int = 0, keep_alive: bool = True,
                 verify_tls: bool = True, kernel_timestamps: bool = True) -> None:
        self.limit = limit          # 0: unlimited
        self.keep_alive = keep_alive
        self.verify_tls = verify_tls
        self.stamped = kernel_timestamps and stamped.AVAILABLE
        self.reconnects = 0
        self._idle: dict[tuple[bool, str, int], list[Connection]] = {}
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    async def send(self, origin: Origin, data: bytes, sink: Sink | None, timeout: float | None,
                   on_headers: Callable[[Reply, int], None]) -> Reply:
        """Send `data` (a whole request) and wait for the response, within `timeout` s.

        `on_headers(reply, stamp)` is called when the response head has arrived.
        """
        return await _within(timeout, self._send(origin, data, sink, on_headers))

    async def _send(self, origin: Origin, data: bytes, sink: Sink | None,
                    on_headers: Callable[[Reply, int], None]) -> Reply:
        loop = asyncio.get_running_loop()
        for attempt in (0, 1):
            conn = await self._acquire(origin, fresh=attempt == 1)
            done = False
            try:
                reply = await conn.request(data, sink, on_headers, loop)
                done = True
            except TransportError as exc:
                if attempt or not exc.stale:
                    raise
                self.reconnects += 1
                continue
            finally:
                self._release(origin, conn, done and attempt == 0)
            return reply
        raise AssertionError("unreachable")

    def _kept(self, origin: Origin) -> Connection | None:
        """An idle kept-alive connection to `origin` still open; closed ones are dropped."""
        idle = self._idle.get(origin.key)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
            self._forget()
        return None

    async def _acquire(self, origin: Origin, fresh: bool) -> Connection:
        if not fresh and (conn := self._kept(origin)) is not None:
            return conn
        while self.limit and self._open >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()    # pass the freed place on
                raise
            if not fresh and (conn := self._kept(origin)) is not None:
                return conn
        self._open += 1
        try:
            return await self._connect(origin)
        except BaseException:
            self._forget()
            raise

    async def _connect(self, origin: Origin) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            if origin.tls:
                _, conn = await loop.create_connection(Connection, origin.host, origin.port,
                                                       ssl=self._ssl_context(),
                                                       server_hostname=origin.host)
            elif self.stamped:
                conn = Connection()
                conn.connection_made(await stamped.connect(loop, origin.host, origin.port,
                                                           conn))
            else:
                _, conn = await loop.create_connection(Connection, origin.host, origin.port)
        except (OSError, ssl.SSLError) as exc:
            if exc.errno in DESCRIPTORS_EXHAUSTED:  # the load generator's limit, not the server
                raise TransportError("client", "too many open files on the client "
                                               f"({describe(exc)})") from None
            scheme = "https" if origin.tls else "http"
            raise TransportError("connect", f"cannot connect to {scheme}://{origin.host}:"
                                            f"{origin.port}: {describe(exc)}") from None
        return conn

    def _release(self, origin: Origin, conn: Connection, reusable: bool) -> None:
        if reusable and self.keep_alive and conn.keep and not conn.closed and not self._closed:
            self._idle.setdefault(origin.key, []).append(conn)
            self._wake()
            return
        conn.close()
        self._forget()

    def _forget(self) -> None:
        self._open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            context = ssl.create_default_context()
            if not self.verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._ssl = context
        return self._ssl

    def close(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


async def _within(seconds: float | None, work: Awaitable[_T]) -> _T:
    """`work` with a deadline (asyncio.timeout where there is one: no extra task)."""
    if not seconds:
        return await work
    timeout = getattr(asyncio, "timeout", None)
    if timeout is None:   # Python 3.10
        return await asyncio.wait_for(work, seconds)
    async with timeout(seconds):
        return await work
