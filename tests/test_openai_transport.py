"""The openai runner's own HTTP/1.1 path gives the Exchanges the aiohttp path gives.

Generated streams (content, empty-text tokens, role, finish, usage, comments, multi-line
data, keep-alive and malformed events, CRLF or LF) are served with generated framing
(chunked, Content-Length, close-delimited), write boundaries and cuts; each is fetched
once through the runner's transport and once through aiohttp with the same SSE parser,
and every field of the two Exchanges but the timestamps must agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmscen.compile.plan import TargetPlan
from llmscen.engine.protocol import Call, Exchange
from llmscen.runners import openai
from llmscen.runners.openai import OpenAIRunner, OpenAITargetOptions
from llmscen.runners.openai_responses import StreamBody, StreamProblem, StreamState
from llmscen.runners.openai_transport import Connection, split_url
from llmscen.testing.contract.hostile import HostileServer

MODEL = "m"
text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=6)


def chunk(choice: dict[str, Any], **top: Any) -> bytes:
    return orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "choices": [choice],
                         **top})


event = st.one_of(
    text.map(lambda t: chunk({"index": 0, "delta": {"content": t}, "finish_reason": None})),
    st.just(chunk({"index": 0, "delta": {"role": "assistant", "content": ""}})),
    text.map(lambda t: chunk({"index": 0, "delta": {"reasoning_content": t}})),
    st.sampled_from(["stop", "length"]).map(
        lambda r: chunk({"index": 0, "delta": {}, "finish_reason": r})),
    st.tuples(st.integers(0, 99), st.integers(0, 99)).map(
        lambda u: orjson.dumps({"choices": [], "usage": {"prompt_tokens": u[0],
                                                         "completion_tokens": u[1]}})),
    st.just(b"COMMENT"), st.just(b""), st.just(b"MULTILINE"),
    st.just(b'{"choices": [{"delta": '),                       # malformed JSON
    st.just(orjson.dumps({"error": {"message": "engine died"}})),
)


def sse_bytes(events: list[bytes], done: bool, eol: bytes) -> bytes:
    out = []
    for data in events:
        if data == b"COMMENT":
            out.append(b": ping" + eol + eol)
        elif data == b"MULTILINE":
            body = chunk({"index": 0, "delta": {"content": "m"}})
            half = len(body) // 2
            out.append(b"data: " + body[:half] + eol + b"data: " + body[half:] + eol + eol)
        else:
            out.append(b"data: " + data + eol + eol)
    if done:
        out.append(b"data: [DONE]" + eol + eol)
    return b"".join(out)


def frame(body: bytes, framing: str, pieces: list[int]) -> list[bytes]:
    """The response (head, then body pieces) as the server writes it."""
    cuts = sorted({p % (len(body) + 1) for p in pieces})
    parts, start = [], 0
    for p in [*cuts, len(body)]:
        if p > start:
            parts.append(body[start:p])
            start = p
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    if framing == "chunked":
        return [head + b"Transfer-Encoding: chunked\r\n\r\n",
                *(b"%x\r\n%s\r\n" % (len(p), p) for p in parts), b"0\r\n\r\n"]
    if framing == "length":
        return [head + b"Content-Length: %d\r\n\r\n" % len(body), *parts]
    return [head + b"Connection: close\r\n\r\n", *parts]


@contextlib.asynccontextmanager
async def serving(writes: list[bytes], cut_at: int | None) -> AsyncIterator[str]:
    """Answer every request with `writes` (stopping and closing after `cut_at` bytes)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                sent = 0
                for data in writes:
                    if cut_at is not None and sent + len(data) > cut_at:
                        writer.write(data[:cut_at - sent])
                        await writer.drain()
                        raise ConnectionError("cut")
                    writer.write(data)
                    sent += len(data)
                    await writer.drain()
                    await asyncio.sleep(0)
                if b"Connection: close" in b"".join(writes):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


def runner_for(url: str, wire: bool) -> OpenAIRunner:
    runner = openai.plugin.create_runner(TargetPlan(
        name="chat", plugin="openai", url=url, options=OpenAITargetOptions(model=MODEL)))
    if not wire:
        runner._wire = None     # the reference: aiohttp's reads, the same SSE accounting
    return runner


async def fetch(url: str, wire: bool, stream: bool = True) -> Exchange:
    runner = runner_for(url, wire)
    await runner.start()
    if not wire:
        runner._wire = None
    try:
        ex = Exchange(intended_ns=time.perf_counter_ns())
        await runner.send(Call("r", {"body": {"messages": []}}, stream=stream, timeout=10), ex)
        return ex
    finally:
        await runner.stop()


STREAM_PROBLEMS = ("malformed stream event", "unexpected stream event", "error event",
                   "ended before")


def comparable(ex: Exchange) -> dict[str, Any]:
    stream_problem = any(p in ex.error_message for p in STREAM_PROBLEMS)
    return {
        "status": ex.status, "error": ex.error, "text": ex.text, "chunks": ex.chunks,
        "gaps": len(ex.itl_us), "finish": ex.finish_reason, "out": ex.output_tokens,
        "in": ex.input_tokens, "estimated": ex.tokens_estimated, "body": ex.body,
        "ttft": bool(ex.first_content_ns), "first_byte": bool(ex.first_byte_ns),
        # how far a failed stream was read depends on how the bytes were grouped
        "bytes": None if ex.error else ex.bytes_received,
        "message": ex.error_message if stream_problem or ex.error is None else None,
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(event, max_size=10), done=st.booleans(),
       eol=st.sampled_from([b"\n", b"\r\n"]),
       framing=st.sampled_from(["chunked", "length", "close"]),
       pieces=st.lists(st.integers(0, 4000), max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 4000)))
def test_transport_and_aiohttp_give_the_same_exchange(events, done, eol, framing, pieces, cut):
    writes = frame(sse_bytes(events, done, eol), framing, pieces)
    cut_at = None if cut is None else cut % (sum(map(len, writes)) + 1)

    async def body() -> tuple[Exchange, Exchange]:
        async with serving(writes, cut_at) as url:
            return await fetch(url, wire=True), await fetch(url, wire=False)

    fast, reference = asyncio.run(body())
    assert comparable(fast) == comparable(reference), (fast.error_message,
                                                       reference.error_message)
    assert fast.sent_ns <= fast.end_ns and (not fast.first_byte_ns
                                            or fast.sent_ns <= fast.first_byte_ns)


@pytest.mark.parametrize("response", [
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s",
    b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s",
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n%.0s%s",
])
@pytest.mark.parametrize("body", [
    orjson.dumps({"choices": [{"index": 0, "message": {"content": "hi"},
                               "finish_reason": "stop"}], "usage": {"prompt_tokens": 1,
                                                                   "completion_tokens": 2}}),
    orjson.dumps({"error": {"message": "no such model"}}), b"{not json", b"plain words",
])
@pytest.mark.parametrize("stream", [False, True])
def test_json_and_error_bodies_agree(response, body, stream):
    raw = response % (len(body), body) if b"%d" in response else response % (b"", body)
    writes = [raw[:20], raw[20:]]

    async def run() -> tuple[Exchange, Exchange]:
        async with serving(writes, None) as url:
            return (await fetch(url, wire=True, stream=stream),
                    await fetch(url, wire=False, stream=stream))

    fast, reference = asyncio.run(run())
    assert comparable(fast) == comparable(reference)
    assert (fast.error_message == reference.error_message) or fast.error == "protocol"


@pytest.mark.parametrize("mode", ["close", "cut", "garbage", "junk200", "echo500", "stall"])
@pytest.mark.parametrize("stream", [False, True])
def test_hostile_servers_get_the_same_error_class(mode, stream):
    async def run(wire: bool) -> Exchange:
        async with HostileServer(mode) as server:
            runner = runner_for(server.url, wire)
            await runner.start()
            if not wire:
                runner._wire = None
            try:
                ex = Exchange(intended_ns=time.perf_counter_ns())
                await runner.send(Call("r", {"body": {"messages": []}}, stream=stream,
                                       timeout=0.5), ex)
                return ex
            finally:
                await runner.stop()

    fast, reference = asyncio.run(run(True)), asyncio.run(run(False))
    assert (fast.error, fast.status) == (reference.error, reference.status), (
        fast.error_message, reference.error_message)


# -- the connection alone, every byte boundary -----------------------------------------


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closing = False

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300), framing=st.sampled_from(["chunked", "length", "close"]),
       pieces=st.lists(st.integers(0, 4000), max_size=6),
       reads=st.lists(st.integers(0, 4000), max_size=10))
def test_the_sink_gets_the_body_once_per_read_however_it_is_split(body, framing, pieces, reads):
    raw = b"".join(frame(body, framing, pieces))
    points = sorted({r % (len(raw) + 1) for r in reads})
    got: list[bytes] = []

    async def run() -> None:
        conn = Connection()
        conn.connection_made(FakeTransport())
        future = conn.request(b"GET / HTTP/1.1\r\n\r\n", lambda b, _now: got.append(b),
                              lambda _r, _n: None, asyncio.get_running_loop())
        start = 0
        for p in [*points, len(raw)]:
            if p > start:
                calls = len(got)
                conn.data_received(raw[start:p])
                assert len(got) - calls <= 1      # one hand-over per read at most
                start = p
        if framing == "close":
            conn.connection_lost(None)
        reply = await future
        assert reply.status == 200 and reply.streamed
        assert reply.headers["content-type"] == "text/event-stream"

    asyncio.run(run())
    assert b"".join(got) == body


def test_split_url():
    origin, host, target = split_url("https://h.example/v1/chat?x=1")  # type: ignore[misc]
    assert (origin.tls, origin.host, origin.port, host, target) == (
        True, "h.example", 443, "h.example", "/v1/chat?x=1")
    origin, host, _ = split_url("http://[::1]:8000/v1")  # type: ignore[misc]
    assert (origin.host, origin.port, host) == ("::1", 8000, "[::1]:8000")
    assert split_url("unix:///tmp/s") is None and split_url("http://u:p@h/") is None


# -- decoding a token event from its template --------------------------------------------

HEADS = [b'{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":',
         b'{"choices":[{"finish_reason":null,"index":0,"delta":{"content": ',
         b'{"id":"c","choices":[{"index":0,"delta":{"role":null,"content":']
TAILS = [b'},"logprobs":null,"finish_reason":null}]}', b'}}],"created":1,"usage":null}',
         b'},"logprobs":{"content":[{"token":"x"}]},"finish_reason":null}]}',
         b',"content":"dup"}}]}', b'}}],"usage":{"completion_tokens":3}}', b'}}]']
TEXT_HEAD = b'{"id":"t","object":"text_completion","choices":[{"index":0,"text":'
TEXT_TAIL = b',"logprobs":null,"finish_reason":null}]}'
string = st.text(max_size=8)
literal = st.one_of(
    string.map(orjson.dumps),
    string.map(lambda t: orjson.dumps(t).replace(b"e", b"\\u0065")),   # escapes orjson won't
    st.binary(max_size=6).map(lambda b: b'"' + b + b'"'),              # anything, even invalid
    st.sampled_from([b'"a\\"b"', b'"\\\\"', b'"a"b"', b'"\\x"', b'"\\ud800"', b'null', b'5',
                     b'"tab\there"', b'"\xc3\xa9"', b'"\xff"']),
)


@settings(max_examples=400, deadline=None)
@given(events=st.lists(st.tuples(st.integers(0, len(HEADS) - 1),
                                 st.integers(0, len(TAILS) - 1), literal), max_size=12),
       text_events=st.lists(literal, max_size=6), reads=st.lists(st.integers(1, 4)))
def test_template_decoding_gives_what_full_decoding_gives(events, text_events, reads):
    chat = [HEADS[h] + lit + TAILS[t] for h, t, lit in events]
    text = [TEXT_HEAD + lit + TEXT_TAIL for lit in text_events]
    for is_chat, batch in ((True, chat), (False, text)):
        fast, full = StreamState(is_chat, []), StreamState(is_chat, [], templates=False)
        outcomes = []
        for state in (fast, full):
            i, now, outcome = 0, 0, None
            try:
                for size in [*reads, len(batch)]:   # the same reads for both
                    now += 1000
                    state.events(batch[i:i + size], now)
                    i += size
            except StreamProblem as problem:
                outcome = (problem.error, problem.message)
            outcomes.append(outcome)
        assert outcomes[0] == outcomes[1]
        assert [getattr(fast, k) for k in StreamState.__slots__ if k[:4] != "temp"] == \
            [getattr(full, k) for k in StreamState.__slots__ if k[:4] != "temp"]


@settings(max_examples=300, deadline=None)
@given(events=st.lists(st.one_of(event, st.tuples(st.sampled_from(HEADS[:2]), literal).map(
           lambda e: e[0] + e[1] + TAILS[0])), max_size=12),
       done=st.booleans(), eol=st.sampled_from([b"\n", b"\r\n"]),
       reads=st.lists(st.integers(0, 4000), max_size=14))
def test_stream_body_with_and_without_templates_agree(events, done, eol, reads):
    """Reads of one whole event take a short cut through the template: same results."""
    raw = sse_bytes(events, done, eol)
    # cut at event boundaries too, so that whole events arrive alone
    bounds = [i + 2 for i in range(len(raw)) if raw[i:i + 2] == b"\n\n"]
    points = sorted({r % (len(raw) + 1) for r in reads} | set(bounds))
    results = []
    for templates in (True, False):
        ex = Exchange(intended_ns=0)
        body = StreamBody(True, ex.itl_us, templates=templates)
        start, now, problem = 0, 0, None
        try:
            for p in [*points, len(raw)]:
                now += 1000
                body.feed(raw[start:p], now)
                start = p
            body.finish(ex, now + 1000)
        except StreamProblem as exc:
            problem = (exc.error, exc.message)
            body.cut(ex)
        results.append((problem, comparable(ex), ex.itl_us, ex.first_content_ns))
    assert results[0] == results[1]
