"""openai-sim's engine model: a bounded batch of running sequences, a FIFO queue, and
decode steps that slow down as the batch grows — so its capacity is known in advance.

Like vLLM's scheduler with `max_num_seqs`, at most `max_concurrency` requests
run at once; the rest wait in arrival order. While B sequences run, every
sequence's next token takes one decode step of

    step(B) = itl * (1 + batch_slowdown * (B - 1))

(a step reads the weights once for the whole batch, plus a little per sequence
for its KV cache). A freed place goes to the head of the queue at the moment
the finished request was *due* to finish, so scheduling jitter of the event loop
does not leak into the capacity. `capacity()` is the resulting saturation
throughput; docs/simulators.md derives it.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmscen.services.openai_sim.options import OpenAISimOptions


class Batch:
    """The running sequences and the queue of one simulator."""

    __slots__ = ("_queue", "itl", "limit", "running", "slowdown")

    def __init__(self, limit: int | None, itl: float, slowdown: float) -> None:
        self.limit = limit
        self.itl = itl
        self.slowdown = slowdown
        self.running = 0
        self._queue: deque[asyncio.Future[float]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def step(self) -> float:
        """The time one decode step takes now, at the current batch size."""
        extra = self.running - 1
        return self.itl * (1.0 + self.slowdown * extra) if extra > 0 else self.itl

    async def admit(self) -> float | None:
        """Take a place in the batch, queueing first when it is full.

        None when admitted at once; after a wait, the time the place was freed.
        """
        if self.limit is None or self.running < self.limit:
            self.running += 1
            return None
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._queue.append(future)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(future.result())   # handed a place just now: pass it on
            else:
                self._queue.remove(future)
            raise

    def release(self, at: float) -> None:
        """Give up a place; `at` is when it became free (the head of the queue starts then)."""
        while self._queue:
            future = self._queue.popleft()
            if not future.done():
                future.set_result(at)
                return
        self.running -= 1


def service_time(options: OpenAISimOptions, batch: int, output_tokens: int,
                 prompt_tokens: int = 0) -> float:
    """Seconds one request holds its place while `batch` sequences run throughout."""
    step = options.itl * (1.0 + options.batch_slowdown * max(batch - 1, 0))
    prefill = options.ttft + options.prefill_per_token * prompt_tokens
    return prefill + max(output_tokens - 1, 0) * step


def capacity(options: OpenAISimOptions, output_tokens: int, prompt_tokens: int = 0) -> float:
    """Completed requests per second at saturation, for replies of `output_tokens` tokens.

    Below it no request waits (with evenly spaced arrivals); above it the queue
    grows without bound. `inf` when nothing limits the simulator.
    """
    if options.max_concurrency is None:
        # The batch grows with the load; throughput B / T(B) approaches 1 / (n-1)·itl·slowdown.
        per_sequence = max(output_tokens - 1, 0) * options.itl * options.batch_slowdown
        return 1.0 / per_sequence if per_sequence > 0 else math.inf
    seconds = service_time(options, options.max_concurrency, output_tokens, prompt_tokens)
    return options.max_concurrency / seconds if seconds > 0 else math.inf
