"""Reads of the openai runner's own HTTP path carry the kernel's receive time.

A server thread writes each piece of a response with the moments just before and after
its `sendall`; the client's loop is stalled while a piece arrives. The piece's stamp
must lie between those moments, though the loop read it long after.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from llmscen.runners import stamped
from llmscen.runners.openai_transport import Reply, Transport, split_url

pytestmark = pytest.mark.skipif(not stamped.AVAILABLE, reason="kernel receive stamps: Linux")

HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n")
STALL = 0.05     # s the client's loop is held after the write it waits for
GAP = 0.1        # s between the server's two body pieces (a shorter one falls in the stall)
SLACK = 1_000_000   # ns: the kernel's stamp and perf_counter agree to tens of µs here


def piece(text: bytes) -> bytes:
    data = b"data: " + text + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


class PacedServer:
    """One connection: reads a request, writes the head at once, then two pieces: the
    first when `go` is set, the second and the end `gap` s apart. Records each write's
    (before, after) sendall on perf_counter's clock, and sets `wrote[i]` after write i."""

    def __init__(self, read_body: bool = False, gap: float = GAP) -> None:
        self.gap = gap
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.go = threading.Event()
        self.wrote = [threading.Event() for _ in range(3)]
        self.sent: list[tuple[int, int]] = []
        self.body = b""
        self.read_body = read_body
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _send(self, conn: socket.socket, data: bytes) -> None:
        before = time.perf_counter_ns()
        conn.sendall(data)
        self.sent.append((before, time.perf_counter_ns()))
        self.wrote[len(self.sent) - 1].set()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # else Nagle holds a piece
        with conn:
            got = b""
            while b"\r\n\r\n" not in got:
                got += conn.recv(65536)
            head, _, body = got.partition(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            while len(body) < length:
                if self.read_body:
                    time.sleep(0.001)   # a slow reader: the client's socket fills up
                body += conn.recv(65536)
            self.body = body
            conn.sendall(HEAD)
            if not self.go.wait(10):
                return
            self._send(conn, piece(b"one"))
            time.sleep(self.gap)
            self._send(conn, piece(b"two"))
            time.sleep(self.gap)
            self._send(conn, b"0\r\n\r\n")

    def close(self) -> None:
        self.go.set()
        self.thread.join(10)
        self.listener.close()


@pytest.fixture
def server() -> Iterator[PacedServer]:
    srv = PacedServer()
    yield srv
    srv.close()


def request(port: int, body: bytes = b"{}") -> bytes:
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (port, len(body), body))


async def fetch(srv: PacedServer, body: bytes = b"{}", kernel: bool = True,
                hold: int = 0) -> tuple[list[tuple[bytes, int, int]], Reply]:
    """Each sink call's (bytes, stamp, moment of the call). The loop is held from the
    head until the server's write `hold` is done, and STALL s more: that write waits in
    the socket, whatever the machine's load."""
    split = split_url(f"http://127.0.0.1:{srv.port}/v1/chat/completions")
    assert split is not None
    reads: list[tuple[bytes, int, int]] = []

    def on_headers(reply: Reply, stamp: int) -> None:
        srv.go.set()
        assert srv.wrote[hold].wait(10)
        time.sleep(STALL)           # the client is busy: the piece waits in the socket

    wire = Transport(kernel_timestamps=kernel)
    try:
        reply = await wire.send(split[0], request(srv.port, body),
                                lambda data, stamp: reads.append(
                                    (data, stamp, time.perf_counter_ns())),
                                10, on_headers)
    finally:
        wire.close()
    return reads, reply


def test_a_piece_read_late_keeps_the_moment_it_arrived(server: PacedServer) -> None:
    reads, reply = asyncio.run(fetch(server))
    assert reply.status == 200 and b"".join(r[0] for r in reads) == (
        b"data: one\n\ndata: two\n\n")
    (one_before, one_after), (two_before, two_after), _ = server.sent
    first = next(r for r in reads if b"one" in r[0])
    second = next(r for r in reads if b"two" in r[0])
    assert first[2] - one_after >= STALL * 1e9          # it was read late ...
    assert one_before - SLACK <= first[1] <= one_after + SLACK     # ... but stamped on arrival
    assert two_before - SLACK <= second[1] <= two_after + SLACK
    # so the gap between the pieces is the server's, not what was left of the stall
    gap = second[1] - first[1]
    assert two_before - one_after - 2 * SLACK <= gap <= two_after - one_before + 2 * SLACK


def test_a_read_that_took_two_pieces_carries_the_later_arrival() -> None:
    srv = PacedServer(gap=STALL / 5)
    try:
        reads, _ = asyncio.run(fetch(srv, hold=2))     # both pieces and the end wait
    finally:
        srv.close()
    both = next(r for r in reads if b"one" in r[0])
    assert b"two" in both[0]            # one read ...
    end_before, end_after = srv.sent[-1]
    assert end_before - SLACK <= both[1] <= end_after + SLACK  # ... stamped when its last byte came


def test_without_kernel_timestamps_a_read_is_stamped_when_it_is_read(
        server: PacedServer) -> None:
    reads, _ = asyncio.run(fetch(server, kernel=False))    # `kernel_timestamps: false`
    first = next(r for r in reads if b"one" in r[0])
    (_, one_after), *_ = server.sent
    assert first[1] - one_after >= STALL * 1e9          # the stall is in the stamp


def test_a_wall_clock_out_of_step_falls_back_to_the_read_time(
        server: PacedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stamped, "_wall", lambda: time.time_ns() - 3600 * 10**9)
    reads, _ = asyncio.run(fetch(server))
    first = next(r for r in reads if b"one" in r[0])
    (_, one_after), *_ = server.sent
    assert first[1] - one_after >= STALL * 1e9          # the read's own moment
    assert first[1] <= first[2]


def test_a_request_larger_than_the_socket_takes_is_sent_whole() -> None:
    srv = PacedServer(read_body=True)
    try:
        body = bytes(range(256)) * (16 * 1024)          # 4 MiB: many partial sends
        reads, reply = asyncio.run(fetch(srv, body))
    finally:
        srv.close()
    assert reply.status == 200 and srv.body == body
    assert b"".join(r[0] for r in reads) == b"data: one\n\ndata: two\n\n"
