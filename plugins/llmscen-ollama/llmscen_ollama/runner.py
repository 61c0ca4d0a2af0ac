"""The `ollama` runner: Ollama's native API over aiohttp.

One `ClientSession` per runner, opened in `start()` so the runner pickles
until then (the engine rebuilds it inside worker processes). A streamed reply
is split into NDJSON lines at the bytes level and each line decoded once; one
timestamp is taken per socket read, on the engine's clock
(`time.perf_counter_ns`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from pydantic import BaseModel

from llmscen.plugin import Call, Exchange, Scrubber, classify_client_error, describe, guarded
from llmscen_ollama.options import API_PATHS, OllamaTargetOptions
from llmscen_ollama.stream import (
    LineSplitter,
    StreamProblem,
    StreamState,
    excerpt,
    parse_error_body,
    read_body,
)

if TYPE_CHECKING:
    from llmscen.plugin import TargetPlan

class OllamaRunner:
    """Runner for one Ollama target; build it with `OllamaPlugin.create_runner`."""

    def __init__(self, target: TargetPlan) -> None:
        options = target.options
        if not isinstance(options, OllamaTargetOptions):
            raw = options.model_dump() if isinstance(options, BaseModel) else options
            options = OllamaTargetOptions.model_validate(raw)
        self.target = target
        self.options = options
        self.base = (target.url or "").rstrip("/")
        self._secret = options.api_key.get_secret_value() if options.api_key else ""
        self._scrubber = Scrubber.of(target)     # api key, secret headers, URL credentials
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._session: aiohttp.ClientSession | None = None   # made in start(): it does not pickle

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.base:
            raise ConnectionError(f"target {self.target.name!r} has no URL "
                                  "(give `url:` or a `service:`)")
        if self._session is None:
            from llmscen_ollama import __version__  # the package imports this module

            headers = {"User-Agent": f"llmscen-ollama/{__version__}", "Content-Type": "application/json"}
            if self._secret:
                headers["Authorization"] = f"Bearer {self._secret}"
            headers.update(self.options.headers)
            connector = aiohttp.TCPConnector(limit=self.options.max_connections,
                                             limit_per_host=0, ssl=self.options.verify_tls)
            self._session = aiohttp.ClientSession(connector=connector, headers=headers,
                                                  timeout=aiohttp.ClientTimeout(total=None),
                                                  cookie_jar=aiohttp.DummyCookieJar())

    async def stop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def server_metrics(self) -> dict[str, float]:
        return {}   # Ollama exposes no counters

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("runner used before start()")
        return self._session

    # -- preflight -------------------------------------------------------------------------

    async def preflight(self, calls: Sequence[Call]) -> list[str]:
        """Checks that `/api/tags` lists the target's model and every model a request names."""
        return [self._scrub(problem) for problem in await self._check_models(calls)]

    async def _check_models(self, calls: Sequence[Call]) -> list[str]:
        name, url = self.target.name, self.base + "/api/tags"
        try:
            async with self.session.get(url, timeout=self._timeout(None)) as resp:
                raw = await resp.read()
                status = resp.status
        # ValueError: aiohttp refuses a password in the URL beside an Authorization header
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            return [f"target {name!r}: cannot list models at {url}: {describe(exc)}"]
        if not 200 <= status < 300:
            _, message = parse_error_body(raw)
            hint = " (check api_key)" if status in (401, 403) else ""
            return [f"target {name!r}: GET {url} answered HTTP {status}{hint}: {message}"]
        try:
            served = [str(m["name"]) for m in orjson.loads(raw)["models"]]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            return [f"target {name!r}: GET {url} did not return a model list "
                    f"({describe(exc)}): {excerpt(raw)!r}"]
        wanted: dict[str, list[str]] = {self.options.model: []}
        for call in calls:
            body = call.payload.get("body")
            if isinstance(body, dict) and isinstance(body.get("model"), str):
                wanted.setdefault(body["model"], []).append(call.request)
        known = {full_name(m) for m in served}
        problems = []
        for model, requests in wanted.items():
            if full_name(model) not in known:
                used_by = f" (request {', '.join(map(repr, sorted(set(requests))))})" \
                    if requests else ""
                problems.append(f"target {name!r}: model {model!r}{used_by} is not on "
                                f"{self.base}; it has: {', '.join(served) or 'none'} "
                                f"(`ollama pull {model}`)")
        return problems

    # -- sending ---------------------------------------------------------------------------

    async def send(self, call: Call, exchange: Exchange) -> None:
        def classify(exc: Exception) -> tuple[str, str]:
            return self._classify(exc, exchange, call)

        try:
            await guarded(self._send(call, exchange), exchange, classify)
        finally:   # one place for every message: the request's own headers are secrets too
            if exchange.error_message:
                exchange.error_message = self._scrub(exchange.error_message, call.payload)

    async def _send(self, call: Call, ex: Exchange) -> None:
        payload = call.payload
        api = payload.get("api") or self.options.api
        body = payload.get("body") or {}
        # Ollama streams unless told not to, so the flag is always sent
        stream = call.stream or body.get("stream") is True
        try:
            data = self.encode(body, stream)
        except (orjson.JSONEncodeError, TypeError) as exc:
            ex.sent_ns = ex.end_ns = time.perf_counter_ns()
            ex.fail("client", f"request body cannot be encoded as JSON: {exc}")
            return
        url = self.base + API_PATHS[api]
        headers = payload.get("headers") or None
        ex.sent_ns = time.perf_counter_ns()
        async with self.session.post(url, data=data, headers=headers,
                                     timeout=self._timeout(call.timeout)) as resp:
            ex.first_byte_ns = time.perf_counter_ns()
            ex.status = resp.status
            if not 200 <= resp.status < 300:
                await self._read_error(resp, ex)
            elif stream:
                await self._read_stream(resp, ex, api == "chat")
            else:
                await self._read_json(resp, ex, api == "chat")

    def encode(self, body: dict[str, Any], stream: bool) -> bytes:
        """The request bytes: the body with the target's defaults filled in."""
        full = {**body, "stream": stream}
        full.setdefault("model", self.options.model)
        if self.options.model_options:
            own = body.get("options")
            full["options"] = {**self.options.model_options,
                               **(own if isinstance(own, dict) else {})}
        if self.options.keep_alive is not None:
            full.setdefault("keep_alive", self.options.keep_alive)
        return orjson.dumps(full)

    def _timeout(self, seconds: float | None) -> aiohttp.ClientTimeout:
        value = self.options.timeout if seconds is None else seconds
        timeout = self._timeouts.get(value)
        if timeout is None:
            timeout = self._timeouts[value] = aiohttp.ClientTimeout(total=value or None)
        return timeout

    async def _read_json(self, resp: aiohttp.ClientResponse, ex: Exchange, chat: bool) -> None:
        raw = await resp.read()
        ex.end_ns = time.perf_counter_ns()
        ex.bytes_received = len(raw)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            ex.fail("protocol", f"response is not JSON ({exc}): {excerpt(raw)!r}")
            return
        problem = read_body(obj, ex, chat)
        if problem is not None:
            ex.fail("protocol", problem)

    async def _read_stream(self, resp: aiohttp.ClientResponse, ex: Exchange, chat: bool) -> None:
        splitter = LineSplitter()
        state = StreamState(chat, ex.itl_us)
        received = 0
        now = 0
        try:
            async for buf in resp.content.iter_any():
                now = time.perf_counter_ns()    # one stamp per read: its lines arrived together
                received += len(buf)
                lines = splitter.feed(buf)
                if lines:
                    state.lines(lines, now)
            now = time.perf_counter_ns()
            state.lines(splitter.close(), now)
        except StreamProblem as problem:
            ex.end_ns = now
            state.fill(ex, complete=False)
            ex.fail(problem.error, problem.message)
            return
        except BaseException:
            state.fill(ex, complete=False)     # keep what arrived before the failure
            raise
        finally:
            ex.bytes_received = received
        ex.end_ns = now
        state.fill(ex)

    async def _read_error(self, resp: aiohttp.ClientResponse, ex: Exchange) -> None:
        raw = await resp.read()
        ex.end_ns = time.perf_counter_ns()
        ex.bytes_received = len(raw)
        body, message = parse_error_body(raw)
        ex.body = body
        reason = f" {resp.reason}" if resp.reason else ""
        ex.fail("http", f"HTTP {resp.status}{reason}: {message}")

    def _classify(self, exc: Exception, ex: Exchange, call: Call) -> tuple[str, str]:
        limit = self.options.timeout if call.timeout is None else call.timeout
        return classify_client_error(exc, ex, limit, "ollama")

    def _scrub(self, message: str, payload: dict[str, Any] | None = None) -> str:
        """Never let a secret reach a message, even when a server echoes it back."""
        scrub = self._scrubber if payload is None else self._scrubber.with_secrets_of(payload)
        return scrub(message)


def full_name(model: str) -> str:
    """Ollama's name for a model: `llama3.2` is `llama3.2:latest`."""
    return model if ":" in model.rsplit("/", 1)[-1] else model + ":latest"
