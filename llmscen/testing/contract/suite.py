"""The contract suite itself: `RunnerContract` (documented in the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Any

import pytest

from llmscen.engine.protocol import Exchange
from llmscen.testing.contract import violations as rules
from llmscen.testing.contract.hostile import DESCRIPTIONS, HostileServer, free_port
from llmscen.testing.contract.plugin import PluginContract
from llmscen.testing.contract.violations import send

__all__ = ["RunnerContract"]

NOTHING_LISTENS = "a port where nothing listens"


class RunnerContract(PluginContract):
    """Base class of a plugin's contract tests; see the module docstring."""

    # -- lifecycle --------------------------------------------------------------------------

    def test_start_stop_and_stop_again(self, plugin: Any, target_url: str) -> None:
        report = self.reporter(plugin)

        async def body() -> None:
            runner = plugin.create_runner(self.plan(plugin, target_url))
            await self.step(report, rules.LIFECYCLE, "stop() before start()", runner.stop())
            await self.step(report, rules.LIFECYCLE, "start()", runner.start())
            await self.step(report, rules.LIFECYCLE, "stop()", runner.stop())
            await self.step(report, rules.LIFECYCLE, "a second stop() to be harmless",
                            runner.stop())
        asyncio.run(body())

    @pytest.mark.parametrize("where", ["refused", "no url"])
    def test_stop_after_a_failed_start(self, plugin: Any, where: str) -> None:
        report = self.reporter(plugin)
        url = self.with_secret_url(f"http://127.0.0.1:{free_port()}") if where == "refused" \
            else None

        async def body() -> None:
            runner = plugin.create_runner(self.plan(plugin, url))
            try:
                await asyncio.wait_for(runner.start(), self.slack + 5)
            except asyncio.TimeoutError:
                report.broke(rules.LIFECYCLE, "start() to give up within its own timeout",
                             f"had not returned after {self.slack + 5:g}s")
            except Exception as exc:  # allowed: the engine reports it as "could not start"
                report.no_secret(rules.NO_SECRETS, "an exception from start()", f"{exc!r} {exc}")
            await self.step(report, rules.LIFECYCLE, f"stop() after start() against "
                            f"{'a refused port' if url else 'no URL'}", runner.stop())
        asyncio.run(body())

    # -- sending ----------------------------------------------------------------------------

    def test_good_call_timestamps(self, plugin: Any, target_url: str) -> None:
        report = self.reporter(plugin)

        async def body() -> None:
            async with self.started(plugin, target_url) as runner:
                sent = await send(runner, self.good_call(), self.slack + 10)
            self.check_success(report, sent, rules.TIMESTAMPS, "good_call()")
        asyncio.run(body())

    def test_streaming_timings(self, plugin: Any, target_url: str) -> None:
        report = self.reporter(plugin)
        call = self.call_of("streaming")

        async def body() -> None:
            async with self.started(plugin, target_url) as runner:
                sent = await send(runner, call, self.slack + 10)
            self.check_success(report, sent, rules.STREAM_TIMINGS, "streaming_call()")
            self.check_stream(report, sent)
        asyncio.run(body())

    def test_concurrent_sends(self, plugin: Any, target_url: str) -> None:
        report = self.reporter(plugin)
        calls = [self.good_call()] * 4
        if self.streaming_call() is not None:
            calls += [self.call_of("streaming")] * 4

        async def body() -> None:
            async with self.started(plugin, target_url) as runner:
                sent = await asyncio.gather(*(send(runner, c, self.slack + 10) for c in calls))
            for one in sent:
                self.check_success(report, one, rules.CONCURRENCY,
                                   f"{len(calls)} calls at once on one runner")
        asyncio.run(body())

    def test_http_error_is_classified(self, plugin: Any, target_url: str) -> None:
        report = self.reporter(plugin)

        async def body() -> None:
            async with self.started(plugin, target_url) as runner:
                sent = await send(runner, self.failing_call(), self.slack + 10)
                after = await send(runner, self.good_call(), self.slack + 10)
            expected = "failing_call() to return with error 'http' and the status"
            report.classified(sent, rules.HTTP_ERRORS, expected)
            ex = sent.exchange
            if self.speaks_http and (ex.error != "http" or not (ex.status or 0) >= 400):
                report.broke(rules.HTTP_ERRORS, expected,
                             f"set error={ex.error!r} status={ex.status!r}", ex)
            self.check_success(report, after, rules.HTTP_ERRORS,
                               "good_call() after an HTTP error, on the same runner")
        asyncio.run(body())

    def test_connection_refused_is_connect(self, plugin: Any) -> None:
        report = self.reporter(plugin)
        url = f"http://127.0.0.1:{free_port()}"

        async def body() -> None:
            async with self.started(plugin, url, NOTHING_LISTENS) as runner:
                sent = await send(runner, self.good_call(), self.slack)
            expected = f"a call to {url}, where nothing listens, to return with error 'connect'"
            report.classified(sent, rules.CONNECT, expected)
            if sent.exchange.error != "connect" or sent.exchange.status is not None:
                report.broke(rules.CONNECT, expected + " and status None",
                             f"set error={sent.exchange.error!r} "
                             f"status={sent.exchange.status!r}", sent.exchange)
        asyncio.run(body())

    @pytest.mark.parametrize(("mode", "kind"), [("silent", "good"), ("stall", "any")])
    def test_timeout_is_classified(self, plugin: Any, mode: str, kind: str) -> None:
        report = self.reporter(plugin)
        call = dataclasses.replace(self.call_of(kind), timeout=self.timeout)

        async def body() -> None:
            async with HostileServer(mode) as server, \
                    self.started(plugin, server.url, server.description) as runner:
                sent = await send(runner, call, self.timeout + self.slack)
            expected = (f"a call with Call.timeout={self.timeout:g}s to a server that "
                        f"{DESCRIPTIONS[mode]} to return with error 'timeout' after about "
                        f"{self.timeout:g}s")
            report.classified(sent, rules.TIMEOUTS, expected)
            ex = sent.exchange
            if ex.error != "timeout":
                report.broke(rules.TIMEOUTS, expected, f"set error={ex.error!r}", ex)
            if sent.seconds < self.timeout * 0.8:
                report.broke(rules.TIMEOUTS, expected, f"gave up after {sent.seconds:.3f}s", ex)
        asyncio.run(body())

    @pytest.mark.parametrize(("mode", "kind"), [("silent", "good"), ("stall", "any")])
    def test_cancel_marks_cancelled_and_reraises(self, plugin: Any, mode: str,
                                                 kind: str) -> None:
        report = self.reporter(plugin)
        call = self.call_of(kind)

        async def body() -> None:
            async with HostileServer(mode) as server, \
                    self.started(plugin, server.url, server.description) as runner:
                ex = Exchange(intended_ns=time.perf_counter_ns())
                task = asyncio.ensure_future(runner.send(call, ex))
                await self.wait_for_request(report, server, task)
                await asyncio.sleep(0.05)
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=self.slack)
            self.check_cancelled(report, task, done, ex, mode)
        asyncio.run(body())

    @pytest.mark.parametrize("kind", ["good", "streaming"])
    @pytest.mark.parametrize("mode", ["close", "cut", "garbage", "junk200", "echo500"])
    def test_misbehaving_server_never_raises(self, plugin: Any, mode: str, kind: str) -> None:
        report = self.reporter(plugin)
        call = self.with_secret_header(plugin, self.call_of(kind))

        async def body() -> None:
            async with HostileServer(mode) as server, \
                    self.started(plugin, server.url, server.description) as runner:
                sent = await send(runner, call, self.slack + 5)
            expected = (f"send() to return with exchange.error set when the server "
                        f"{DESCRIPTIONS[mode]}")
            report.classified(sent, rules.NEVER_RAISE, expected)
            report.stamped(sent, rules.NEVER_RAISE, first_byte=False)
            ex = sent.exchange
            if mode == "echo500" and self.speaks_http and (ex.error, ex.status) != ("http", 500):
                report.broke(rules.HTTP_ERRORS, "error 'http' and status 500 for an HTTP 500",
                             f"set error={ex.error!r} status={ex.status!r}", ex)
            report.no_secret(rules.NO_SECRETS, "error_message", ex.error_message, ex)
        asyncio.run(body())

    # -- secrets ----------------------------------------------------------------------------

    def test_secret_never_in_messages_when_echoed(self, plugin: Any) -> None:
        report = self.reporter(plugin)
        call = self.with_secret_header(plugin, self.good_call())

        async def body() -> None:
            async with HostileServer("echo500") as server, \
                    self.started(plugin, server.url, server.description) as runner:
                sent = await send(runner, call, self.slack + 5)
                problems = await self.step(report, rules.PREFLIGHT, "preflight([good_call()])",
                                           runner.preflight([call]))
            if not any(s.encode() in server.received for s in self.planted_secrets()):
                pytest.skip("the plugin sent none of the secrets the suite planted (in "
                            "target_options(secret), a `headers` option): nothing can leak")
            report.classified(sent, rules.NEVER_RAISE, "a reply of HTTP 500 classified")
            report.no_secret(rules.NO_SECRETS, "error_message (scrub what a server echoes "
                             "back)", sent.exchange.error_message, sent.exchange)
            for problem in problems:
                report.no_secret(rules.NO_SECRETS, "preflight's messages", problem)
        asyncio.run(body())

    def test_secret_not_in_the_exchange(self, plugin: Any, target_url: str) -> None:
        report = self.reporter(plugin)
        calls = [self.good_call(), self.failing_call()]
        if self.streaming_call() is not None:
            calls.append(self.call_of("streaming"))
        calls = [self.with_secret_header(plugin, call) for call in calls]
        refused = f"http://127.0.0.1:{free_port()}"

        async def body() -> list[Any]:
            out = []
            async with self.started(plugin, target_url) as runner:
                out += [await send(runner, call, self.slack + 10) for call in calls]
            if not self.hostile_allowed():
                return out
            async with self.started(plugin, refused, NOTHING_LISTENS) as runner:
                out.append(await send(runner, self.good_call(), self.slack))
            async with HostileServer("silent") as server, \
                    self.started(plugin, server.url, server.description) as runner:
                call = dataclasses.replace(self.good_call(), timeout=self.timeout)
                out.append(await send(runner, call, self.timeout + self.slack))
            return out

        for sent in asyncio.run(body()):
            if sent.raised is not None:
                report.no_secret(rules.NO_SECRETS, "an exception from send()",
                                 f"{sent.raised!r} {sent.raised}", sent.exchange)
            ex = sent.exchange
            report.no_secret(rules.NO_SECRETS, "exchange.error_message", ex.error_message, ex)
            if ex.error is None:    # a failed call's text may be what the server echoed
                report.no_secret(rules.NO_SECRETS, "exchange.text", ex.text, ex)
                report.no_secret(rules.NO_SECRETS, "exchange.headers", repr(ex.headers), ex)

    @pytest.mark.parametrize("where", ["refused", "echo500"])
    def test_secret_in_the_url_never_in_messages(self, plugin: Any, where: str) -> None:
        """A password in the target URL (`http://user:pw@host`) is a secret like the others,
        in messages that name the URL above all."""
        report = self.reporter(plugin)
        call = self.with_secret_header(plugin, self.good_call())

        async def body() -> tuple[Any, Any]:
            async with contextlib.AsyncExitStack() as stack:
                if where == "echo500":
                    server = await stack.enter_async_context(HostileServer("echo500"))
                    url, what = server.url, server.description
                else:
                    url, what = f"http://127.0.0.1:{free_port()}", NOTHING_LISTENS
                runner = await stack.enter_async_context(
                    self.started(plugin, self.with_secret_url(url), what))
                sent = await send(runner, call, self.slack + 5)
                problems = await self.step(report, rules.PREFLIGHT, f"preflight([good_call()]) "
                                           f"against {what}, with a password in the URL,",
                                           runner.preflight([call]))
            return sent, problems

        sent, problems = asyncio.run(body())
        report.returned(sent, rules.NEVER_RAISE, "send() to a URL with a password to return")
        report.no_secret(rules.NO_SECRETS, "exchange.error_message", sent.exchange.error_message,
                         sent.exchange)
        for problem in problems or []:
            report.no_secret(rules.NO_SECRETS, "preflight's messages", problem)

    # -- preflight and server metrics -------------------------------------------------------

    def test_preflight_returns_messages(self, plugin: Any, target_url: str) -> None:
        report = self.reporter(plugin)
        calls = [self.good_call()]
        refused = f"http://127.0.0.1:{free_port()}"

        async def body() -> tuple[Any, Any]:
            async with self.started(plugin, target_url) as runner:
                good = await self.step(report, rules.PREFLIGHT, "preflight(calls)",
                                       runner.preflight(calls))
            if not self.hostile_allowed():
                return good, []
            async with self.started(plugin, refused, NOTHING_LISTENS) as runner:
                bad = await self.step(report, rules.PREFLIGHT, f"preflight(calls) against "
                                      f"{refused}, where nothing listens, to return problems "
                                      "rather than raise", runner.preflight(calls))
            return good, bad

        good, bad = asyncio.run(body())
        for result in (good, bad):
            if not isinstance(result, list) or not all(isinstance(m, str) for m in result):
                report.broke(rules.PREFLIGHT, "preflight() to return a list of messages (str)",
                             f"returned {result!r}")
        if good:
            report.broke(rules.PREFLIGHT, "no problems for a server that answers good_call()",
                         f"reported {good}")
        for problem in bad:
            report.no_secret(rules.NO_SECRETS, "preflight's messages", problem)

    def test_server_metrics_returns_numbers(self, plugin: Any, target_url: str) -> None:
        report = self.reporter(plugin)

        async def body() -> Any:
            async with self.started(plugin, target_url) as runner:
                return await self.step(report, rules.SERVER_METRICS, "server_metrics()",
                                       runner.server_metrics())

        values = asyncio.run(body())
        if not isinstance(values, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                for k, v in values.items()):
            report.broke(rules.SERVER_METRICS, "a dict of metric name → number ({} when the "
                         "server has none)", f"returned {values!r}"[:300])
