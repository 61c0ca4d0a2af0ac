"""openai-sim's hot path: SSE chunks as byte templates, paced against absolute deadlines.

The first token of a response is due at `start + ttft`, each next one a decode
step (`itl`, longer in a larger batch) after the one before was *due*, on the
monotonic clock; the writer sleeps until each deadline (never for a relative
interval), so scheduling error does not accumulate over a long stream. Every chunk is built
before the first one is due: per token only the token's JSON string literal is
spliced between two constant byte strings.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Literal

import orjson
from aiohttp import web

from llmscen.timer import now

DONE = b"data: [DONE]\n\n"
# An SSE event whose data is not JSON, for malformed-stream injection.
MALFORMED = b'data: {"id": "malformed", "choices": [{"delta": {"content": "\n\n'


class StallWindow:
    """A span in which the simulated server is frozen.

    It opens `after` seconds after the first inference request and lasts
    `length` seconds. Anything due inside it (a response to a request that
    arrived then, or a chunk of a stream in flight) is held until it closes.
    """

    __slots__ = ("after", "end", "length", "start")

    def __init__(self, after: float | None, length: float) -> None:
        self.after = after
        self.length = length
        self.start: float | None = None
        self.end: float | None = None

    def note_request(self, now: float) -> None:
        """Start the clock at the first inference request."""
        if self.start is None and self.after is not None and self.length > 0:
            self.start = now + self.after
            self.end = self.start + self.length

    def release(self, t: float) -> float:
        """When something due at `t` may go out."""
        if self.start is not None and self.end is not None and self.start <= t < self.end:
            return self.end
        return t

    def last_due(self, first_due: float, count: int, itl: float) -> float:
        """When the last of `count` tokens paced `itl` apart from `first_due` is due.

        The first token due inside the window waits for its end; the rest keep
        their spacing behind it.
        """
        due = self.release(first_due)
        last = due + max(count - 1, 0) * itl
        start, end = self.start, self.end
        if start is not None and end is not None and due < start <= last and itl > 0:
            held = due + math.ceil((start - due) / itl) * itl
            if held < end:
                last += end - held
        return last


class ChunkEncoder:
    """The SSE events of one streamed response, for chat or text completions."""

    __slots__ = ("_close", "_final", "_head", "_open", "chat")

    def __init__(self, kind: Literal["chat", "text"], request_id: str, created: int,
                 model: str) -> None:
        self.chat = kind == "chat"
        obj = b"chat.completion.chunk" if self.chat else b"text_completion"
        self._head = (b'data: {"id":' + orjson.dumps(request_id) + b',"object":"' + obj
                      + b'","created":' + str(created).encode() + b',"model":'
                      + orjson.dumps(model) + b',"choices":')
        if self.chat:
            self._open = self._head + b'[{"index":0,"delta":{"content":'
            self._close = b'},"logprobs":null,"finish_reason":null}]}\n\n'
            self._final = b'},"logprobs":null,"finish_reason":"%s","stop_reason":null}]}\n\n'
        else:
            self._open = self._head + b'[{"index":0,"text":'
            self._close = b',"logprobs":null,"finish_reason":null,"stop_reason":null}]}\n\n'
            self._final = b',"logprobs":null,"finish_reason":"%s","stop_reason":null}]}\n\n'

    def role(self) -> bytes:
        """The opening chat chunk: the assistant role and empty content."""
        return (self._head + b'[{"index":0,"delta":{"role":"assistant","content":""},'
                b'"logprobs":null,"finish_reason":null}]}\n\n')

    def tokens(self, encoded: list[bytes], finish_reason: str | None) -> list[bytes]:
        """One event per token; the last carries `finish_reason` unless it is None."""
        opening, closing = self._open, self._close
        chunks = [opening + token + closing for token in encoded]
        if finish_reason is not None:
            last = encoded[-1] if encoded else b'""'
            final = opening + last + self._final % finish_reason.encode()
            if chunks:
                chunks[-1] = final
            else:
                chunks.append(final)
        return chunks

    def tool_call(self, call_id: str, name: str, pieces: list[str],
                  finish_reason: str) -> list[bytes]:
        """One tool call, its arguments in pieces (one event each, as vLLM streams them):
        the first event names the call, the last carries `finish_reason`."""
        opening = self._head + b'[{"index":0,"delta":{"tool_calls":[{"index":0,'
        head = (b'"id":' + orjson.dumps(call_id) + b',"type":"function","function":{"name":'
                + orjson.dumps(name) + b',')
        chunks = []
        for i, piece in enumerate(pieces):
            function = (head if i == 0 else b'"function":{') + b'"arguments":' + \
                orjson.dumps(piece) + b"}}]"
            closing = self._final % finish_reason.encode() if i == len(pieces) - 1 \
                else self._close
            chunks.append(opening + function + closing)
        return chunks

    def reasoning(self, encoded: list[bytes]) -> list[bytes]:
        """One `reasoning_content` event per token (vLLM's reasoning parsers, DeepSeek)."""
        opening = self._head + b'[{"index":0,"delta":{"reasoning_content":'
        return [opening + token + self._close for token in encoded]

    def usage(self, prompt_tokens: int, completion_tokens: int, reasoning: int = 0) -> bytes:
        """The closing event of `stream_options.include_usage`: no choices, only usage."""
        usage = orjson.dumps(usage_of(prompt_tokens, completion_tokens, reasoning))
        return self._head + b'[],"usage":' + usage + b"}\n\n"


def usage_of(prompt_tokens: int, completion_tokens: int, reasoning: int = 0) -> dict[str, object]:
    """An OpenAI `usage` object; reasoning tokens are part of the completion tokens."""
    usage: dict[str, object] = {"prompt_tokens": prompt_tokens,
                                "total_tokens": prompt_tokens + completion_tokens,
                                "completion_tokens": completion_tokens}
    if reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


async def write_paced(response: web.StreamResponse, chunks: list[bytes], first_due: float,
                      step: Callable[[], float], stall: StallWindow,
                      sleep_until: Callable[[float], Awaitable[None]],
                      on_chunk: Callable[[float], None]) -> tuple[int, float]:
    """Write `chunks[0]` at `first_due`, each next one `step()` after the one before was due.

    `step()` is asked when the previous chunk has gone out, so a batch that
    grows or shrinks meanwhile changes the pace from then on. A deadline inside
    the stall window moves to its end and the rest keep their spacing behind it.
    Returns how many chunks went out and when the last of them was due; stops
    early (without raising) when the client has gone away.
    """
    write = response.write
    release = stall.release
    sent = 0
    due = first_due
    for chunk in chunks:
        if sent:
            due += step()
        due = release(due)
        if due > now():
            await sleep_until(due)
        else:
            await asyncio.sleep(0)  # behind schedule: still let other streams run
        try:
            await write(chunk)
        except ConnectionError:
            return sent, due
        sent += 1
        on_chunk(now())
    return sent, due

