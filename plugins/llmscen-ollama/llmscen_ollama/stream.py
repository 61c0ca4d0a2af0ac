"""Reading Ollama responses into an `Exchange`: NDJSON streams and single JSON bodies.

A streamed reply is one JSON object per line: `{"message": {"content": ...},
"done": false}` (chat) or `{"response": ..., "done": false}` (generate), then a
final line with `done: true`, `done_reason`, `eval_count` and
`prompt_eval_count`. Kept apart from the transport so the per-line path can be
tested on its own.
"""

from __future__ import annotations

from typing import Any

import orjson

from llmscen.plugin import Exchange, StreamProblem, excerpt

MESSAGE_LIMIT = 500

__all__ = ["MESSAGE_LIMIT", "LineSplitter", "StreamProblem", "StreamState", "content_of",
           "error_text", "excerpt", "fill_counts", "parse_error_body", "read_body"]


class LineSplitter:
    """Splits a byte stream at newlines; a partial line waits for the next read."""

    __slots__ = ("_rest",)

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> list[bytes]:
        if self._rest:
            data = self._rest + data
        lines = data.split(b"\n")
        self._rest = lines.pop()
        return lines

    def close(self) -> list[bytes]:
        rest, self._rest = self._rest, b""
        return [rest] if rest.strip() else []


def content_of(obj: dict[str, Any], chat: bool) -> tuple[bool, str]:
    """(is this line generated content, its text). Thinking and tool calls are content
    without text, as in the openai runner: they are what the model produced first."""
    if chat:
        message = obj.get("message")
        if message is None:
            return False, ""
        if not isinstance(message, dict):
            raise TypeError(f"`message` is a {type(message).__name__}, not an object")
        piece = message.get("content")
        other = message.get("thinking") or message.get("tool_calls")
    else:
        piece = obj.get("response")
        other = obj.get("thinking")
    if piece is not None and not isinstance(piece, str):
        raise TypeError(f"content is a {type(piece).__name__}, not a string")
    if piece:
        return True, piece
    return bool(other), ""


class StreamState:
    """Folds NDJSON lines into counts and timings.

    Lines handed over together (one socket read) share one timestamp; their
    gaps are recorded as 0, which is what the client really observed.
    """

    __slots__ = ("chat", "chunks", "final", "first_ns", "itl_us", "last_ns", "parts")

    def __init__(self, chat: bool, itl_us: list[int]) -> None:
        self.chat = chat
        self.itl_us = itl_us
        self.parts: list[str] = []
        self.chunks = 0
        self.first_ns = 0
        self.last_ns = 0
        self.final: dict[str, Any] | None = None

    def lines(self, batch: list[bytes], now_ns: int) -> None:
        """Account the lines of one read, all stamped `now_ns`.

        Raises StreamProblem for a malformed or error line; the lines before it count.
        """
        content = 0
        try:
            for line in batch:
                if not line.strip():
                    continue
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise StreamProblem("protocol", f"malformed NDJSON line ({exc}): "
                                                    f"{excerpt(line)!r}") from None
                if not isinstance(obj, dict):
                    raise StreamProblem("protocol", f"a stream line is not a JSON object: "
                                                    f"{excerpt(line)!r}")
                if obj.get("error") is not None:
                    # Ollama reports a failure after the 200 header as an `error` line
                    raise StreamProblem("http", "error in stream: " + error_text(obj))
                if self.final is not None:
                    raise StreamProblem("protocol", "a line came after the one with done: true")
                try:
                    is_content, piece = content_of(obj, self.chat)
                except TypeError as exc:
                    raise StreamProblem("protocol", f"unexpected stream line ({exc}): "
                                                    f"{excerpt(line)!r}") from None
                if is_content:
                    content += 1
                    if piece:
                        self.parts.append(piece)
                if obj.get("done") is True:
                    self.final = obj
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
        """Copy the totals into `ex`; a stream without its `done: true` line is cut
        (`complete=False` when it failed for another reason already)."""
        ex.first_content_ns = self.first_ns
        ex.chunks = self.chunks
        ex.text = "".join(self.parts)
        final = self.final or {}
        fill_counts(final, ex)
        if ex.output_tokens is None:
            ex.output_tokens = self.chunks
            ex.tokens_estimated = True
        if complete and self.final is None:
            ex.fail("protocol", f"stream ended before a line with done: true "
                                f"(after {self.chunks} content chunks)")


def fill_counts(obj: dict[str, Any], ex: Exchange) -> None:
    """Server-reported token counts and the finish reason of a final object."""
    ex.output_tokens = _int(obj.get("eval_count"))
    ex.input_tokens = _int(obj.get("prompt_eval_count"))
    reason = obj.get("done_reason")
    ex.finish_reason = reason if isinstance(reason, str) else None


def read_body(obj: Any, ex: Exchange, chat: bool) -> str | None:
    """Fill `ex` from a non-streamed response; returns a problem, or None when well-formed."""
    ex.body = obj
    if not isinstance(obj, dict):
        return f"response is not a JSON object: {excerpt(orjson.dumps(obj))!r}"
    if obj.get("error") is not None:
        return "error in response: " + error_text(obj)
    try:
        _, text = content_of(obj, chat)
    except TypeError as exc:
        return f"unexpected response ({exc}): {excerpt(orjson.dumps(obj))!r}"
    ex.text = text
    fill_counts(obj, ex)
    if obj.get("done") is not True:
        return "response has no done: true (a streamed reply to a request with stream: false?)"
    return None


def error_text(obj: Any) -> str:
    """The server's own words from an error body: `{"error": "..."}` and close shapes."""
    if isinstance(obj, dict):
        error = obj.get("error")
        if isinstance(error, dict) and error.get("message"):
            error = error["message"]
        if isinstance(error, str):
            return error[:MESSAGE_LIMIT]
    text = obj if isinstance(obj, str) else orjson.dumps(obj).decode()
    return text[:MESSAGE_LIMIT]


def parse_error_body(raw: bytes) -> tuple[Any, str]:
    """(parsed body or None, message) of a non-success response."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, raw.decode("utf-8", "replace").strip()[:MESSAGE_LIMIT]
    return obj, error_text(obj)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
