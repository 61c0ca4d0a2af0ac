"""Reading OpenAI-style responses into an `Exchange`: JSON bodies and SSE chunks.

Kept apart from the transport (openai.py) so the per-chunk path can be read,
tested and benchmarked on its own.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from llmscen.engine.protocol import Exchange, ToolCall
from llmscen.runners.problems import StreamProblem, excerpt
from llmscen.runners.sse import SSEParser

__all__ = ["MESSAGE_LIMIT", "StreamBody", "StreamProblem", "StreamState", "error_text",
           "excerpt", "parse_error_body", "read_body"]

MESSAGE_LIMIT = 500
_TOKEN = 1      # a chunk that carries a generated token
_CONTENT = 2    # ... whose text (or reasoning, tool call) is not empty
_ANSWER = 6     # ... whose answer text (`content`, `text`) is not empty: content too


_PLAIN_STRING = re.compile(rb'[\x00-\x1f"\\]')    # what a string's bytes must escape


class Template:
    """A plain token event with its text cut out: a later event that is these very bytes
    around another JSON string decodes to the same object but for that text.

    Servers send every token of a stream as the same bytes but for the token's string
    (id, model, created and the keys around it do not change), so one `orjson.loads` per
    stream proves the bytes around the string well-formed; each later token only needs
    its string checked and decoded. Built only from an event whose one choice is index 0
    with a string `content` (`text`) and nothing else that counts: no role, reasoning,
    tool call, finish reason, usage or error, and whose key appears once in its bytes, so
    the string cut out is that value and no other.
    """

    __slots__ = ("head", "size", "sse_head", "sse_tail", "tail")

    def __init__(self, head: bytes, tail: bytes) -> None:
        self.head = head
        self.tail = tail
        self.size = len(head) + len(tail) + 2
        # the same event as one whole SSE event in one read: `data: ` ... LF LF; None
        # when the bytes around the string hold a line end (they would be more lines)
        plain = not any(c in head or c in tail for c in (b"\n", b"\r"))
        self.sse_head = b"data: " + head if plain else None
        self.sse_tail = tail + b"\n\n"

    def value(self, data: bytes, head: int = -1, tail: int = -1) -> str | None:
        """The text of an event that starts with `head` and ends with `tail` (or as many
        bytes of their own), or None (decode it in full)."""
        if head < 0:
            head, tail = len(self.head), len(self.tail)
        if len(data) < head + tail + 2:
            return None
        literal = data[head:len(data) - tail]
        if literal[0] != 34 or literal[-1] != 34:      # '"'
            return None
        inner = literal[1:-1]
        if _PLAIN_STRING.search(inner) is None:
            try:
                return inner.decode()
            except UnicodeDecodeError:
                return None
        try:
            value = orjson.loads(literal)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, str) else None

    @classmethod
    def of(cls, data: bytes, obj: Any, chat: bool) -> Template | None:
        """The template of a decoded event, or None when it is not a plain token event."""
        if obj.get("usage") or obj.get("error") is not None:
            return None
        choices = obj.get("choices")
        if not isinstance(choices, list) or len(choices) != 1:
            return None
        choice = choices[0]
        if not isinstance(choice, dict) or choice.get("index", 0) != 0 \
                or choice.get("finish_reason") is not None:
            return None
        if chat:
            delta = choice.get("delta")
            if not isinstance(delta, dict) or delta.get("role") or delta.get("reasoning_content") \
                    or delta.get("reasoning") or delta.get("tool_calls"):
                return None
            piece, key = delta.get("content"), b'"content":'
        else:
            piece, key = choice.get("text"), b'"text":'
        if not isinstance(piece, str) or data.count(key) != 1:
            return None
        start = data.find(key) + len(key)
        while data[start:start + 1] in (b" ", b"\t", b"\n", b"\r"):
            start += 1
        if data[start:start + 1] != b'"':
            return None
        end = start + 1
        while True:     # the closing quote: one not escaped by an odd run of backslashes
            end = data.find(b'"', end)
            if end < 0:
                return None
            run = 0
            while data[end - 1 - run] == 92:
                run += 1
            if run % 2 == 0:
                break
            end += 1
        try:
            if orjson.loads(data[start:end + 1]) != piece:
                return None
        except orjson.JSONDecodeError:
            return None
        return cls(data[:start], data[end + 1:])


class StreamState:
    """Folds `chat.completion.chunk` / `text_completion` events into counts and timings.

    A token chunk is an event one of whose choices carries a generated token:
    a delta with a string `content` (`text` for completions), even an empty one
    (vLLM streams tokens that decode to no text yet), `reasoning_content`/
    `reasoning`, `tool_calls`, log-probabilities or token ids. Not token chunks:
    the role chunk (`role` with empty or null content), a finish-only chunk
    (empty or no content with a `finish_reason`), usage-only and `[DONE]`
    events. `chunks` and the ITL gaps count token chunks, as vLLM's own ITL
    does; TTFT is timed at the first chunk whose content is not empty (some
    servers send the role chunk before prefill). Events handed over together
    (one socket read) share one timestamp; their gaps are recorded as 0, which
    is what the client really observed.
    """

    __slots__ = ("answer_ns", "chat", "chunks", "done", "finish_reason", "first_ns", "itl_us",
                 "last_ns", "parts", "reasoning", "template", "templates", "tools", "usage")

    def __init__(self, chat: bool, itl_us: list[int], templates: bool = True) -> None:
        self.chat = chat
        self.templates = templates      # False: decode every event in full (the reference)
        self.template: Template | None = None
        self.itl_us = itl_us
        self.parts: list[str] = []
        self.chunks = 0
        self.first_ns = 0       # first chunk with non-empty content (TTFT)
        self.answer_ns = 0      # first chunk with non-empty answer text (TTFT of the answer)
        self.reasoning = 0      # chunks carrying reasoning (`reasoning_content`, `reasoning`)
        self.last_ns = 0        # last token chunk (ITL)
        self.done = False
        self.finish_reason: str | None = None
        self.usage: Any = None
        self.tools: dict[int, ToolCall] = {}    # tool calls by their index, as they build up

    def events(self, batch: list[bytes], now_ns: int) -> None:
        """Account the events of one read, all stamped `now_ns`.

        Raises StreamProblem for a malformed or error event; the events before it count.
        """
        loads = orjson.loads
        tokens = 0
        content = answer = False
        template = self.template
        try:
            for data in batch:
                if template is not None and data.startswith(template.head) \
                        and data.endswith(template.tail):
                    value = template.value(data)
                    if value is not None:       # same event as the last one but its text
                        tokens += 1
                        if value:
                            content = answer = True
                            self.parts.append(value)
                        continue
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
                    kind = self._event(obj)
                except (AttributeError, TypeError) as exc:
                    raise StreamProblem("protocol", f"unexpected stream event ({exc}): "
                                                    f"{excerpt(data)!r}") from None
                if kind:
                    tokens += 1
                    if kind & _CONTENT:
                        content = True
                        answer = answer or kind == _ANSWER
                    if self.templates:
                        self.template = template = Template.of(data, obj, self.chat)
        finally:
            if tokens:
                if self.last_ns:
                    self.itl_us.append((now_ns - self.last_ns) // 1000)
                if tokens > 1:
                    self.itl_us.extend([0] * (tokens - 1))
                self.last_ns = now_ns
                self.chunks += tokens
            if content and not self.first_ns:
                self.first_ns = now_ns
            if answer and not self.answer_ns:
                self.answer_ns = now_ns

    def token(self, value: str, now_ns: int) -> None:
        """Account one token event of the template, read alone: `events([it], now_ns)`."""
        if self.last_ns:
            self.itl_us.append((now_ns - self.last_ns) // 1000)
        self.last_ns = now_ns
        self.chunks += 1
        if value:
            self.parts.append(value)
            if not self.first_ns:
                self.first_ns = now_ns
            if not self.answer_ns:
                self.answer_ns = now_ns

    def _event(self, obj: Any) -> int:
        """Fold one decoded event: 0 (no token), _TOKEN (a token, no text) or _CONTENT."""
        usage = obj.get("usage")
        if usage:
            self.usage = usage
        choices = obj.get("choices")
        if not choices:
            if obj.get("error") is not None:
                raise StreamProblem("http", "error event in stream: "
                                            + error_text(obj)[:MESSAGE_LIMIT])
            return 0
        kind = 0
        for choice in choices:
            first = choice.get("index", 0) == 0
            reason = choice.get("finish_reason")
            if reason is not None and first:
                self.finish_reason = reason
            if self.chat:
                delta = choice.get("delta")
                piece = delta.get("content") if delta else None
                if piece:
                    kind = _ANSWER
                    if first:
                        self.parts.append(piece)
                    continue
                if delta and (delta.get("reasoning_content") or delta.get("reasoning")):
                    kind |= _CONTENT
                    if first:
                        self.reasoning += 1
                    continue
                calls = delta.get("tool_calls") if delta else None
                if calls:
                    kind |= _CONTENT
                    if first:
                        self._tool_deltas(calls)
                    continue
                # an empty string: a token without text, unless the role or finish chunk
                empty = isinstance(piece, str) and not delta.get("role") and reason is None
            else:
                piece = choice.get("text")
                if piece:
                    kind = _ANSWER
                    if first:
                        self.parts.append(piece)
                    continue
                empty = isinstance(piece, str) and reason is None
            if kind == 0 and (empty or choice.get("logprobs") or choice.get("token_ids")):
                kind = _TOKEN
        return kind

    def _tool_deltas(self, calls: Any) -> None:
        """Join tool-call fragments: each names its call by `index`; the id and the name
        come first, the arguments in pieces (strings are joined, as OpenAI's SDK does)."""
        for call in calls:
            if not isinstance(call, dict):
                raise TypeError("a tool call delta is not an object")
            index = call.get("index", 0)
            tool = self.tools.get(index)
            if tool is None:
                tool = self.tools[index] = ToolCall()
            if isinstance(call.get("id"), str) and not tool.id:
                tool.id = call["id"]
            function = call.get("function")
            if isinstance(function, dict):
                if isinstance(function.get("name"), str):
                    tool.name += function["name"]
                if isinstance(function.get("arguments"), str):
                    tool.arguments += function["arguments"]

    def fill(self, ex: Exchange, complete: bool = True) -> None:
        """Copy the totals into `ex`; a stream that ended without `[DONE]` or a finish_reason
        is cut (`complete=False` when it failed for another reason already)."""
        ex.first_content_ns = self.first_ns
        ex.first_answer_ns = self.answer_ns
        ex.chunks = self.chunks
        try:
            ex.text = "".join(self.parts)
            ex.chunk_chars = [len(part) for part in self.parts]
        except TypeError:
            ex.fail("protocol", "a stream chunk's content is not a string")
        ex.finish_reason = self.finish_reason if isinstance(self.finish_reason, str) else None
        if self.tools:
            ex.tool_calls = [self.tools[i] for i in sorted(self.tools, key=_order)]
        usage = self.usage if isinstance(self.usage, dict) else None
        output = _int(usage.get("completion_tokens")) if usage else None
        if output is None:
            ex.output_tokens = self.chunks
            ex.tokens_estimated = True
        else:
            ex.output_tokens = output
        if usage:
            ex.input_tokens = _int(usage.get("prompt_tokens"))
        reported = reasoning_of(usage)     # else counted chunks, as output_tokens is
        ex.reasoning_tokens = reported if reported is not None else self.reasoning
        if complete and not self.done and self.finish_reason is None:
            ex.fail("protocol", f"stream ended before [DONE] or a finish_reason "
                                f"(after {self.chunks} token chunks)")


class StreamBody:
    """One streamed response's SSE splitter and accounting, fed read by read."""

    __slots__ = ("_account", "_split", "last_ns", "parser", "received", "state")

    def __init__(self, chat: bool, itl_us: list[int], templates: bool = True) -> None:
        self.parser = SSEParser()
        self.state = StreamState(chat, itl_us, templates)
        self._split = self.parser.feed
        self._account = self.state.events
        self.received = 0
        self.last_ns = 0

    def feed(self, buf: bytes, now_ns: int) -> None:
        """One read's bytes, stamped `now_ns`; raises StreamProblem for a bad event."""
        self.received += len(buf)
        self.last_ns = now_ns
        template = self.state.template
        if template is not None and template.sse_head is not None \
                and buf.startswith(template.sse_head) and buf.endswith(template.sse_tail) \
                and self.parser.between_events:
            # A paced server's read: one whole event of the template. Anything more in
            # the read (a line end, another event) puts a quote or a control byte in the
            # string, which sends the read the general way.
            value = template.value(buf, len(template.sse_head), len(template.sse_tail))
            if value is not None:
                self.state.token(value, now_ns)
                return
        events = self._split(buf)
        if events:
            self._account(events, now_ns)

    def finish(self, ex: Exchange, now_ns: int) -> None:
        """The stream ended cleanly at `now_ns`: fill `ex` (StreamProblem as in feed)."""
        self.last_ns = now_ns
        self._account(self.parser.close(), now_ns)
        ex.end_ns = now_ns
        ex.bytes_received = self.received
        self.state.fill(ex)

    def cut(self, ex: Exchange) -> None:
        """The stream failed: keep in `ex` what arrived before."""
        ex.bytes_received = self.received
        self.state.fill(ex, complete=False)


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
            ex.reasoning_tokens = reasoning_of(usage)
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
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        if calls:
            ex.tool_calls = tool_calls_of(calls)
    else:
        text = choice.get("text")
    ex.text = text if isinstance(text, str) else ""
    reason = choice.get("finish_reason")
    ex.finish_reason = reason if isinstance(reason, str) else None
    return None


def tool_calls_of(calls: Any) -> list[ToolCall]:
    """`message.tool_calls` of a whole answer; malformed entries keep what they have."""
    out = []
    for item in calls if isinstance(calls, list) else []:
        call: dict[str, Any] = item if isinstance(item, dict) else {}
        function: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) \
            else {}
        arguments = function.get("arguments")
        if not isinstance(arguments, str) and arguments is not None:
            arguments = orjson.dumps(arguments).decode()   # some servers send an object
        out.append(ToolCall(name=str(function.get("name") or ""), arguments=arguments or "",
                            id=str(call.get("id") or "")))
    return out


def _order(index: Any) -> tuple[int, str]:
    return (index, "") if isinstance(index, int) else (1 << 30, str(index))


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


def reasoning_of(usage: Any) -> int | None:
    """`usage.completion_tokens_details.reasoning_tokens` (OpenAI, vLLM), when reported."""
    details = usage.get("completion_tokens_details") if isinstance(usage, dict) else None
    return _int(details.get("reasoning_tokens")) if isinstance(details, dict) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
