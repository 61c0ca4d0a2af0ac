"""The bundled simulators as services: each runs as its own process.

A separate process keeps the simulator off the load generator's event loop
and core, as a real server would be.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import BaseModel

from llmscen.engine.protocol import Endpoint
from llmscen.services.process import spawn, wait_listening


class _SimulatorService:
    name: str
    description: str
    module: str
    startup_timeout = 30.0
    args: tuple[str, ...] = ("--host", "127.0.0.1", "--port", "0")

    @property
    def options(self) -> type[BaseModel]:
        raise NotImplementedError

    @asynccontextmanager
    async def launch(self, plan: Any, log_dir: str | None) -> AsyncIterator[Endpoint]:
        argv = [sys.executable, "-m", self.module, *self.args,
                "--options", plan.options.model_dump_json()]
        async with spawn(plan.name, argv, log_dir=log_dir) as child:
            urls = await wait_listening(child, self.startup_timeout)
            yield Endpoint(url=urls.get("http") or next(iter(urls.values())), urls=urls,
                           exited=child.exit_status)


class OpenAISimService(_SimulatorService):
    name = "openai-sim"
    description = "bundled OpenAI/vLLM-compatible simulator (TTFT, ITL, errors, stalls)"
    module = "llmscen.services.openai_sim"

    @property
    def options(self) -> type[BaseModel]:
        from llmscen.services.openai_sim import OpenAISimOptions

        return OpenAISimOptions


openai_sim = OpenAISimService()
