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
from llmscen.services.process import Child, Restartable, wait_listening


class _SimulatorService:
    name: str
    description: str
    module: str
    startup_timeout = 30.0

    @property
    def options(self) -> type[BaseModel]:
        raise NotImplementedError

    @asynccontextmanager
    async def launch(self, plan: Any, log_dir: str | None) -> AsyncIterator[Endpoint]:
        def argv(port: str) -> list[str]:
            return [sys.executable, "-m", self.module, "--host", "127.0.0.1", "--port", port,
                    "--options", plan.options.model_dump_json()]

        found: dict[str, str] = {}

        async def ready(child: Child) -> None:
            found.update(await wait_listening(child, self.startup_timeout))

        service = Restartable(plan.name, argv("0"), log_dir, ready)
        await service.start()
        try:
            url = found.get("http") or next(iter(found.values()))
            service.argv = argv(url.rsplit(":", 1)[-1])   # started again, it listens there
            yield Endpoint(url=url, urls=dict(found), exited=service.exit_status, pid=service.pid,
                           control=service)
        finally:
            await service.stop()


class OpenAISimService(_SimulatorService):
    name = "openai-sim"
    description = "bundled OpenAI/vLLM-compatible simulator (TTFT, ITL, errors, stalls)"
    module = "llmscen.services.openai_sim"

    @property
    def options(self) -> type[BaseModel]:
        from llmscen.services.openai_sim import OpenAISimOptions

        return OpenAISimOptions


openai_sim = OpenAISimService()
