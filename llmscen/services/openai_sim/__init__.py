"""openai-sim: the bundled OpenAI/vLLM-compatible simulator (SPEC §8).

A deterministic aiohttp server answering `/v1/models`, `/v1/chat/completions`,
`/v1/completions`, `/v1/embeddings`, `/health` and `/metrics`. Streamed
responses pace their content chunks against absolute deadlines (`ttft`, then
one token every `itl`), faults are injected from a seeded random source, and a
stall window freezes the server to exercise coordinated-omission correction.

In-process, for tests::

    async with running_sim(OpenAISimOptions(ttft="50ms")) as base_url:
        ...  # base_url is "http://127.0.0.1:PORT" (no /v1)

As a process (what the `openai-sim` service starts)::

    python -m llmscen.services.openai_sim --host 127.0.0.1 --port 0 --options '{"ttft": "50ms"}'

prints one line `LISTENING http://127.0.0.1:PORT`, serves until SIGTERM or
SIGINT, then exits 0.

Timing notes: the origin of a request's deadlines is the moment its handler
starts (after any stall), or for a request that queued for one of the
`max_concurrency` places, the moment its place was freed. With
`batch_slowdown` each decode step lengthens with the batch, so the
simulator's capacity is known in advance (`batch.capacity`,
docs/simulators.md). A chat
stream sends the role-only chunk at once and the first content chunk at
`ttft`, so a client timing TTFT at the first byte instead of the first content
measures about zero. A stall shifts the rest of a stream in flight: the held
chunk goes out when the stall ends and the following ones keep their spacing.

Modules: `options` (the options model), `app` (the app, the in-process runner,
the process entry point), `handlers` (the endpoints), `state` (counters,
faults, /metrics), `batch` (the engine model: places, queue, decode steps,
capacity), `exposition` (server-side histograms, Prometheus text), `stream`
(SSE byte templates, pacing, stall window), `text` (tokens, pseudo-words,
embeddings), `timer` (sub-millisecond sleeps).
"""

from __future__ import annotations

from llmscen.services.openai_sim.app import OptionsError, create_app, main, parse_options, running_sim
from llmscen.services.openai_sim.options import OpenAISimOptions

__all__ = ["OpenAISimOptions", "OptionsError", "create_app", "main", "parse_options", "running_sim"]
