"""openai-sim's state: counters, random source, stall clock, batch; and its /metrics view.

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

from llmscen.services.openai_sim.batch import Batch
from llmscen.services.openai_sim.exposition import Exposition, Timings, label_value
from llmscen.services.openai_sim.history import History
from llmscen.services.openai_sim.prefix import PrefixCache
from llmscen.services.openai_sim.stream import StallWindow
from llmscen.services.openai_sim.text import split_tokens
from llmscen.timer import Waker, now

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from llmscen.services.openai_sim.options import OpenAISimOptions

Fault = Literal["error", "malformed", "cut"] | None


@dataclass
class SimState:
    """Counters, random source, stall clock and batch of one simulator."""

    options: OpenAISimOptions
    rng: random.Random
    stall: StallWindow
    batch: Batch
    reply_tokens: list[str] | None
    waker: Waker | None = None   # set while the app runs (on_startup .. on_cleanup)
    started: int = field(default_factory=lambda: int(time.time()))
    requests: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    finished: dict[str, int] = field(default_factory=lambda: {"stop": 0, "length": 0, "abort": 0})
    injected: dict[str, int] = field(default_factory=lambda: {"error": 0, "malformed": 0, "cut": 0,
                                                              "corrupt": 0})
    timings: Timings = field(default_factory=Timings)
    history: History = field(default_factory=History)
    prefix: PrefixCache | None = None

    @classmethod
    def create(cls, options: OpenAISimOptions) -> SimState:
        return cls(options=options, rng=random.Random(options.seed),
                   prefix=PrefixCache(options.prefix_block) if options.prefix_cache else None,
                   stall=StallWindow(options.stall_after, options.stall_for),
                   batch=Batch(options.max_concurrency, options.itl, options.batch_slowdown),
                   reply_tokens=split_tokens(options.reply) if options.reply is not None else None)

    @property
    def running(self) -> int:
        return self.batch.running

    @property
    def waiting(self) -> int:
        return self.batch.waiting

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
    async def slot(self, arrival: float) -> AsyncIterator[Seq]:
        """A place in the batch (see `batch.Batch`), queueing when it is full.

        The sequence starts at `arrival`, or for a request that had to queue,
        when its place was freed (after any stall). Set `done` to when the
        request was due to finish; a place is otherwise freed at once.
        """
        handed = await self.batch.admit()
        seq = Seq(arrival, arrival)
        try:
            if handed is not None:
                seq.start = max(handed, arrival)
                t = now()
                until = self.stall.release(t)
                if until > t:   # freed inside a stall: nothing starts before it ends
                    await self.sleep_until(until)
                    seq.start = until
            self.timings.queue.observe(seq.start - arrival)
            yield seq
        finally:
            self.batch.release(seq.done if seq.done is not None else now())


@dataclass(slots=True)
class Seq:
    """One admitted request: when it arrived, started and (once known) was due to finish."""

    arrival: float
    start: float
    done: float | None = None


class Tally:
    """Counts one response's tokens as they go out and times them (TTFT, ITL, E2E)."""

    __slots__ = ("_state", "arrival", "last")

    def __init__(self, state: SimState, arrival: float) -> None:
        self._state = state
        self.arrival = arrival
        self.last: float | None = None

    def __call__(self, t: float, tokens: int = 1) -> None:
        """`tokens` went out by `t`, evenly spaced since the last ones (the first: one token)."""
        state = self._state
        state.generation_tokens += tokens
        if self.last is None:
            state.timings.ttft.observe(t - self.arrival)
        else:
            state.timings.itl.observe((t - self.last) / tokens, tokens)
        self.last = t

    def finish(self, t: float) -> None:
        self._state.timings.e2e.observe(t - self.arrival)


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
    label = f'model_name="{label_value(state.options.model)}"'
    out = Exposition()
    out.gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
              [(label, state.running)])
    out.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
              [(label, state.waiting)])
    out.counter("vllm:request_success", "Count of successfully processed requests.",
                [(f'finished_reason="{reason}",{label}', state.finished[reason])
                 for reason in ("stop", "length", "abort")])
    out.counter("vllm:prompt_tokens", "Number of prefill tokens processed.",
                [(label, state.prompt_tokens)])
    out.counter("vllm:generation_tokens", "Number of generation tokens processed.",
                [(label, state.generation_tokens)])
    t = state.timings
    out.histogram("vllm:request_queue_time_seconds",
                  "Histogram of time spent in WAITING phase for request.", label, t.queue)
    out.histogram("vllm:time_to_first_token_seconds",
                  "Histogram of time to first token in seconds.", label, t.ttft)
    out.histogram("vllm:inter_token_latency_seconds",
                  "Histogram of inter-token latency in seconds.", label, t.itl)
    out.histogram("vllm:e2e_request_latency_seconds",
                  "Histogram of e2e request latency in seconds.", label, t.e2e)
    out.gauge("openai_sim:decode_step_seconds",
              "Time of one decode step at the current batch size (openai-sim's engine model).",
              [(label, state.batch.step())])
    out.counter("openai_sim:injected_faults", "Faults injected by openai-sim.",
                [(f'kind="{kind}",{label}', count) for kind, count in state.injected.items()])
    if state.options.check_history:
        out.counter("openai_sim:history_answers",
                    "Chat requests by the number of earlier answers they carried.",
                    [(f'answers="{n}",{label}', count)
                     for n, count in sorted(state.history.carried.items())])
    if state.prefix is not None:
        out.counter("vllm:prefix_cache_queries", "Prefix cache queries, in prompt tokens.",
                    [(label, state.prefix.queries)])
        out.counter("vllm:prefix_cache_hits", "Prefix cache hits, in prompt tokens.",
                    [(label, state.prefix.hits)])
    return out.text()
