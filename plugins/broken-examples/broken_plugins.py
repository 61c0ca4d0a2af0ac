"""Plugins that each break one rule of the plugin contract, on purpose.

Each is the `ollama` example plugin with one mistake a plugin author could
make. tests/test_contract_broken.py runs the contract suite
(`llmscen.testing.contract.RunnerContract`) against them and checks that it
fails, naming the rule. Never install this package: `plugins/broken-examples`
goes on PYTHONPATH in that test only.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import aiohttp
from llmscen_ollama import METRICS, OllamaRequestOptions, OllamaRunner, OllamaTargetOptions
from pydantic import BaseModel, ConfigDict
from yarl import URL

from llmscen.plugin import PLUGIN_API_VERSION, Call, Exchange


class RaisesOnHttpError(OllamaRunner):
    """Lets every failure escape send(), and turns an HTTP error into an exception."""

    async def send(self, call: Call, exchange: Exchange) -> None:
        await self._send(call, exchange)

    async def _read_error(self, resp: aiohttp.ClientResponse, ex: Exchange) -> None:
        raise RuntimeError(f"server answered HTTP {resp.status}")


class LeaksKey(OllamaRunner):
    """Puts the request headers, Authorization included, into its error messages."""

    async def _read_error(self, resp: aiohttp.ClientResponse, ex: Exchange) -> None:
        await resp.read()
        ex.end_ns = time.perf_counter_ns()
        sent = dict(resp.request_info.headers)
        ex.fail("http", f"HTTP {resp.status} for a request with headers {sent}")

    def _scrub(self, message: str, payload: dict[str, Any] | None = None) -> str:
        return message


class SwallowsCancel(OllamaRunner):
    """Treats cancellation like any other failure: records nothing and returns."""

    async def send(self, call: Call, exchange: Exchange) -> None:
        try:
            await super().send(call, exchange)
        except asyncio.CancelledError:
            return


class MissesSentNs(OllamaRunner):
    """Forgets to stamp the moment the request went out."""

    async def send(self, call: Call, exchange: Exchange) -> None:
        await super().send(call, exchange)
        exchange.sent_ns = 0


class WallClock(OllamaRunner):
    """Stamps with time.time_ns() instead of the engine's time.perf_counter_ns()."""

    async def send(self, call: Call, exchange: Exchange) -> None:
        await super().send(call, exchange)
        shift = time.time_ns() - time.perf_counter_ns()
        for name in ("sent_ns", "first_byte_ns", "first_content_ns", "end_ns"):
            if getattr(exchange, name):
                setattr(exchange, name, getattr(exchange, name) + shift)


class CountsFirstGap(OllamaRunner):
    """Records a gap before the first chunk too: one itl_us more than there are gaps."""

    async def send(self, call: Call, exchange: Exchange) -> None:
        await super().send(call, exchange)
        if exchange.chunks:
            exchange.itl_us.insert(0, (exchange.first_content_ns - exchange.sent_ns) // 1000)


class IgnoresCallTimeout(OllamaRunner):
    """Uses the target's timeout even when the call sets its own."""

    async def send(self, call: Call, exchange: Exchange) -> None:
        await super().send(Call(call.request, call.payload, call.stream, None), exchange)


class ProbesInInit(OllamaRunner):
    """Connects to the server while it is built, "to fail early": it cannot be pickled."""

    def __init__(self, target: Any) -> None:
        super().__init__(target)
        url = URL(self.base)
        self.probe: socket.socket | None = None
        if url.host and url.port:
            try:
                self.probe = socket.create_connection((url.host, url.port), timeout=1)
            except OSError:
                self.probe = None

    async def stop(self) -> None:
        await super().stop()
        if self.probe is not None:
            self.probe.close()


class StopNeedsStart(OllamaRunner):
    """Assumes stop() follows a successful start(), exactly once."""

    async def stop(self) -> None:
        assert self._session is not None, "stop() without a session"
        await super().stop()


class LaxOptions(OllamaTargetOptions):
    """Accepts and ignores unknown keys, so a typo in a scenario goes unnoticed."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class BrokenPlugin:
    """A plugin object like `llmscen_ollama.plugin`, with another runner or options model."""

    api_version = PLUGIN_API_VERSION
    request_options = OllamaRequestOptions
    metrics = METRICS

    def __init__(self, name: str, runner_class: type[OllamaRunner],
                 target_options: type[BaseModel] = OllamaTargetOptions) -> None:
        self.name = name
        self.runner_class = runner_class
        self.target_options = target_options
        self.description = f"the ollama plugin, broken: {runner_class.__doc__ or ''}".strip()

    def create_runner(self, target: Any) -> OllamaRunner:
        return self.runner_class(target)


raises_on_http_error = BrokenPlugin("raises-on-http-error", RaisesOnHttpError)
leaks_key = BrokenPlugin("leaks-key", LeaksKey)
swallows_cancel = BrokenPlugin("swallows-cancel", SwallowsCancel)
misses_sent_ns = BrokenPlugin("misses-sent-ns", MissesSentNs)
wall_clock = BrokenPlugin("wall-clock", WallClock)
counts_first_gap = BrokenPlugin("counts-first-gap", CountsFirstGap)
ignores_call_timeout = BrokenPlugin("ignores-call-timeout", IgnoresCallTimeout)
probes_in_init = BrokenPlugin("probes-in-init", ProbesInInit)
stop_needs_start = BrokenPlugin("stop-needs-start", StopNeedsStart)
lax_options = BrokenPlugin("lax-options", OllamaRunner, LaxOptions)
lax_options.description = "the ollama plugin, broken: " + (LaxOptions.__doc__ or "")

ALL = {p.name: p for p in (raises_on_http_error, leaks_key, swallows_cancel, misses_sent_ns,
                           wall_clock, counts_first_gap, ignores_call_timeout, probes_in_init,
                           stop_needs_start, lax_options)}
