"""Reading OpenAI-style responses into an `Exchange`: JSON bodies and SSE chunks.

Kept apart from the transport (openai.py) so the per-chunk path can be read,
tested and benchmarked on its own.
"""

from __future__ import annotations

from typing import Any

import orjson

from llmscen.engine.protocol import Exchange
from llmscen.runners.problems import StreamProblem, excerpt

__all__ = ["MESSAGE_LIMIT", "StreamProblem", "StreamState", "error_text", "excerpt",
           "parse_error_body", "read_body"]

MESSAGE_LIMIT = 500


class StreamState:
    """Folds `chat.completion.chunk` / `text_completion` events into counts and timings.

    A content chunk is an event whose delta carries generated output: `content`
    (`text` for completions), `reasoning_content`/`reasoning`, or `tool_calls`.
    Role-only, finish-only and usage-only events are not content: some servers
    send the role chunk before prefill, so timing it would understate TTFT.
    Events handed over together (one socket read) share one timestamp; their
    gaps are recorded as 0, which is what the client really observed.
    """

    __slots__ = ("chat", "chunks", "done", "finish_reason", "first_ns", "itl_us", "last_ns",
                 "parts", "usage")

    def __init__(self, chat: bool, itl_us: list[int]) -> None:
        self.chat = chat
        self.itl_us = itl_us
        self.parts: list[str] = []
        self.chunks = 0
        self.first_ns = 0
        self.last_ns = 0
        self.done = False
        self.finish_reason: str | None = None
        self.usage: Any = None

    def events(self, batch: list[bytes], now_ns: int) -> None:
        """Account the events of one read, all stamped `now_ns`.

        Raises StreamProblem for a malformed or error event; the events before it count.
        """
        loads = orjson.loads
        chat = self.chat
        parts = self.parts
        content = 0
        try:
            for data in batch:
                if data[:1] != b"{":
                    stripped = data.strip()
                    if stripped == b"[DONE]":
                        self.done = True
                        continue
                    if not stripped:        # an empty keep-alive event
                        continue
                try:
                    obj = loads(data)
                except orjson.JSONDecodeError as exc:
                    raise StreamProblem("protocol", f"malformed stream event ({exc}): "
                                                    f"{excerpt(data)!r}") from None
                try:
                    usage = obj.get("usage")
                    if usage:
                        self.usage = usage
                    choices = obj.get("choices")
                    if not choices:
                        if obj.get("error") is not None:
                            raise StreamProblem("http", "error event in stream: "
                                                        + error_text(obj)[:MESSAGE_LIMIT])
                        continue
                    is_content = False
                    for choice in choices:
                        first = choice.get("index", 0) == 0
                        if chat:
                            delta = choice.get("delta")
                            if delta:
                                piece = delta.get("content")
                                if piece:
                                    is_content = True
                                    if first:
                                        parts.append(piece)
                                elif (delta.get("reasoning_content") or delta.get("reasoning")
                                      or delta.get("tool_calls")):
                                    is_content = True
                        else:
                            piece = choice.get("text")
                            if piece:
                                is_content = True
                                if first:
                                    parts.append(piece)
                        reason = choice.get("finish_reason")
                        if reason is not None and first:
                            self.finish_reason = reason
                except (AttributeError, TypeError) as exc:
                    raise StreamProblem("protocol", f"unexpected stream event ({exc}): "
                                                    f"{excerpt(data)!r}") from None
                if is_content:
                    content += 1
        finally:
            if content:
                if self.last_ns:
                    self.itl_us.append((now_ns - self.last_ns) // 1000)
                else:
                    self.first_ns = now_ns
                if content > 1:
                    self.itl_us.extend([0] * (content - 1))
                self.last_ns = now_ns
                self.chunks += content

    def fill(self, ex: Exchange, complete: bool = True) -> None:
        """Copy the totals into `ex`; a stream that ended without `[DONE]` or a finish_reason
        is cut (`complete=False` when it failed for another reason already)."""
        ex.first_content_ns = self.first_ns
        ex.chunks = self.chunks
        try:
            ex.text = "".join(self.parts)
        except TypeError:
            ex.fail("protocol", "a stream chunk's content is not a string")
        ex.finish_reason = self.finish_reason if isinstance(self.finish_reason, str) else None
        usage = self.usage if isinstance(self.usage, dict) else None
        output = _int(usage.get("completion_tokens")) if usage else None
        if output is None:
            ex.output_tokens = self.chunks
            ex.tokens_estimated = True
        else:
            ex.output_tokens = output
        if usage:
            ex.input_tokens = _int(usage.get("prompt_tokens"))
        if complete and not self.done and self.finish_reason is None:
            ex.fail("protocol", f"stream ended before [DONE] or a finish_reason "
                                f"(after {self.chunks} content chunks)")


def read_body(api: str, obj: Any, ex: Exchange) -> str | None:
    """Fill `ex` from a non-streamed JSON response; returns a problem, or None when well-formed."""
    ex.body = obj
    if not isinstance(obj, dict):
        return f"response is not a JSON object: {excerpt(orjson.dumps(obj))!r}"
    if api == "models":
        if not isinstance(obj.get("data"), list):
            return "models response has no `data` list"
        # a model list is data, not generated text: its output is the JSON body itself,
        # so `contains` finds a model id and `json_schema`/`equals` check the body
        ex.text = orjson.dumps(obj).decode()
        return None
    usage = obj.get("usage")
    if isinstance(usage, dict):
        ex.input_tokens = _int(usage.get("prompt_tokens"))
        if api != "embeddings":
            ex.output_tokens = _int(usage.get("completion_tokens"))
    if api == "embeddings":
        if not isinstance(obj.get("data"), list):
            return "embeddings response has no `data` list"
        return None
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        if obj.get("error") is not None:
            return "error in response: " + error_text(obj)[:MESSAGE_LIMIT]
        return f"response has no choices: {excerpt(orjson.dumps(obj))!r}"
    choice = choices[0]
    if api == "chat":
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
    else:
        text = choice.get("text")
    ex.text = text if isinstance(text, str) else ""
    reason = choice.get("finish_reason")
    ex.finish_reason = reason if isinstance(reason, str) else None
    return None


def error_text(obj: Any) -> str:
    """The server's own words from an error body: OpenAI, vLLM, FastAPI and plain shapes."""
    if isinstance(obj, dict):
        error = obj.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        for key in ("message", "detail"):
            if obj.get(key):
                value = obj[key]
                return value if isinstance(value, str) else orjson.dumps(value).decode()
    return orjson.dumps(obj).decode() if not isinstance(obj, str) else obj


def parse_error_body(raw: bytes) -> tuple[Any, str]:
    """(parsed body or None, message) of a non-success response."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, raw.decode("utf-8", "replace").strip()[:MESSAGE_LIMIT]
    return obj, error_text(obj)[:MESSAGE_LIMIT]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
