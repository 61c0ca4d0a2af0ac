"""openai-sim's state: counters, random source, stall clock, queue; and its /metrics view.

All mutable state of one simulator lives in a `SimState` stored on its
application, so two simulators in one process never share anything.
"""

from __future__ import annotations

import asyncio
import random
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from aiohttp import web

from llmscen.services.openai_sim.stream import StallWindow
from llmscen.services.openai_sim.text import split_tokens
from llmscen.services.openai_sim.timer import Waker, now

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from llmscen.services.openai_sim.options import OpenAISimOptions

Fault = Literal["error", "malformed", "cut"] | None


@dataclass
class SimState:
    """Counters, random source and stall clock of one simulator."""

    options: OpenAISimOptions
    rng: random.Random
    stall: StallWindow
    slots: asyncio.Semaphore | None
    reply_tokens: list[str] | None
    waker: Waker | None = None   # set while the app runs (on_startup .. on_cleanup)
    started: int = field(default_factory=lambda: int(time.time()))
    requests: int = 0
    running: int = 0
    waiting: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    finished: dict[str, int] = field(default_factory=lambda: {"stop": 0, "length": 0, "abort": 0})
    injected: dict[str, int] = field(default_factory=lambda: {"error": 0, "malformed": 0, "cut": 0})

    @classmethod
    def create(cls, options: OpenAISimOptions) -> SimState:
        return cls(options=options, rng=random.Random(options.seed),
                   stall=StallWindow(options.stall_after, options.stall_for),
                   slots=(asyncio.Semaphore(options.max_concurrency)
                          if options.max_concurrency else None),
                   reply_tokens=split_tokens(options.reply) if options.reply is not None else None)

    def draw_fault(self) -> Fault:
        o = self.options
        if not (o.error_rate or o.malformed_rate or o.cut_rate):
            return None
        u = self.rng.random()
        fault: Fault = None
        if u < o.error_rate:
            fault = "error"
        elif u < o.error_rate + o.malformed_rate:
            fault = "malformed"
        elif u < o.error_rate + o.malformed_rate + o.cut_rate:
            fault = "cut"
        if fault is not None:
            self.injected[fault] += 1
        return fault

    def next_id(self, prefix: str) -> str:
        self.requests += 1
        return f"{prefix}-sim{self.options.seed & 0xFFFF:04x}{self.requests:010d}"

    def count_token(self) -> None:
        self.generation_tokens += 1

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until `now()` reaches `deadline`, precisely when the app runs."""
        if self.waker is not None:
            await self.waker.sleep_until(deadline)
        elif deadline > now():
            await asyncio.sleep(deadline - now())

    async def hold(self) -> float:
        """Wait out the stall window if it is open; the time afterwards."""
        t = now()
        until = self.stall.release(t)
        if until > t:
            await self.sleep_until(until)
            return until
        return t

    @asynccontextmanager
    async def slot(self, arrival: float) -> AsyncIterator[float]:
        """A place among `max_concurrency` running requests, queueing when all are taken.

        Yields when the request starts being served: `arrival`, or for a request
        that had to queue, the moment it got its place (after any stall).
        """
        start = arrival
        if self.slots is not None:
            if self.slots.locked():
                self.waiting += 1
                try:
                    await self.slots.acquire()
                finally:
                    self.waiting -= 1
                start = await self.hold()
            else:
                await self.slots.acquire()
        self.running += 1
        try:
            yield start
        finally:
            self.running -= 1
            if self.slots is not None:
                self.slots.release()


STATE = web.AppKey("openai_sim_state", SimState)


async def start_waker(app: web.Application) -> None:
    app[STATE].waker = Waker(asyncio.get_running_loop())


async def stop_waker(app: web.Application) -> None:
    state = app[STATE]
    if state.waker is not None:
        state.waker.close()
        state.waker = None


def prometheus_text(state: SimState) -> str:
    """vLLM-named metrics in Prometheus' text format."""
    label = 'model_name="' + state.options.model.replace("\\", "\\\\").replace('"', '\\"') + '"'
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str,
               samples: list[tuple[str, float]]) -> None:
        base = name.removesuffix("_total") if kind == "counter" else name
        lines.append(f"# HELP {base} {help_text}")
        lines.append(f"# TYPE {base} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{{{labels}}} {float(value)!r}")

    metric("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.",
           [(label, state.running)])
    metric("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
           [(label, state.waiting)])
    metric("vllm:request_success_total", "counter", "Count of successfully processed requests.",
           [(f'finished_reason="{reason}",{label}', state.finished[reason])
            for reason in ("stop", "length", "abort")])
    metric("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
           [(label, state.prompt_tokens)])
    metric("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.",
           [(label, state.generation_tokens)])
    metric("openai_sim:injected_faults_total", "counter", "Faults injected by openai-sim.",
           [(f'kind="{kind}",{label}', count) for kind, count in state.injected.items()])
    return "\n".join(lines) + "\n"
