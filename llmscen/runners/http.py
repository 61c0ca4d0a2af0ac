"""The `http` plugin: plain HTTP steps (health checks, logins, REST calls) over aiohttp.

A step names one method and a path (`get: /health`), appended to the target's
URL (a full URL is used as it is). One keep-alive session per runner; a request
that finds its pooled connection closed is sent once more on a new one, as in
the openai runner. Redirects are followed here, not by aiohttp, so each hop
sends and stores the right cookies and credentials never go to another origin.

Cookies live in one jar per asyncio task. The engine runs each open-model
arrival (one flow iteration) and each closed-model virtual user in its own
task: a login's cookie reaches its flow's later steps and no other flow, and a
closed-model user keeps its cookies across iterations, as a browser would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from yarl import URL

from llmscen import __version__ as _llmscen_version
from llmscen.engine.protocol import PLUGIN_API_VERSION, Call, Exchange
from llmscen.runners.guard import describe, guarded
from llmscen.runners.http_errors import classify_client_error
from llmscen.runners.http_request import (
    METHODS,
    encode_body,
    lowered,
    method_of,
    param_pairs,
    redirected,
    with_cookies,
)
from llmscen.runners.keepalive import (
    STALE_CONNECTION_ERRORS,
    ReuseTrackingConnector,
    forget_reuse,
    is_stale_connection,
    was_reused,
)
from llmscen.runners.secrets import Headers, Scrubber
from llmscen.spec.units import Duration

if TYPE_CHECKING:
    from llmscen.compile.plan import TargetPlan

METRICS = frozenset({"latency", "latency_sent", "schedule_lag", "bytes_received", "throughput",
                     "goodput", "error_rate", "check_failure_rate", "success_rate"})
MAX_REDIRECTS = 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
EXCERPT_CHARS = 200

Scalar = str | int | float | bool | None
Params = dict[str, Scalar | list[Scalar]]


class HttpTargetOptions(BaseModel):
    """Target keys of the `http` plugin."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: Duration = Field(30.0, description="per-request timeout, redirects included")
    headers: Headers = Field(default_factory=dict, description="headers sent with every step")
    verify_tls: bool = Field(True, description="check HTTPS certificates")
    max_connections: int = Field(0, ge=0, description="connection pool size; 0 = unlimited")
    follow_redirects: bool = Field(True, description="follow up to 10 redirects; when off, a "
                                                     "3xx answer is the step's response")
    cookies: bool = Field(True, description="keep cookies the server sets for the flow's later "
                                            "steps (one jar per flow iteration in open phases, "
                                            "per virtual user in closed ones)")


_METHOD = "{}: a path appended to the target URL, or a full URL"


class HttpRequestOptions(BaseModel):
    """Step keys of the `http` plugin: one method key, then what to send."""

    model_config = ConfigDict(extra="forbid")

    get: str | None = Field(None, description="path appended to the target URL, or a full URL")
    post: str | None = Field(None, description=_METHOD.format("POST"))
    put: str | None = Field(None, description=_METHOD.format("PUT"))
    patch: str | None = Field(None, description=_METHOD.format("PATCH"))
    delete: str | None = Field(None, description=_METHOD.format("DELETE"))
    head: str | None = Field(None, description=_METHOD.format("HEAD"))
    options: str | None = Field(None, description=_METHOD.format("OPTIONS"))
    headers: dict[str, str] = Field(default_factory=dict, description="headers of this step")
    json_body: Any = Field(None, alias="json", description="a JSON body (any JSON value)")
    form: Params | None = Field(None, description="a form body, sent urlencoded")
    body: str | None = Field(None, description="a raw body, sent as it is")
    query: Params = Field(default_factory=dict, description="query parameters added to the URL")

    @field_validator("body", mode="before")
    @classmethod
    def _body_is_text(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise ValueError("`body` is raw text; use `json:` for a JSON body or `form:` for "
                             "a form")
        return value

    @model_validator(mode="after")
    def _one_method_one_body(self) -> HttpRequestOptions:
        given = [m for m in METHODS if getattr(self, m) is not None]
        if len(given) != 1:
            found = f"; this one has {', '.join(given)}" if given else ""
            raise ValueError(f"a step takes exactly one method key: {', '.join(METHODS)} "
                             f"(e.g. `get: /health`){found}")
        bodies = [k for k in ("json", "form", "body")
                  if (k == "json" and "json_body" in self.model_fields_set)
                  or (k != "json" and getattr(self, k) is not None)]
        if len(bodies) > 1:
            raise ValueError(f"a step sends at most one body: `json`, `form` or `body`; this one "
                             f"has {', '.join(bodies)}")
        return self


class HttpRunner:
    """Runner for one HTTP target; build it with `HttpPlugin.create_runner`."""

    def __init__(self, target: TargetPlan) -> None:
        options = target.options
        if not isinstance(options, HttpTargetOptions):
            raw = options.model_dump() if isinstance(options, BaseModel) else options
            options = HttpTargetOptions.model_validate(raw)
        self.target = target
        self.options = options
        self.base = (target.url or "").rstrip("/")
        self._scrubber = Scrubber.of(target)
        self.reconnects = 0
        # made in start(): sessions and weak references do not pickle
        self._session: aiohttp.ClientSession | None = None
        self._fresh_session: aiohttp.ClientSession | None = None
        self._jars: weakref.WeakKeyDictionary[asyncio.Task[Any], aiohttp.CookieJar] | None = None
        self._timeout = aiohttp.ClientTimeout(total=options.timeout or None)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.base:
            raise ConnectionError(f"target {self.target.name!r} has no URL "
                                    "(give `url:` or a `service:`)")
        if self._session is None:
            self._session = self._new_session(force_close=False)
            self._jars = weakref.WeakKeyDictionary()

    async def stop(self) -> None:
        for session in (self._session, self._fresh_session):
            if session is not None:
                await session.close()
        self._session = self._fresh_session = None
        self._jars = None

    def _new_session(self, force_close: bool) -> aiohttp.ClientSession:
        # the jar is ours (per task), so the session keeps no cookies of its own
        connector = ReuseTrackingConnector(limit=self.options.max_connections, limit_per_host=0,
                                           force_close=force_close, ssl=self.options.verify_tls)
        headers = {"User-Agent": f"llmscen/{_llmscen_version}", **self.options.headers}
        return aiohttp.ClientSession(connector=connector, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=None),
                                     cookie_jar=aiohttp.DummyCookieJar())

    async def server_metrics(self) -> dict[str, float]:
        return {}

    async def preflight(self, calls: Sequence[Call]) -> list[str]:
        """Checks that the target accepts TCP connections; sends no HTTP request."""
        url = URL(self.base)
        host, port = url.host, url.port
        if not host or port is None:
            return [self._scrubber(f"target {self.target.name!r}: URL {self.base!r} has no host")]
        limit = min(self.options.timeout or 10.0, 10.0)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), limit)
        except (OSError, asyncio.TimeoutError) as exc:
            return [f"target {self.target.name!r}: cannot connect to {host}:{port}: "
                    f"{describe(exc) if str(exc) else f'no answer within {limit:g}s'}"]
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return []

    # -- sending ---------------------------------------------------------------------------

    async def send(self, call: Call, exchange: Exchange) -> None:
        def classify(exc: Exception) -> tuple[str, str]:
            error, message = self._classify(exc, exchange, call)
            return error, self._scrub(message, call.payload)

        await guarded(self._send(call, exchange), exchange, classify)

    async def _send(self, call: Call, ex: Exchange) -> None:
        payload = call.payload
        if self._session is None:
            raise RuntimeError("runner used before start()")
        try:
            method, path = method_of(payload)
            url = self.url_for(path, payload.get("query"))
            headers, data = encode_body(payload)
        except (TypeError, ValueError) as exc:   # orjson's encode error is a TypeError
            ex.sent_ns = ex.end_ns = time.perf_counter_ns()
            ex.fail("client", self._scrub(f"the request cannot be built: {exc}", payload))
            return
        jar = self._jar()
        limit = self.options.timeout if call.timeout is None else call.timeout
        timeout = self._timeout if call.timeout is None else aiohttp.ClientTimeout(limit or None)
        ex.sent_ns = time.perf_counter_ns()
        for hop in range(MAX_REDIRECTS + 1):
            sent_headers = headers
            if jar is not None:
                sent_headers = with_cookies(headers, jar, url)
            async with await self._request(method, url, data=data, headers=sent_headers,
                                           timeout=timeout) as resp:
                if not ex.first_byte_ns:
                    ex.first_byte_ns = time.perf_counter_ns()
                ex.status = resp.status
                if jar is not None and resp.cookies:
                    jar.update_cookies(resp.cookies, resp.url)
                location = resp.headers.get("Location")
                if not (self.options.follow_redirects and location
                        and resp.status in REDIRECT_STATUSES):
                    await self._read(resp, ex, payload)
                    return
                if hop == MAX_REDIRECTS:
                    await self._read(resp, ex, payload)
                    ex.fail("http", f"stopped after {MAX_REDIRECTS} redirects")
                    return
                await resp.read()   # let the connection go back to the pool
                target = resp.url.join(URL(location))
                method, data, headers = redirected(method, data, headers, resp.status,
                                                   url, target)
                url = target
            left = limit - (time.perf_counter_ns() - ex.sent_ns) / 1e9 if limit else 0.0
            timeout = aiohttp.ClientTimeout(total=max(left, 0.001)) if limit else timeout

    async def _request(self, method: str, url: URL, **kwargs: Any) -> aiohttp.ClientResponse:
        """One request; sent again on a new connection when its pooled one was found closed."""
        assert self._session is not None
        forget_reuse()
        try:
            return await self._session.request(method, url, allow_redirects=False, **kwargs)
        except STALE_CONNECTION_ERRORS as exc:
            # no response byte on a reused connection: the server never handled it
            if not (was_reused() and is_stale_connection(exc)):
                raise
        self.reconnects += 1
        if self._fresh_session is None:
            self._fresh_session = self._new_session(force_close=True)
        return await self._fresh_session.request(method, url, allow_redirects=False, **kwargs)

    async def _read(self, resp: aiohttp.ClientResponse, ex: Exchange,
                    payload: dict[str, Any]) -> None:
        raw = await resp.read()
        ex.end_ns = time.perf_counter_ns()
        ex.bytes_received = len(raw)
        ex.headers = lowered(resp.headers.items())
        try:
            ex.text = text = raw.decode(resp.charset or "utf-8", "replace")
        except LookupError:     # a charset Python does not know
            ex.text = text = raw.decode("utf-8", "replace")
        status = resp.status
        if not 200 <= status < 400:
            reason = f" {resp.reason}" if resp.reason else ""
            shown = f": {excerpt(text)}" if text.strip() else ""
            ex.fail("http", self._scrub(f"HTTP {status}{reason}{shown}", payload))
        if not raw:
            return
        is_json = resp.content_type == "application/json" or resp.content_type.endswith("+json")
        if is_json or raw.lstrip()[:1] in (b"{", b"["):
            try:
                ex.body = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                if is_json:   # a body that merely looks like JSON may be anything
                    ex.fail("protocol", self._scrub(f"the response says it is JSON but is not "
                                                    f"({exc}): {excerpt(text)}", payload))

    # -- helpers ---------------------------------------------------------------------------

    def url_for(self, path: str, query: Any = None) -> URL:
        """`path` appended to the target URL (a full URL as it is), plus `query`."""
        if path.startswith(("http://", "https://")):
            url = URL(path)
        else:
            url = URL(self.base + (path if path.startswith("/") or not path else "/" + path))
        return url.extend_query(list(param_pairs(query))) if query else url

    def _jar(self) -> aiohttp.CookieJar | None:
        task = asyncio.current_task()
        if not self.options.cookies or self._jars is None or task is None:
            return None
        jar = self._jars.get(task)
        if jar is None:
            # unsafe=True: keep cookies from IP-address hosts (test servers, internal APIs)
            jar = self._jars[task] = aiohttp.CookieJar(unsafe=True)
        return jar

    def _classify(self, exc: Exception, ex: Exchange, call: Call) -> tuple[str, str]:
        limit = self.options.timeout if call.timeout is None else call.timeout
        return classify_client_error(exc, ex, limit or 0.0, self.target.plugin)

    def _scrub(self, message: str, payload: dict[str, Any]) -> str:
        """Blank out credentials a server or an exception might echo back: the target's,
        the step's own (headers, secret-looking json/form/query fields) and its cookies."""
        scrub = self._scrubber.with_secrets_of(payload)
        task = asyncio.current_task()
        if self._jars is not None and task is not None and task in self._jars:
            scrub = scrub.extended(str(cookie.value) for cookie in self._jars[task])
        return scrub(message)


# -- reading and messages ---------------------------------------------------------------


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


class HttpPlugin:
    """Entry point `http` in `llmscen.plugins`."""

    name: ClassVar[str] = "http"
    api_version: ClassVar[int] = PLUGIN_API_VERSION
    description: ClassVar[str] = ("plain HTTP steps (health checks, login flows, REST calls) "
                                  "with captures and cookies")
    target_options: type[BaseModel] = HttpTargetOptions
    request_options: type[BaseModel] = HttpRequestOptions
    metrics: frozenset[str] = METRICS

    def create_runner(self, target: TargetPlan) -> HttpRunner:
        return HttpRunner(target)


plugin = HttpPlugin()
