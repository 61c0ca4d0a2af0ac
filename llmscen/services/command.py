"""`command:` services: any process, e.g. `vllm serve ... --port {port}`."""

from __future__ import annotations

import shlex
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmscen.engine.protocol import Endpoint
from llmscen.services.process import Child, Restartable, free_port, wait_ready
from llmscen.spec.models import ReadySpec
from llmscen.spec.paths import DirPath
from llmscen.spec.units import Duration


class CommandOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: str | list[str]
    ready: ReadySpec | None = None
    startup_timeout: Duration = 60.0
    env: dict[str, str] = Field(default_factory=dict)
    cwd: DirPath = Field(".", description="working folder, relative to the scenario file; "
                                          "default: the scenario's folder")
    url: str = Field("http://127.0.0.1:{port}", description="where the process listens")


class CommandService:
    name = "command"
    description = ("any process; {port} in the command is replaced by a free port, {python} "
                   "by the Python that runs llmscen")
    options = CommandOptions

    @asynccontextmanager
    async def launch(self, plan: Any, log_dir: str | None) -> AsyncIterator[Endpoint]:
        opts: CommandOptions = plan.options
        port = str(free_port())

        def fill(text: str, python: str = sys.executable) -> str:
            return text.replace("{port}", port).replace("{python}", python)

        env = {k: fill(v) for k, v in opts.env.items()}
        if isinstance(opts.command, str):   # a shell line: the path quoted for the shell
            argv, shell = [fill(opts.command, shlex.quote(sys.executable))], True
        else:
            argv, shell = [fill(a) for a in opts.command], False
        url = fill(opts.url)
        ready = opts.ready or ReadySpec(tcp=True)

        async def until_ready(child: Child) -> None:
            await wait_ready(child, url, http_path=ready.http if not ready.tcp else None,
                             timeout=opts.startup_timeout)

        service = Restartable(plan.name, argv, log_dir, until_ready, env=env, cwd=opts.cwd,
                              shell=shell)
        await service.start()
        try:
            yield Endpoint(url=url, urls={"http": url}, exited=service.exit_status, pid=service.pid,
                           control=service)
        finally:
            await service.stop()


service = CommandService()

