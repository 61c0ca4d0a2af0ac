"""What `RunnerContract` (contract.py) asks of a plugin author, and the checks its tests share."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable
from typing import Any, ClassVar, TypeVar

import pytest
from pydantic import BaseModel, ValidationError

from llmscen.compile.plan import TargetPlan
from llmscen.engine.protocol import Call, Exchange
from llmscen.testing.contract import violations as rules
from llmscen.testing.contract.hostile import DESCRIPTIONS, HostileServer
from llmscen.testing.contract.violations import Reporter, Sent, raised

T = TypeVar("T")


SECRET_HEADER = "X-Llmscen-Contract-Key"             # of the target
REQUEST_SECRET_HEADER = "X-Llmscen-Contract-Token"   # of the call
URL_USER = "contract"


class ContractBase:
    # Planted where a scenario may put a credential; each must stay out of every message.
    secret: ClassVar[str] = "llmscen-contract-SECRET-5f0c2a91"             # target_options()
    header_secret: ClassVar[str] = "llmscen-contract-HEADER-3b7e10d4"      # target `headers`
    request_secret: ClassVar[str] = "llmscen-contract-REQUEST-9a41c6e2"    # the call's `headers`
    url_secret: ClassVar[str] = "llmscen-contract-URL-c2d85f37"            # the URL's password
    speaks_http: ClassVar[bool] = True   # failures carry HTTP statuses (`http`, `status`)
    timeout: ClassVar[float] = 0.5       # seconds, as `Call.timeout` in the timeout tests
    slack: ClassVar[float] = 3.0         # seconds a send may take past what it should

    # -- what the plugin author provides ----------------------------------------------------

    def target_options(self, secret: str) -> dict[str, Any]:
        """The target's plugin options as a scenario would write them, with `secret` as its
        credential (api key, token) so the suite can check it never leaks."""
        pytest.fail("RunnerContract: define target_options(self, secret) returning the "
                    "target's options, e.g. {'model': 'm', 'api_key': secret}", pytrace=False)

    def good_call(self) -> Call:
        """A call the `target_url` server answers with success (not streamed)."""
        pytest.fail("RunnerContract: define good_call(self) returning a Call that the "
                    "target_url server answers with success", pytrace=False)

    def streaming_call(self) -> Call | None:
        """A streamed call the server answers with several content chunks; None if the
        plugin does not stream."""
        return None

    def failing_call(self) -> Call:
        """A call the `target_url` server answers with an HTTP error status (e.g. 500)."""
        pytest.fail("RunnerContract: define failing_call(self) returning a Call that the "
                    "target_url server answers with an HTTP error", pytrace=False)

    def hostile_target_options(self, secret: str) -> dict[str, Any] | None:
        """Options for the tests against the suite's own misbehaving servers and closed
        ports. Override to turn off a readiness wait in start(); return None to skip those
        tests when it cannot be turned off."""
        return self.target_options(secret)

    # -- plumbing ---------------------------------------------------------------------------

    def hostile_allowed(self) -> bool:
        return self.hostile_target_options(self.secret) is not None

    def reporter(self, plugin: Any) -> Reporter:
        basic = base64.b64encode(f"{URL_USER}:{self.url_secret}".encode()).decode()
        return Reporter(plugin, {self.secret: "<SECRET>", self.header_secret: "<HEADER SECRET>",
                                 self.request_secret: "<REQUEST SECRET>",
                                 self.url_secret: "<URL SECRET>",
                                 basic: "<URL SECRET as Basic auth>"})

    def planted_secrets(self) -> list[str]:
        return [self.secret, self.header_secret, self.request_secret, self.url_secret]

    def with_secret_url(self, url: str) -> str:
        """`url` with the URL secret as its password: `http://contract:<URL SECRET>@host`."""
        scheme, _, rest = url.partition("://")
        return f"{scheme}://{URL_USER}:{self.url_secret}@{rest}"

    def with_secret_header(self, plugin: Any, call: Call) -> Call:
        """`call` with the request secret in its `headers`, when the plugin's request options
        take a `headers` mapping (runners must scrub a request's own credentials too)."""
        if "headers" not in plugin.request_options.model_fields:
            return call
        headers = {**(call.payload.get("headers") or {}),
                   REQUEST_SECRET_HEADER: self.request_secret}
        payload = {**call.payload, "headers": headers}
        try:
            plugin.request_options.model_validate(payload)
        except ValidationError:
            return call
        return dataclasses.replace(call, payload=payload)

    def options(self, plugin: Any, hostile: bool = False) -> BaseModel:
        hook = self.hostile_target_options if hostile else self.target_options
        raw = hook(self.secret)
        if raw is None:
            pytest.skip("hostile_target_options() is None: start() cannot be made to skip "
                        "its readiness check, so the suite's misbehaving servers are not used")
        try:
            options: BaseModel = plugin.target_options.model_validate(raw)
        except ValidationError as exc:
            pytest.fail(f"{hook.__name__}() returned options the plugin's own target_options "
                        f"model rejects (a problem of the test, not the contract):\n{exc}",
                        pytrace=False)
        return self.with_header_secret(plugin, raw, options)

    def with_header_secret(self, plugin: Any, raw: dict[str, Any], options: BaseModel,
                           ) -> BaseModel:
        """The options with the header secret added to a `headers` mapping, if they have one."""
        if "headers" not in plugin.target_options.model_fields:
            return options
        headers = {**(raw.get("headers") or {}), SECRET_HEADER: self.header_secret}
        try:
            planted: BaseModel = plugin.target_options.model_validate({**raw,
                                                                       "headers": headers})
        except ValidationError:
            return options
        return planted

    def plan(self, plugin: Any, url: str | None, hostile: bool = False) -> TargetPlan:
        return TargetPlan(name="contract", plugin=plugin.name, url=url,
                          options=self.options(plugin, hostile))

    def call_of(self, kind: str) -> Call:
        """`good_call()` for "good"; `streaming_call()` for "streaming" (skips when the plugin
        does not stream); for "any", `streaming_call()` if there is one, else `good_call()`."""
        call = self.streaming_call() if kind in ("streaming", "any") else None
        if call is not None:
            return call
        if kind == "streaming":
            pytest.skip("streaming_call() is None: the plugin does not stream")
        return self.good_call()

    async def step(self, report: Reporter, rule: str, what: str, coro: Awaitable[T]) -> T:
        """Await a lifecycle call; a raise or a hang breaks `rule`."""
        bound = self.slack + 5
        try:
            return await asyncio.wait_for(coro, bound)
        except asyncio.TimeoutError:
            report.broke(rule, f"{what} to return", f"had not returned after {bound:g}s")
        except Exception as exc:
            report.broke(rule, f"{what} to succeed", raised(exc))

    @contextlib.asynccontextmanager
    async def started(self, plugin: Any, url: str, hostile: str = "") -> AsyncIterator[Any]:
        """A runner for `url`, started; stopped on the way out. `hostile` describes a
        server of the suite's own (hostile.py), which start() must accept too."""
        report = self.reporter(plugin)
        runner = plugin.create_runner(self.plan(plugin, url, hostile=bool(hostile)))
        what = f"start() against {hostile or url}"
        if hostile:
            what += (" (only send() may see the problem; if start() waits for readiness, "
                     "override hostile_target_options() to turn that off)")
        try:
            await self.step(report, rules.LIFECYCLE, what, runner.start())
            yield runner
        finally:
            await self.step(report, rules.LIFECYCLE, "stop()", runner.stop())

    # -- checks shared by the tests ---------------------------------------------------------

    def check_success(self, report: Reporter, sent: Sent, rule: str, what: str) -> None:
        """A call the author's server answers well: no error, timestamps in order, no secret."""
        report.returned(sent, rule, f"{what} to return normally")
        ex = sent.exchange
        if ex.error is not None:
            report.broke(rule, f"{what} to succeed against target_url",
                         f"classified it {ex.error!r}: {ex.error_message}", ex)
        report.stamped(sent, rule, first_byte=True)
        if self.speaks_http and not 200 <= (ex.status or 0) < 300:
            report.broke(rule, f"{what}: exchange.status set to the 2xx status received",
                         f"set status={ex.status!r}", ex)
        for where, text in (("text", ex.text), ("error_message", ex.error_message),
                            ("headers", repr(ex.headers))):
            report.no_secret(rules.NO_SECRETS, f"exchange.{where}", text, ex)

    def check_stream(self, report: Reporter, sent: Sent) -> None:
        """TTFT and ITL of a streamed reply, as the metrics read them."""
        ex, rule = sent.exchange, rules.STREAM_TIMINGS
        if not ex.first_content_ns:
            report.broke(rule, "first_content_ns stamped when the first chunk of generated "
                               "content arrives", "left it at 0", ex)
        if not ex.first_byte_ns <= ex.first_content_ns <= ex.end_ns:
            report.broke(rule, "first_byte_ns ≤ first_content_ns ≤ end_ns",
                         "stamped them out of order", ex)
        if ex.chunks < 1:
            report.broke(rule, "exchange.chunks counts the content chunks received",
                         f"set chunks={ex.chunks}", ex)
        if len(ex.itl_us) != ex.chunks - 1:
            report.broke(rule, "one itl_us gap between each two content chunks "
                               f"(chunks - 1 = {ex.chunks - 1})",
                         f"recorded {len(ex.itl_us)} gaps", ex)
        if any(not isinstance(gap, int) or gap < 0 for gap in ex.itl_us):
            report.broke(rule, "itl_us holds non-negative integer microseconds",
                         f"recorded {ex.itl_us[:10]}", ex)
        spread_us = (ex.end_ns - ex.first_content_ns) // 1000
        if sum(ex.itl_us) > spread_us + len(ex.itl_us):
            report.broke(rule, "the itl_us gaps to fit between first_content_ns and end_ns "
                               f"({spread_us} µs)", f"recorded {sum(ex.itl_us)} µs of gaps", ex)
        if ex.output_tokens is not None and not isinstance(ex.output_tokens, int):
            report.broke(rule, "output_tokens an int or None",
                         f"set {type(ex.output_tokens).__name__}", ex)

    async def wait_for_request(self, report: Reporter, server: HostileServer,
                               task: asyncio.Future[None]) -> None:
        """Until the call reached the server (or send ended or hung on the way)."""
        arrived: asyncio.Future[Any] = asyncio.ensure_future(server.request_arrived.wait())
        done, _ = await asyncio.wait({arrived, task}, timeout=self.slack + 5,
                                     return_when=asyncio.FIRST_COMPLETED)
        arrived.cancel()
        if task in done:
            exc = None if task.cancelled() else task.exception()
            did = raised(exc) if exc is not None else "returned"
        elif not done:
            did = f"sent nothing within {self.slack + 5:g}s"
        else:
            return
        report.broke(rules.CANCELLATION, f"send() to {server.description} to wait for the "
                     "answer", did)

    def check_cancelled(self, report: Reporter, task: asyncio.Future[None],
                        done: set[Any], ex: Exchange, mode: str) -> None:
        rule = rules.CANCELLATION
        expected = (f"a send() cancelled while the server {DESCRIPTIONS[mode]} to mark "
                    "exchange.error 'cancelled' and re-raise CancelledError")
        if task not in done:
            report.broke(rule, expected + f" within {self.slack:g}s",
                         "was still running", ex)
        if not task.cancelled():
            exc = task.exception()
            did = raised(exc) if exc is not None else \
                "returned normally: it swallowed the CancelledError"
            report.broke(rule, expected, did, ex)
        if ex.error != "cancelled":
            report.broke(rule, expected, f"re-raised but set error={ex.error!r}", ex)
