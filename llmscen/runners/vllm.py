"""The `vllm` plugin: `openai` plus vLLM's `/health` readiness and `/metrics` scraping.

vLLM's sampling extras (`ignore_eos`, `min_tokens`, ...) are plain body keys
and pass through like any other; the server's token counts come from `usage`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

import aiohttp
from pydantic import BaseModel, Field

from llmscen.engine.protocol import Exposed
from llmscen.runners.guard import describe
from llmscen.runners.openai import (
    OpenAIPlugin,
    OpenAIRunner,
    OpenAITargetOptions,
    TargetUnavailable,
)
from llmscen.runners.prometheus import parse_exposition, summed
from llmscen.spec.units import Duration

_POLL_INTERVAL = 0.2
_SCRAPE_TIMEOUT = 10.0


class VLLMTargetOptions(OpenAITargetOptions):
    """Target keys of the `vllm` plugin: those of `openai` and these."""

    health_path: str | None = Field("/health", description="polled by start() until it answers "
                                                          "200; null skips the wait")
    ready_timeout: Duration = Field(60.0, description="how long start() waits for health")
    metrics_path: str = Field("/metrics", description="Prometheus endpoint")
    metrics_prefix: str = Field("vllm:", description="metric names kept from the scrape")


class VLLMRunner(OpenAIRunner):
    options_model: ClassVar[type[OpenAITargetOptions]] = VLLMTargetOptions
    options: VLLMTargetOptions

    async def start(self) -> None:
        await super().start()
        await self.wait_ready()

    async def wait_ready(self) -> None:
        """Poll the health path until it answers 200 or `ready_timeout` passes."""
        if self.options.health_path is None:
            return
        url = self._url_for(self.options.health_path)
        deadline = time.monotonic() + self.options.ready_timeout
        last = "no answer yet"
        while True:
            left = deadline - time.monotonic()
            try:
                timeout = aiohttp.ClientTimeout(total=max(min(left, 5.0), 0.1))
                async with self.session.get(url, timeout=timeout) as resp:
                    await resp.read()
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                last = describe(exc)
            if time.monotonic() >= deadline:
                raise TargetUnavailable(
                    self._scrub(f"target {self.target.name!r}: {url} did not answer 200 within "
                                f"{self.options.ready_timeout:g}s (last: {last})"))
            await asyncio.sleep(min(_POLL_INTERVAL, max(deadline - time.monotonic(), 0.0)))

    async def server_metrics(self) -> dict[str, float]:
        """Counters and gauges named `metrics_prefix*`, summed over label sets; {} on failure."""
        exposed = await self.exposed_metrics()
        return summed(exposed) if exposed is not None else {}

    async def exposed_metrics(self) -> Exposed | None:
        """The `metrics_prefix*` series with labels and types; None on failure."""
        if self._session is None:
            return None
        url = self._url_for(self.options.metrics_path)
        try:
            async with self.session.get(url, timeout=aiohttp.ClientTimeout(
                    total=_SCRAPE_TIMEOUT)) as resp:
                if resp.status != 200:
                    return None
                text = await resp.text(errors="replace")
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return None
        return parse_exposition(text, self.options.metrics_prefix)


def parse_prometheus(text: str, prefix: str = "") -> dict[str, float]:
    """Prometheus text exposition → {name: value}, summed across label sets
    (runners/prometheus.py keeps the labels and types)."""
    return summed(parse_exposition(text, prefix))


class VLLMPlugin(OpenAIPlugin):
    """Entry point `vllm` in `llmscen.plugins`."""

    name: ClassVar[str] = "vllm"
    description: ClassVar[str] = ("vLLM's OpenAI-compatible server: openai plus /health "
                                  "readiness and /metrics scraping")
    target_options: type[BaseModel] = VLLMTargetOptions
    runner_class: ClassVar[type[OpenAIRunner]] = VLLMRunner

    def synthetic_payload(self, target_options: BaseModel, request_options: BaseModel,
                          output_tokens: bool) -> dict[str, Any]:
        """openai's, and vLLM's sampling extras that make the output exactly that long."""
        payload = super().synthetic_payload(target_options, request_options, output_tokens)
        if output_tokens:
            payload["body"].update(ignore_eos=True, min_tokens="{{ row.output_tokens }}")
        return payload


plugin = VLLMPlugin()
