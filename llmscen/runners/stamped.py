"""TCP connections whose reads carry the kernel's receive time (Linux).

A read stamped when the event loop gets to it is late by the loop's wake-up and by all
it did first: against 16 paced streams on a 2-core VM ~40 µs at the median, 0.3 ms at
p99 and milliseconds at worst (benchmarks/read_delay.py). With SO_TIMESTAMPNS the kernel stamps
each segment as it arrives; a read carries the stamp of the last segment it took,
turned into perf_counter's clock. The socket is read with `recvmsg` from a reader
callback (the loop's own transports cannot hand over ancillary data), and written
directly, with a writer callback only for what the socket did not take at once.

Elsewhere (other systems, TLS, `kernel_timestamps: false`) the loop's transports are
used and reads are stamped when they are handed over, as before.
"""

from __future__ import annotations

import asyncio
import platform
import socket
import struct
import sys
import time
from typing import Protocol

_clock = time.perf_counter_ns
_wall = time.time_ns

# SO_TIMESTAMPNS is 35 wherever Linux uses asm-generic/socket.h; Python has no name for it.
SO_TIMESTAMPNS = 35
AVAILABLE = sys.platform == "linux" and platform.machine() in {
    "x86_64", "i686", "aarch64", "arm64", "armv7l", "riscv64", "ppc64le", "s390x"}
_TIMESPEC = struct.Struct("@ll")    # struct timespec: seconds, nanoseconds (native long)
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)
# Python allocates a read's whole size, then shrinks it: below malloc's mmap threshold
# (128 KiB) that costs ~2 µs a read less than uvloop's 256 KiB.
_READ = 64 * 1024


class StampedProtocol(Protocol):
    def data_received_at(self, data: bytes, stamp_ns: int) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...


class StampedSocket:
    """The transport of one connected non-blocking TCP socket: `write` and `close` as an
    asyncio transport's; reads go to `protocol.data_received_at(data, stamp_ns)`, the end
    (EOF, an error or `close`) to `protocol.connection_lost` once, from the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol: StampedProtocol) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._pending = bytearray()     # written but not yet taken by the socket
        self._closed = False
        self._last = 0                  # stamps of one connection never go back
        self._recvmsg = sock.recvmsg
        loop.add_reader(self._fd, self._readable)

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        if self._pending:
            self._pending += data
            return
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._lose(exc)
            return
        if sent < len(data):
            self._pending += data[sent:]
            self._loop.add_writer(self._fd, self._writable)

    def close(self) -> None:
        self._lose(None)

    def _writable(self) -> None:
        try:
            sent = self._sock.send(self._pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lose(exc)
            return
        del self._pending[:sent]
        if not self._pending:
            self._loop.remove_writer(self._fd)

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self._recvmsg(_READ, _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lose(exc)
            return
        if not data:
            self._lose(None)
            return
        # the kernel stamps on the wall clock: shift by the offset of this moment, read
        # with the two clocks back to back
        wall = _wall()
        stamp = now = _clock()
        if ancillary:
            raw = ancillary[0][2]
            if len(raw) == _TIMESPEC.size:
                seconds, nanoseconds = _TIMESPEC.unpack(raw)
                kernel = seconds * 1_000_000_000 + nanoseconds - wall + now
                if self._last <= kernel <= now:     # else the wall clock was stepped
                    stamp = kernel
        self._last = stamp
        self._protocol.data_received_at(data, stamp)

    def _lose(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        if self._pending:
            self._loop.remove_writer(self._fd)
            self._pending.clear()
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, exc)


async def connect(loop: asyncio.AbstractEventLoop, host: str, port: int,
                  protocol: StampedProtocol) -> StampedSocket:
    """A StampedSocket to the first address of `host` that accepts; OSError when none does."""
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   proto=socket.IPPROTO_TCP)
    errors: list[OSError] = []
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        except BaseException:
            sock.close()
            raise
        return StampedSocket(loop, sock, protocol)
    if not errors:
        raise OSError(f"{host} has no address")
    raise errors[-1] if len({str(e) for e in errors}) == 1 else OSError(
        "; ".join(str(e) for e in errors))
