"""`triton-sim` as a scenario service (entry point group `llmscen.services`).

Runs this package's CLI as a child process, like the other bundled simulators,
and yields an `Endpoint` whose default URL is gRPC `host:port`, with `grpc`,
`http` and `metrics` URLs by scheme (a target's `protocol` picks one).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from llmscen.engine.protocol import Endpoint
from llmscen.services.process import spawn, wait_listening

from .options import TritonSimOptions


class TritonSimService:
    name = "triton-sim"
    description = ("a real Triton Inference Server (from nvidia-pytriton) with a simulated FLUX "
                   "pipeline `flux` and a decoupled token streamer `llm_stream`")
    options = TritonSimOptions

    @asynccontextmanager
    async def launch(self, plan: Any, log_dir: str | None) -> AsyncIterator[Endpoint]:
        options: TritonSimOptions = plan.options
        argv = [sys.executable, "-m", "llmscen.services.triton_sim",
                "--options", options.model_dump_json()]
        async with spawn(plan.name, argv, log_dir=log_dir) as child:
            urls = await wait_listening(child, options.startup_timeout + 10)
            yield Endpoint(url=urls["grpc"], urls=urls, exited=child.exit_status,
                           pid=child.pid)


service = TritonSimService()
