"""The `openai` plugin: OpenAI-compatible HTTP APIs over aiohttp.

One `ClientSession` per runner with keep-alive. Request bodies are serialised
with orjson and cached per payload object (the template renderer hands back
the same object for a payload without templates). Requests to http(s) URLs go out
through openai_transport.py, which splits, decodes and stamps a stream where
its bytes arrive (sse.py splits at the bytes level; each event is decoded
once; one timestamp per socket read); aiohttp sends the rest (other schemes,
redirects) and the model list, health and metrics requests.

A reused keep-alive connection that the server already closed (llama.cpp does
this after every streamed reply) fails before any response byte; such a
request is sent once more on a new connection and counted in `reconnects`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from llmscen import __version__ as _llmscen_version
from llmscen.engine.protocol import PLUGIN_API_VERSION, Call, Exchange
from llmscen.errors import RunError
from llmscen.runners.guard import describe, guarded
from llmscen.runners.http_errors import classify_client_error
from llmscen.runners.http_request import text_headers
from llmscen.runners.keepalive import (
    STALE_CONNECTION_ERRORS,
    ReuseTrackingConnector,
    forget_reuse,
    is_stale_connection,
    was_reused,
)
from llmscen.runners.openai_responses import (
    StreamBody,
    StreamProblem,
    excerpt,
    parse_error_body,
    read_body,
)
from llmscen.runners.openai_transport import (
    Origin,
    Reply,
    Transport,
    TransportError,
    split_url,
)
from llmscen.runners.secrets import Headers, Scrubber
from llmscen.runners.sessions import remember_turn, session_problem, with_history
from llmscen.runners.tokenize import NoTokenizer, count_tokens
from llmscen.spec.units import Duration

if TYPE_CHECKING:
    from llmscen.compile.plan import TargetPlan

Api = Literal["chat", "completions", "embeddings", "models"]
API_PATHS: dict[str, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
    "models": "/models",
}
METRICS = frozenset({
    "latency", "latency_sent", "ttft", "ttft_sent", "ttft_answer", "itl", "tpot",
    "schedule_lag", "reasoning_tokens", "answer_tokens", "token_mismatch_rate",
    "output_tokens", "input_tokens", "chunks", "bytes_received", "throughput",
    "output_token_throughput", "goodput", "error_rate", "check_failure_rate", "success_rate",
})


class OpenAITargetOptions(BaseModel):
    """Target keys of the `openai` plugin."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="model name sent in every request body that has none",
                       examples=["sim-model", "meta-llama/Llama-3.1-8B-Instruct"])
    api_key: SecretStr | None = Field(None, description="sent as `Authorization: Bearer`; "
                                                        "empty means none")
    api: Api = Field("chat", description="default API for this target's requests")
    timeout: Duration = Field(60.0, description="per-request timeout")
    headers: Headers = Field(default_factory=dict, description="extra request headers")
    verify_tls: bool = Field(True, description="check HTTPS certificates")
    max_connections: int = Field(0, ge=0, description="connection pool size; 0 = unlimited")
    include_usage: bool = Field(True, description="ask streams for `stream_options.include_usage`")
    reuse_connections: bool = Field(True, description="HTTP keep-alive")
    kernel_timestamps: bool = Field(True, description="stamp each read with the kernel's "
                                    "receive time (plain http on Linux); false: when it is read")

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: Any) -> Any:
        return None if value in ("", None) else value


class OpenAIRequestOptions(BaseModel):
    """Request (or step) keys of the `openai` plugin."""

    model_config = ConfigDict(extra="forbid")

    api: Api | None = Field(None, description="overrides the target's `api`")
    body: dict[str, Any] = Field(default_factory=dict,
                                 description="JSON body; any keys pass through; `model` and "
                                             "`stream` are filled in when absent")
    path: str | None = Field(None, description="path from the server root (or a full URL) "
                                               "instead of the API's own")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers")


class TargetUnavailable(ConnectionError):
    """The target did not become ready (vllm `/health`) or is misconfigured."""


def split_base_url(url: str) -> tuple[str, str]:
    """(server root, API base) from `http://h:p`, `http://h:p/` or `http://h:p/v1`."""
    base = url.rstrip("/")
    if base.endswith("/v1"):
        return base[:-3], base
    return base, base + "/v1"


class OpenAIRunner:
    """Runner for one OpenAI-compatible target; build it with `OpenAIPlugin.create_runner`."""

    options_model: ClassVar[type[OpenAITargetOptions]] = OpenAITargetOptions

    def __init__(self, target: TargetPlan) -> None:
        options = target.options
        if not isinstance(options, self.options_model):
            raw = options.model_dump() if isinstance(options, BaseModel) else options
            options = self.options_model.model_validate(raw)
        self.target = target
        self.options = options
        self._reconnects = 0
        self._session: aiohttp.ClientSession | None = None
        self._fresh_session: aiohttp.ClientSession | None = None
        self._wire: Transport | None = None
        self._heads: dict[tuple[str, str], tuple[Origin, bytes] | None] = {}
        self._bodies: dict[int, tuple[Any, bool, bytes]] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._secret = options.api_key.get_secret_value() if options.api_key else ""
        self._scrubber = Scrubber.of(target)
        self.root = self.api_base = ""
        self._urls: dict[str, str] = {}
        if target.url:
            self._set_url(target.url)

    def _set_url(self, url: str) -> None:
        self.root, self.api_base = split_base_url(url)
        self._urls = {api: self.api_base + path for api, path in API_PATHS.items()}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if not self._urls:
            raise TargetUnavailable(f"target {self.target.name!r} has no URL "
                                    "(give `url:` or a `service:`)")
        if self._session is None:
            self._session = self._new_session(force_close=not self.options.reuse_connections)
        if self._wire is None:
            self._wire = Transport(limit=self.options.max_connections,
                                   keep_alive=self.options.reuse_connections,
                                   verify_tls=self.options.verify_tls,
                                   kernel_timestamps=self.options.kernel_timestamps)

    async def stop(self) -> None:
        for session in (self._session, self._fresh_session):
            if session is not None:
                await session.close()
        self._session = self._fresh_session = None
        if self._wire is not None:
            self._wire.close()

    @property
    def reconnects(self) -> int:
        """Requests sent again after a pooled connection turned out closed."""
        return self._reconnects + (self._wire.reconnects if self._wire is not None else 0)

    async def server_metrics(self) -> dict[str, float]:
        return {}

    async def count_tokens(self, text: str, chat: bool) -> int:
        """The server's count of a prompt, from its /tokenize (engine.protocol.Tokenizing)."""
        try:
            return await count_tokens(self.session, self.root, self.options.model, text, chat,
                                      f"target {self.target.name!r}")
        except RunError as exc:
            raise NoTokenizer(self._scrub(str(exc))) from None

    async def server_info(self) -> dict[str, str]:
        """What the server says it is (for reports): vLLM's `/version`, the models'
        `owned_by`, the `Server` header; {} when it says nothing."""
        info: dict[str, str] = {}
        for key, url in (("version", self._url_for("/version")), ("models", self._urls["models"])):
            try:
                async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=3)) as resp:
                    raw = await resp.read()
                    if resp.headers.get("Server"):
                        info.setdefault("server header", resp.headers["Server"])
                    if resp.status != 200:
                        continue
                body = orjson.loads(raw)
            except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError):
                continue
            if key == "version" and isinstance(body, dict) and body.get("version"):
                info["version"] = str(body["version"])
                info["name"] = str(body.get("server") or "vLLM")
            elif key == "models" and isinstance(body, dict):
                owners = {str(m.get("owned_by")) for m in body.get("data") or []
                          if isinstance(m, dict) and m.get("owned_by")}
                if owners:
                    info["owned_by"] = ", ".join(sorted(owners))
        return {k: self._scrub(v) for k, v in info.items()}

    def _default_headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"llmscen/{_llmscen_version}",
                   "Content-Type": "application/json"}
        if self._secret:
            headers["Authorization"] = f"Bearer {self._secret}"
        headers.update(self.options.headers)
        return headers

    def _new_session(self, force_close: bool) -> aiohttp.ClientSession:
        options = self.options
        headers = self._default_headers()
        connector = ReuseTrackingConnector(limit=options.max_connections, limit_per_host=0,
                                           force_close=force_close,
                                           ssl=options.verify_tls)
        return aiohttp.ClientSession(connector=connector, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=None),
                                     cookie_jar=aiohttp.DummyCookieJar())

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("runner used before start()")
        return self._session

    # -- preflight -------------------------------------------------------------------------

    async def preflight(self, calls: Sequence[Call]) -> list[str]:
        """Checks that `/v1/models` lists the target's model and every model a request names."""
        return [self._scrub(problem) for problem in await self._check_models(calls)]

    async def _check_models(self, calls: Sequence[Call]) -> list[str]:
        name, url = self.target.name, self._urls["models"]
        try:
            async with self.session.get(url, timeout=self._timeout(None)) as resp:
                raw = await resp.read()
                status = resp.status
        # ValueError: aiohttp refuses a password in the URL beside an Authorization header
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            return [f"target {name!r}: cannot list models at {url}: {describe(exc)}"]
        if status == 404:
            return []       # the server does not list models; nothing to check against
        if not 200 <= status < 300:
            _, message = parse_error_body(raw)
            hint = " (check api_key)" if status in (401, 403) else ""
            return [f"target {name!r}: GET {url} answered HTTP {status}{hint}: {message}"]
        try:
            listed = orjson.loads(raw)["data"]
            served = [str(m["id"]) for m in listed]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            return [f"target {name!r}: GET {url} did not return a model list ({exc})"]
        wanted: dict[str, list[str]] = {self.options.model: []}
        for call in calls:
            body = call.payload.get("body")
            api = call.payload.get("api") or self.options.api
            if api != "models" and isinstance(body, dict) and isinstance(body.get("model"), str):
                wanted.setdefault(body["model"], []).append(call.request)
        problems = []
        for model, requests in wanted.items():
            if model not in served:
                used_by = f" (request {', '.join(map(repr, sorted(set(requests))))})" \
                    if requests else ""
                problems.append(f"target {name!r}: model {model!r}{used_by} is not served by "
                                f"{self.api_base}; it serves: {', '.join(served) or 'none'}")
        return problems

    # -- sending ---------------------------------------------------------------------------

    async def send(self, call: Call, exchange: Exchange) -> None:
        def classify(exc: Exception) -> tuple[str, str]:
            return self._classify(exc, exchange, call)

        try:
            await guarded(self._send(call, exchange), exchange, classify)
        finally:
            if exchange.error_message:
                exchange.error_message = self._scrub(exchange.error_message, call.payload)
        if call.session is not None and exchange.error is None:
            remember_turn(call.session, call.payload, exchange.text)

    async def _send(self, call: Call, ex: Exchange) -> None:
        payload = call.payload if call.session is None else with_history(call.session,
                                                                         call.payload)
        api = payload.get("api") or self.options.api
        path = payload.get("path")
        url = self._urls[api] if path is None else self._url_for(path)
        stream = False
        data: bytes | None = None
        if api != "models":
            body = payload.get("body") or {}
            stream = api in ("chat", "completions") and (call.stream or body.get("stream") is True)
            try:
                data = self._encode(body, stream)
            except (orjson.JSONEncodeError, TypeError) as exc:
                ex.fail("client", f"request body cannot be encoded as JSON: {exc}")
                return
        method = "GET" if data is None else "POST"
        headers = text_headers(payload.get("headers")) or None
        head = self._head(method, url, headers) if self._wire is not None else None
        if head is not None:
            await self._send_wire(head, method, url, data, headers, stream, api, call, ex)
            return
        await self._send_aiohttp(method, url, data, headers, stream, api, call, ex)

    async def _send_aiohttp(self, method: str, url: str, data: bytes | None,
                            headers: dict[str, str] | None, stream: bool, api: str, call: Call,
                            ex: Exchange) -> None:
        timeout = self._timeout(call.timeout)
        session = self.session
        ex.sent_ns = ex.sent_ns or time.perf_counter_ns()
        for attempt in (0, 1):
            forget_reuse()
            try:
                async with session.request(method, url, data=data, headers=headers,
                                           timeout=timeout) as resp:
                    ex.first_byte_ns = time.perf_counter_ns()
                    ex.status = status = resp.status
                    if not 200 <= status < 300:
                        await self._read_error(resp, ex)
                    elif stream:
                        await self._read_stream(resp, ex, api == "chat")
                    else:
                        await self._read_json(resp, ex, api)
                    return
            except STALE_CONNECTION_ERRORS as exc:
                # Retry only what never reached the server: no response byte, pooled connection.
                if attempt or ex.first_byte_ns or not was_reused() or not is_stale_connection(exc):
                    raise
                self._reconnects += 1
                session = self._fresh()

    async def _send_wire(self, head: tuple[Origin, bytes], method: str, url: str,
                         data: bytes | None, headers: dict[str, str] | None, stream: bool,
                         api: str, call: Call, ex: Exchange) -> None:
        """The request through openai_transport: a stream is accounted as it arrives."""
        origin, start = head
        request = start + (b"Content-Length: %d\r\n\r\n" % len(data) + data
                           if data is not None else b"\r\n")
        body = StreamBody(api == "chat", ex.itl_us) if stream else None
        wire = self._wire
        assert wire is not None

        streaming = False

        def on_headers(reply: Reply, now_ns: int) -> None:
            nonlocal streaming
            ex.first_byte_ns = now_ns
            ex.status = reply.status
            streaming = reply.streamed

        limit = self.options.timeout if call.timeout is None else call.timeout
        ex.sent_ns = time.perf_counter_ns()
        try:
            reply = await wire.send(origin, request, body.feed if body is not None else None,
                                    limit, on_headers)
            if body is not None and reply.streamed:
                body.finish(ex, reply.end_ns)
                return
        except StreamProblem as problem:
            assert body is not None
            ex.end_ns = body.last_ns
            body.cut(ex)
            ex.fail(problem.error, problem.message)
            return
        except BaseException:
            if body is not None and streaming:
                body.cut(ex)
            raise
        status = reply.status
        if 300 <= status < 400 and "location" in reply.headers:
            # aiohttp follows redirects: the request goes again, through it
            ex.first_byte_ns = 0
            ex.status = None
            await self._send_aiohttp(method, url, data, headers, stream, api, call, ex)
            return
        raw = b"".join(reply.body)
        ex.end_ns = reply.end_ns
        if not 200 <= status < 300:
            self._error_body(raw, status, reply.reason, ex)
        elif stream:
            self._json_body(raw, ex, "chat" if api == "chat" else "completions")
            ex.fail("protocol", "asked for a stream but the server answered with one JSON body")
        else:
            self._json_body(raw, ex, api)

    def _head(self, method: str, url: str,
              extra: dict[str, str] | None) -> tuple[Origin, bytes] | None:
        """Origin and request head (without Content-Length) for the wire path; None when
        aiohttp must send it. Cached for requests without their own headers."""
        key = (method, url)
        if not extra and key in self._heads:
            return self._heads[key]
        split = split_url(url)
        if split is None:
            head = None
        else:
            origin, host, target = split
            fields = {"host": ("Host", host)}
            for name, value in {**self._default_headers(), "Accept": "*/*",
                                "Accept-Encoding": "gzip, deflate", **(extra or {})}.items():
                fields[name.lower()] = (name, value)
            lines = [f"{method} {target} HTTP/1.1"]
            for name, value in fields.values():
                if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                    raise ValueError(f"header {name!r} holds a line break")
                lines.append(f"{name}: {value}")
            head = (origin, ("\r\n".join(lines) + "\r\n").encode("utf-8"))
        if not extra:
            if len(self._heads) >= 256:
                self._heads.clear()
            self._heads[key] = head
        return head

    def _fresh(self) -> aiohttp.ClientSession:
        """A session that never reuses connections, for the one retry."""
        if self._fresh_session is None:
            self._fresh_session = self._new_session(force_close=True)
        return self._fresh_session

    def _encode(self, body: dict[str, Any], stream: bool) -> bytes:
        """The request bytes, cached per body object (payloads are not mutated after render)."""
        key = id(body)
        hit = self._bodies.get(key)
        if hit is not None and hit[0] is body and hit[1] is stream:
            return hit[2]
        full = body if "model" in body else {"model": self.options.model, **body}
        if stream:
            full = {**full, "stream": True}
            if self.options.include_usage and "stream_options" not in full:
                full["stream_options"] = {"include_usage": True}
        data = orjson.dumps(full)
        if len(self._bodies) >= 256:    # templated bodies are new objects each call
            self._bodies.clear()
        self._bodies[key] = (body, stream, data)
        return data

    def _url_for(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.root + (path if path.startswith("/") else "/" + path)

    def _timeout(self, seconds: float | None) -> aiohttp.ClientTimeout:
        value = self.options.timeout if seconds is None else seconds
        timeout = self._timeouts.get(value)
        if timeout is None:
            timeout = self._timeouts[value] = aiohttp.ClientTimeout(total=value or None)
        return timeout

    async def _read_json(self, resp: aiohttp.ClientResponse, ex: Exchange, api: str) -> None:
        raw = await resp.read()
        ex.end_ns = time.perf_counter_ns()
        self._json_body(raw, ex, api)

    def _json_body(self, raw: bytes, ex: Exchange, api: str) -> None:
        ex.bytes_received = len(raw)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            ex.fail("protocol", f"response is not JSON ({exc}): {excerpt(raw)!r}")
            return
        problem = read_body(api, obj, ex)
        if problem is not None:
            ex.fail("protocol", problem)

    async def _read_stream(self, resp: aiohttp.ClientResponse, ex: Exchange, chat: bool) -> None:
        if resp.content_type == "application/json":
            await self._read_json(resp, ex, "chat" if chat else "completions")
            ex.fail("protocol", "asked for a stream but the server answered with one JSON body")
            return
        body = StreamBody(chat, ex.itl_us)
        feed = body.feed
        try:
            async for buf in resp.content.iter_any():
                feed(buf, time.perf_counter_ns())   # one stamp per read: its events came together
            body.finish(ex, time.perf_counter_ns())
        except StreamProblem as problem:
            ex.end_ns = body.last_ns
            body.cut(ex)
            ex.fail(problem.error, problem.message)
        except BaseException:
            body.cut(ex)                        # keep what arrived before the failure
            raise

    async def _read_error(self, resp: aiohttp.ClientResponse, ex: Exchange) -> None:
        raw = await resp.read()
        ex.end_ns = time.perf_counter_ns()
        self._error_body(raw, resp.status, resp.reason or "", ex)

    def _error_body(self, raw: bytes, status: int, reason: str, ex: Exchange) -> None:
        ex.bytes_received = len(raw)
        body, message = parse_error_body(raw)
        ex.body = body
        reason = f" {reason}" if reason else ""
        ex.fail("http", f"HTTP {status}{reason}: {message}")   # send() scrubs it

    def _classify(self, exc: Exception, ex: Exchange, call: Call) -> tuple[str, str]:
        if isinstance(exc, TransportError):
            return exc.error, exc.message
        limit = self.options.timeout if call.timeout is None else call.timeout
        return classify_client_error(exc, ex, limit, self.target.plugin)

    def _scrub(self, message: str, payload: dict[str, Any] | None = None) -> str:
        """Never let a secret reach a message, even when a server echoes it back: the
        target's (api key, headers, URL) and, given the payload, the request's own."""
        scrub = self._scrubber if payload is None else self._scrubber.with_secrets_of(payload)
        return scrub(message)


class OpenAIPlugin:
    """Entry point `openai` in `llmscen.plugins`."""

    name: ClassVar[str] = "openai"
    api_version: ClassVar[int] = PLUGIN_API_VERSION
    description: ClassVar[str] = ("OpenAI-compatible chat, completions, embeddings and models "
                                  "APIs over HTTP, streaming with SSE")
    target_options: type[BaseModel] = OpenAITargetOptions
    request_options: type[BaseModel] = OpenAIRequestOptions
    metrics: frozenset[str] = METRICS
    runner_class: ClassVar[type[OpenAIRunner]] = OpenAIRunner

    def create_runner(self, target: TargetPlan) -> OpenAIRunner:
        return self.runner_class(target)

    def synthetic_payload(self, target_options: BaseModel, request_options: BaseModel,
                          output_tokens: bool) -> dict[str, Any]:
        """The request keys a `synthetic:` row fills when the request gives no `body`: its
        prompt as the one user message (or the completions prompt) and its output length as
        `max_tokens` (engine.protocol.Synthesizing)."""
        api = getattr(request_options, "api", None) or getattr(target_options, "api", "chat")
        body: dict[str, Any] = {"messages": [{"role": "user", "content": "{{ row.prompt }}"}]} \
            if api == "chat" else {"prompt": "{{ row.prompt }}"}
        if output_tokens:
            body["max_tokens"] = "{{ row.output_tokens }}"
        return {"body": body}

    def session_problem(self, target_options: BaseModel,
                        request_options: BaseModel) -> str | None:
        """Sessions need the chat API (engine.protocol.Conversing)."""
        api = getattr(request_options, "api", None) or getattr(target_options, "api", "chat")
        return session_problem(str(api), getattr(request_options, "body", {}))


plugin = OpenAIPlugin()
