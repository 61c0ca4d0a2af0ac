"""Streamed calls of the `triton` runner: gRPC bidirectional streams, reused.

A `StreamPool` keeps idle streams; a call takes one (or opens one), sends its
request, reads responses until the one flagged `triton_final_response` (or the
only response of a non-decoupled model) and gives the stream back. One call at
a time per stream, so every response on it is the call's own, errors
included. A stream that saw an error, a timeout or a cancellation is closed,
never reused. Reuse saves opening an HTTP/2 stream per call (≈0.6 ms of TTFT
and client CPU on a loopback).

Each response with outputs is a content chunk, stamped once on arrival.
Requests go out serialized (wire.py), one `ModelStreamInfer` call per lane.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from llmscen.engine.protocol import Exchange
from llmscen.runners.triton.wire import GrpcWire, bytes_elements, tensors_of

_T = TypeVar("_T")


class StreamLane:
    """One long-lived `ModelStreamInfer` call; requests are written to it directly."""

    def __init__(self, wire: GrpcWire) -> None:
        import grpc

        self._call = wire.stream()
        self._eof = grpc.aio.EOF

    async def next(self) -> Any:
        """The next `ModelStreamInferResponse`; StopAsyncIteration when the stream ended."""
        message = await self._call.read()
        if message is self._eof:
            raise StopAsyncIteration
        return message

    async def send(self, request: bytes) -> None:
        with contextlib.suppress(asyncio.InvalidStateError):   # over already: read says why
            await self._call.write(request)

    def close(self) -> None:
        self._call.cancel()


class StreamPool:
    """Idle streams of one gRPC channel, and the reading of one streamed call."""

    def __init__(self, wire: GrpcWire, max_idle: int = 64) -> None:
        self._wire = wire
        self._idle: list[StreamLane] = []
        self._max_idle = max_idle

    async def call(self, request: bytes, ex: Exchange, *, decoupled: bool,
                   text_output: str | None, timeout: float) -> None:
        lane = self._idle.pop() if self._idle else StreamLane(self._wire)
        reusable = False
        try:
            reusable = await _within(timeout, _read(lane, request, ex, decoupled, text_output))
        finally:
            if reusable and len(self._idle) < self._max_idle:
                self._idle.append(lane)
            else:
                lane.close()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


async def _read(lane: StreamLane, request: bytes, ex: Exchange, decoupled: bool,
                text_output: str | None) -> bool:
    """Send on `lane` and read until the final response; True if the lane ended clean.

    A content response's text stays raw bytes until the call ends and is decoded once
    (a character split across two tokens decodes whole)."""
    texts: list[bytes] = []
    others: list[str] = []      # text from a text output that is not BYTES
    itl, received, last = ex.itl_us, 0, 0
    clean, last_response = False, None
    ex.sent_ns = time.perf_counter_ns()
    try:
        await lane.send(request)
        while True:
            try:
                message = await lane.next()
            except StopAsyncIteration:
                ex.fail("protocol", "the server closed the stream before the final response")
                break
            now = time.perf_counter_ns()
            if not ex.first_byte_ns:
                ex.first_byte_ns = now
            ex.end_ns = now
            if message.error_message:
                ex.fail("http", message.error_message)
                break
            response = message.infer_response
            received += response.ByteSize()
            outputs = response.outputs
            if outputs:
                if last:
                    itl.append((now - last) // 1000)
                else:
                    ex.first_content_ns = now
                last = now
                ex.chunks += 1
                last_response = response
                if text_output is not None:
                    _keep_text(response, text_output, texts, others)
            flag = response.parameters.get("triton_final_response")
            if (flag is not None and flag.bool_param) or not decoupled:
                clean = True
                break
    finally:
        if last_response is not None:   # the tensors of the last content response
            ex.tensors = tensors_of(last_response)
        ex.bytes_received = received
        ex.text = "".join(others) if others else \
            b"".join(e for part in texts for e in bytes_elements(part)).decode("utf-8", "replace")
        ex.output_tokens = ex.chunks
        ex.tokens_estimated = True
    if clean:
        ex.status = 200
    return clean


def _keep_text(response: Any, name: str, texts: list[bytes], others: list[str]) -> None:
    for i, output in enumerate(response.outputs):
        if output.name != name:
            continue
        if output.datatype == "BYTES" and i < len(response.raw_output_contents) and not others:
            texts.append(response.raw_output_contents[i])
        else:   # not raw BYTES: decode it now, the way as_numpy would read it
            if texts:
                others.append(b"".join(e for part in texts for e in bytes_elements(part))
                              .decode("utf-8", "replace"))
                texts.clear()
            array = tensors_of(response).get(name)
            if array is not None:
                others.append(decode_text(array))
        return


def decode_text(array: Any) -> str:
    """A BYTES tensor's elements as one string."""
    return "".join(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                   for v in array.reshape(-1))


async def _within(seconds: float, work: Awaitable[_T]) -> _T:
    """`work` with a deadline (asyncio.timeout where there is one: no extra task)."""
    timeout = getattr(asyncio, "timeout", None)
    if timeout is None:   # Python 3.10
        return await asyncio.wait_for(work, seconds)
    async with timeout(seconds):
        return await work
