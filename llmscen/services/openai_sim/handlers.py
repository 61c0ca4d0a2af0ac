"""openai-sim's endpoints: parse a request, decide what to answer, answer it on time."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web

from llmscen.services.openai_sim.history import HEADER as HISTORY_HEADER
from llmscen.services.openai_sim.prefix import HEADER as PREFIX_HEADER
from llmscen.services.openai_sim.state import STATE, Fault, Seq, SimState, Tally, prometheus_text
from llmscen.services.openai_sim.stream import (
    DONE,
    MALFORMED,
    ChunkEncoder,
    usage_of,
    write_paced,
)
from llmscen.services.openai_sim.text import (
    chat_prompt,
    completion_prompt,
    corrupt,
    count_words,
    embedding,
    embedding_base64,
    embedding_inputs,
    encode_tokens,
    hold_back_text,
    prompt_rng,
    pseudo_tokens,
    split_tokens,
)
from llmscen.services.openai_sim.tools import ToolPick, fragments, pick_tool
from llmscen.timer import now

_ERROR_TYPES = {400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError",
                404: "NotFoundError", 408: "RequestTimeoutError", 422: "UnprocessableEntityError",
                429: "RateLimitError", 500: "InternalServerError", 502: "BadGatewayError",
                503: "ServiceUnavailableError", 504: "GatewayTimeoutError"}


class BadRequest(Exception):
    """A request the simulator refuses with an OpenAI-style error body."""

    def __init__(self, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param


def error_response(status: int, message: str, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": _ERROR_TYPES.get(status, "APIError"),
                      "param": param, "code": status}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def json_response(obj: Any) -> web.Response:
    return web.Response(body=orjson.dumps(obj), content_type="application/json")


@dataclass(slots=True)
class Generation:
    """What one completion request will produce."""

    kind: Literal["chat", "text"]
    request_id: str
    model: str
    prompt_tokens: int
    tokens: list[str]
    finish_reason: str
    stream: bool
    include_usage: bool
    history_answers: int | None = None   # check_history: earlier answers the request carried
    reasoning: list[str] = field(default_factory=list)   # reasoning tokens before the answer
    tool: ToolPick | None = None    # the answer is this tool call, `tokens` its arguments

    @property
    def metric_reason(self) -> str:
        """The finished_reason label of vLLM's request counter: a tool call stopped."""
        return "stop" if self.finish_reason == "tool_calls" else self.finish_reason
    prefix_hits: int | None = None       # prefix_cache: prompt tokens found cached


async def _read_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _check_model(state: SimState, body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        return state.options.model
    if model != state.options.model:
        raise BadRequest(f"The model `{model}` does not exist.", 404, "model")
    return state.options.model


def _int_param(body: dict[str, Any], name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise BadRequest(f"'{name}' must be an integer >= {minimum}, got {value!r}", param=name)
    return value


# Sampling parameters and their ranges, as the OpenAI API documents them.
_NUMBER_PARAMS = {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0),
                  "presence_penalty": (-2.0, 2.0), "frequency_penalty": (-2.0, 2.0)}


def _number_params(body: dict[str, Any]) -> None:
    """Numbers must be JSON numbers: `"0.7"` is refused, as OpenAI and llama.cpp do."""
    for name, (low, high) in _NUMBER_PARAMS.items():
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise BadRequest(f"'{name}' must be a number, got {value!r}", param=name)
        if not low <= value <= high:
            raise BadRequest(f"'{name}' must be between {low:g} and {high:g}, got {value!r}",
                             param=name)


def plan_generation(state: SimState, body: dict[str, Any], kind: Literal["chat", "text"]
                    ) -> Generation:
    """Validate a completion request and decide its tokens and finish reason."""
    o = state.options
    model = _check_model(state, body)
    try:
        if kind == "chat":
            prompt, last_user = chat_prompt(body.get("messages"))
            prompt_tokens = count_words(prompt)
        else:
            prompt, prompt_tokens = completion_prompt(body.get("prompt"))
            last_user = prompt
    except ValueError as exc:
        raise BadRequest(str(exc), param="messages" if kind == "chat" else "prompt") from None
    _number_params(body)
    if body.get("n") not in (None, 1):
        raise BadRequest("openai-sim answers with one choice: 'n' must be 1", param="n")
    max_tokens = _int_param(body, "max_completion_tokens", 1) if kind == "chat" else None
    if max_tokens is None:
        max_tokens = _int_param(body, "max_tokens", 1)
    min_tokens = _int_param(body, "min_tokens", 0) or 0
    if max_tokens is not None and min_tokens > max_tokens:
        raise BadRequest(f"min_tokens ({min_tokens}) must be <= max_tokens ({max_tokens})",
                         param="min_tokens")
    if max_tokens is not None and prompt_tokens + max_tokens > o.max_model_len:
        raise BadRequest(f"This model's maximum context length is {o.max_model_len} tokens. "
                         f"However, you requested {prompt_tokens + max_tokens} tokens "
                         f"({prompt_tokens} in the messages, {max_tokens} in the completion).",
                         param="max_tokens")
    ignore_eos = body.get("ignore_eos") is True
    stream = body.get("stream") is True
    options = body.get("stream_options")
    include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True

    rng = prompt_rng(prompt, o.seed)
    request_id = state.next_id("chatcmpl" if kind == "chat" else "cmpl")
    tool = None
    if kind == "chat" and body.get("tools") is not None:
        try:
            tool = pick_tool(body, prompt_rng(prompt, o.seed, "tools"),
                             "call_" + request_id[-10:], o.tool_arguments)
        except ValueError as exc:
            raise BadRequest(str(exc), param="tools") from None
    if tool is not None:
        tokens = fragments(tool.arguments)
    elif state.reply_tokens is not None:
        tokens = list(state.reply_tokens)
    elif o.echo_prompt:
        tokens = split_tokens(last_user)
    else:
        spread = rng.randint(-o.output_tokens_spread, o.output_tokens_spread)
        tokens = pseudo_tokens(rng, max(o.output_tokens + spread, 0), first=True)
    count = len(tokens)
    if ignore_eos and max_tokens is not None and tool is None:
        count = max_tokens
    count = max(count, min_tokens if tool is None else 0)
    if max_tokens is not None:
        count = min(count, max_tokens)
    if count > len(tokens):
        tokens += pseudo_tokens(rng, count - len(tokens), first=not tokens)
    del tokens[count:]
    finish = "length" if max_tokens is not None and count >= max_tokens else \
        "tool_calls" if tool is not None else "stop"
    carried = None
    if kind == "chat" and o.check_history:
        carried, problem = state.history.check(body["messages"])
        if problem is not None:
            raise BadRequest(problem, param="messages")
        state.history.carried[carried] += 1
        state.history.remember("".join(tokens))
    reasoning = pseudo_tokens(prompt_rng(prompt, o.seed, "reasoning"), o.reasoning_tokens,
                              first=True) if kind == "chat" and o.reasoning_tokens else []
    hits = state.prefix.lookup(prompt) if state.prefix is not None else None
    return Generation(kind, request_id, model, prompt_tokens, tokens, finish, stream,
                      include_usage, carried, reasoning, tool, prefix_hits=hits)


def _headers(gen: Generation) -> dict[str, str]:
    out = {} if gen.history_answers is None else {HISTORY_HEADER: str(gen.history_answers)}
    if gen.prefix_hits is not None:
        out[PREFIX_HEADER] = str(gen.prefix_hits)
    return out


async def completions(request: web.Request, kind: Literal["chat", "text"]) -> web.StreamResponse:
    state = request.app[STATE]
    state.stall.note_request(now())
    arrival = await state.hold()  # the origin of this request's deadlines
    try:
        gen = plan_generation(state, await _read_object(request), kind)
    except BadRequest as exc:
        return error_response(exc.status, str(exc), exc.param)
    async with state.slot(arrival) as seq:
        fault = state.draw_fault()
        if fault == "error":
            return error_response(state.options.error_status,
                                  "openai-sim: injected error (error_rate)")
        state.prompt_tokens += gen.prompt_tokens
        limit = state.options.corrupt_under_load
        if limit is not None and state.running > limit:
            corrupt(gen.tokens, state.running)
            state.injected["corrupt"] += 1
        if gen.stream:
            return await _stream(request, state, gen, seq, fault)
        return await _respond(request, state, gen, seq, fault)


def _first_due(state: SimState, gen: Generation, seq: Seq) -> float:
    o = state.options
    return seq.start + o.ttft + o.prefill_per_token * gen.prompt_tokens


async def _stream(request: web.Request, state: SimState, gen: Generation, seq: Seq,
                  fault: Fault) -> web.StreamResponse:
    encoder = ChunkEncoder(gen.kind, gen.request_id, int(time.time()), gen.model)
    n = len(gen.tokens)
    tokens = gen.tokens
    rate = state.options.empty_token_rate
    if rate:
        tokens = hold_back_text(tokens, rate,
                                prompt_rng(gen.request_id, state.options.seed, "empty"))
    thinking = len(gen.reasoning)
    answer = encoder.tool_call(gen.tool.id, gen.tool.name, tokens, gen.finish_reason) \
        if gen.tool is not None else encoder.tokens(encode_tokens(tokens), gen.finish_reason)
    chunks = encoder.reasoning(encode_tokens(gen.reasoning)) + answer
    if gen.include_usage:
        chunks[-1] += encoder.usage(gen.prompt_tokens, n + thinking, thinking)
    chunks[-1] += DONE
    if fault == "malformed":
        middle = len(chunks) // 2
        chunks[middle] = MALFORMED + chunks[middle]
    elif fault == "cut":
        del chunks[(n + thinking) // 2:]

    response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache", **_headers(gen)})
    try:
        await response.prepare(request)
        if encoder.chat:  # the role arrives at once, content only after the TTFT
            await response.write(encoder.role())
    except ConnectionError:
        state.finished["abort"] += 1
        return response
    tally = Tally(state, seq.arrival)
    sent, due = await write_paced(response, chunks, _first_due(state, gen, seq),
                                  state.batch.step, state.stall, state.sleep_until, tally)
    if sent < len(chunks):
        state.finished["abort"] += 1
        return response
    seq.done = due
    tally.finish(now())
    if fault == "cut" and state.options.cut_mode == "reset":
        if request.transport is not None:
            request.transport.close()
    elif fault is None:
        state.finished[gen.metric_reason] += 1
    return response


async def _decode(state: SimState, seq: Seq, first_due: float, count: int) -> float:
    """Sleep while `count` tokens are generated (unseen until the end); when the last was due."""
    tally = Tally(state, seq.arrival)
    stall = state.stall
    due = stall.release(first_due)
    if not state.options.batch_slowdown:   # a constant pace: one sleep
        last = stall.last_due(first_due, count, state.options.itl)
        await state.sleep_until(last)
        if count:
            tally(due)
        if count > 1:
            tally(last, count - 1)
        due = last
    else:   # the pace follows the batch: a step at a time
        await state.sleep_until(due)
        if count:
            tally(due)
        for _ in range(count - 1):
            due = stall.release(due + state.batch.step())
            await state.sleep_until(due)
            tally(due)
    tally.finish(due)
    return due


async def _respond(request: web.Request, state: SimState, gen: Generation, seq: Seq,
                   fault: Fault) -> web.StreamResponse:
    n = len(gen.tokens) + len(gen.reasoning)
    seq.done = await _decode(state, seq, _first_due(state, gen, seq), n)
    text = "".join(gen.tokens)
    if gen.kind == "chat":
        message: dict[str, Any] = {"role": "assistant", "content": text, "tool_calls": []}
        if gen.tool is not None:
            message["content"] = None
            message["tool_calls"] = [{"id": gen.tool.id, "type": "function", "function": {
                "name": gen.tool.name, "arguments": text}}]
        if gen.reasoning:
            message["reasoning_content"] = "".join(gen.reasoning)
        choice: dict[str, Any] = {"index": 0, "message": message}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text}
        obj = "text_completion"
    choice.update(logprobs=None, finish_reason=gen.finish_reason, stop_reason=None)
    body = orjson.dumps({"id": gen.request_id, "object": obj, "created": int(time.time()),
                         "model": gen.model, "choices": [choice],
                         "usage": usage_of(gen.prompt_tokens, n, len(gen.reasoning))})
    if fault is None:
        state.finished[gen.metric_reason] += 1
    return await _deliver(request, body, fault, _headers(gen))


async def _deliver(request: web.Request, body: bytes, fault: Fault,
                   headers: dict[str, str] | None = None) -> web.StreamResponse:
    """A JSON body as is, truncated (malformed), or half-sent before hanging up (cut)."""
    if fault == "malformed":
        return web.Response(body=body[: len(body) // 2], content_type="application/json")
    if fault == "cut":  # promise the whole body, send half, hang up
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        try:
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
        except ConnectionError:
            return response
        if request.transport is not None:
            request.transport.close()
        return response
    return web.Response(body=body, content_type="application/json", headers=headers)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await completions(request, "chat")


async def text_completions(request: web.Request) -> web.StreamResponse:
    return await completions(request, "text")


async def embeddings(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    state.stall.note_request(now())
    arrival = await state.hold()
    try:
        body = await _read_object(request)
        model = _check_model(state, body)
        try:
            inputs = embedding_inputs(body.get("input"))
        except ValueError as exc:
            raise BadRequest(str(exc), param="input") from None
        dimensions = _int_param(body, "dimensions", 1) or state.options.embedding_dimensions
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise BadRequest("'encoding_format' must be 'float' or 'base64'",
                             param="encoding_format")
    except BadRequest as exc:
        return error_response(exc.status, str(exc), exc.param)
    async with state.slot(arrival) as seq:
        fault = state.draw_fault()
        if fault == "error":
            return error_response(state.options.error_status,
                                  "openai-sim: injected error (error_rate)")
        data = []
        for index, (text, _) in enumerate(inputs):
            vector = embedding(text, state.options.seed, dimensions)
            data.append({"object": "embedding", "index": index,
                         "embedding": embedding_base64(vector) if encoding == "base64" else vector})
        tokens = sum(count for _, count in inputs)
        state.prompt_tokens += tokens
        seq.done = state.stall.release(seq.start + state.options.ttft)
        await state.sleep_until(seq.done)
        if fault is None:
            state.finished["stop"] += 1
        return await _deliver(request, orjson.dumps({
            "id": state.next_id("embd"), "object": "list", "created": int(time.time()),
            "model": model, "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}}),
            fault)


async def tokenize(request: web.Request) -> web.StreamResponse:
    """As vLLM's `/tokenize`: the prompt's tokens as the simulator counts them in `usage`
    (whitespace words), for `prompt`/`content` text or chat `messages`."""
    state = request.app[STATE]
    await state.hold()
    try:
        body = await _read_object(request)
        _check_model(state, body)
        if "messages" in body:
            try:
                text = chat_prompt(body["messages"])[0]
            except ValueError as exc:
                raise BadRequest(str(exc), param="messages") from None
        else:
            given = body.get("prompt", body.get("content"))
            if not isinstance(given, str):
                raise BadRequest("give the text to count as 'prompt' (or 'content'), or chat "
                                 "'messages'", param="prompt")
            text = given
    except BadRequest as exc:
        return error_response(exc.status, str(exc), exc.param)
    tokens = [int.from_bytes(hashlib.blake2b(w.encode(), digest_size=2).digest(), "big")
              for w in text.split()]
    return json_response({"count": len(tokens), "tokens": tokens,
                          "max_model_len": state.options.max_model_len})


async def models(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    await state.hold()
    o = state.options
    return json_response({"object": "list", "data": [
        {"id": o.model, "object": "model", "created": state.started, "owned_by": "llmscen",
         "root": o.model, "parent": None, "max_model_len": o.max_model_len}]})


async def version(request: web.Request) -> web.StreamResponse:
    """As vLLM's `/version`, naming the simulator."""
    from llmscen import __version__

    return web.json_response({"version": __version__, "server": "llmscen openai-sim"})


async def health(request: web.Request) -> web.StreamResponse:
    await request.app[STATE].hold()
    return web.Response(status=200)


async def metrics(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    await state.hold()
    return web.Response(body=prometheus_text(state).encode(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
