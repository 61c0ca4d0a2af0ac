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
starts (after any wait for a `max_concurrency` slot and any stall). A chat
stream sends the role-only chunk at once and the first content chunk at
`ttft`, so a client timing TTFT at the first byte instead of the first content
measures about zero. A stall shifts the rest of a stream in flight: the held
chunk goes out when the stall ends and the following ones keep their spacing.

Modules: this one (options, app, entry points); `openai_sim_handlers` (the
endpoints); `openai_sim_state` (counters, faults, queue, /metrics);
`openai_sim_stream` (SSE byte templates, pacing, stall window);
`openai_sim_text` (tokens, pseudo-words, embeddings); `openai_sim_timer`
(sub-millisecond sleeps).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmscen.services import openai_sim_handlers as handlers
from llmscen.services import openai_sim_state as state
from llmscen.spec.units import Duration, Percent

__all__ = ["OpenAISimOptions", "create_app", "main", "parse_options", "running_sim"]


class OpenAISimOptions(BaseModel):
    """Options of the `openai-sim` service (`services.<name>.options`)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("sim-model", min_length=1, description="the one served model name")
    ttft: Duration = Field(0.05, description="time to the first content chunk")
    itl: Duration = Field(0.01, description="time between content chunks")
    output_tokens: int = Field(128, ge=0, description="tokens per reply (one chunk each), "
                                                      "capped by the request's max_tokens")
    output_tokens_spread: int = Field(0, ge=0, description="vary output_tokens uniformly by ± "
                                                           "this much, fixed per prompt and seed")
    seed: int = Field(0, description="seeds generated text, embeddings and injected faults")
    reply: str | None = Field(None, description="answer every request with exactly this text")
    echo_prompt: bool = Field(False, description="answer with the last user message")
    error_rate: Percent = Field(0.0, description="share of requests answered with error_status")
    error_status: int = Field(500, ge=400, le=599, description="HTTP status of injected errors")
    malformed_rate: Percent = Field(0.0, description="share of responses with one invalid-JSON "
                                                     "event mid-stream (or a truncated JSON body)")
    cut_rate: Percent = Field(0.0, description="share of responses cut off half-way, without "
                                               "finish_reason or [DONE]")
    cut_mode: Literal["eof", "reset"] = Field(
        "eof", description="how a cut stream ends: a clean end of body, or a dropped connection")
    stall_after: Duration | None = Field(None, description="freeze the server this long after "
                                                           "the first inference request")
    stall_for: Duration = Field(0.0, description="how long the freeze lasts")
    max_concurrency: int | None = Field(None, ge=1, description="requests beyond this many in "
                                                                "flight wait in a queue")
    embedding_dimensions: int = Field(384, ge=1, description="default length of embeddings")
    max_model_len: int = Field(32768, ge=1, description="prompt + max_tokens limit, as in vLLM")

    @model_validator(mode="after")
    def _consistent(self) -> OpenAISimOptions:
        if self.reply is not None and self.echo_prompt:
            raise ValueError("set either 'reply' or 'echo_prompt', not both")
        if self.error_rate + self.malformed_rate + self.cut_rate > 1.0 + 1e-9:
            raise ValueError("error_rate + malformed_rate + cut_rate must not exceed 100%")
        return self


def create_app(options: OpenAISimOptions) -> web.Application:
    """A fresh simulator application; its state lives on the app, nowhere else."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[state.STATE] = state.SimState.create(options)
    app.on_startup.append(state.start_waker)
    app.on_cleanup.append(state.stop_waker)
    app.router.add_get("/v1/models", handlers.models)
    app.router.add_post("/v1/chat/completions", handlers.chat_completions)
    app.router.add_post("/v1/completions", handlers.text_completions)
    app.router.add_post("/v1/embeddings", handlers.embeddings)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/metrics", handlers.metrics)
    return app


@asynccontextmanager
async def running_sim(options: OpenAISimOptions | None = None, host: str = "127.0.0.1",
                      port: int = 0, *, shutdown_timeout: float = 0.25) -> AsyncIterator[str]:
    """Serve a simulator on the running loop; yields its base URL (without `/v1`).

    On exit, requests still in flight get `shutdown_timeout` seconds before they
    are cancelled.
    """
    runner = web.AppRunner(create_app(options or OpenAISimOptions()), access_log=None,
                           shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{bound[1]}"
    finally:
        await runner.cleanup()


class OptionsError(ValueError):
    """`--options` is not valid JSON or not valid openai-sim options."""


def parse_options(text: str) -> OpenAISimOptions:
    """Options from a JSON object; OptionsError with one line per problem."""
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise OptionsError(f"--options is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise OptionsError("--options must be a JSON object, e.g. '{\"ttft\": \"50ms\"}'")
    try:
        return OpenAISimOptions.model_validate(raw)
    except ValidationError as exc:
        raise OptionsError("\n".join(_describe(error) for error in exc.errors())) from None


def _describe(error: object) -> str:
    assert isinstance(error, dict)
    where = ".".join(str(part) for part in error.get("loc", ())) or "options"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        message = "unknown option"
        close = difflib.get_close_matches(where, list(OpenAISimOptions.model_fields), n=1)
        if close:
            message += f"; did you mean '{close[0]}'?"
    return f"{where}: {message}"


async def _serve(options: OpenAISimOptions, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: no handlers
            loop.add_signal_handler(sig, stop.set)
    async with running_sim(options, host, port, shutdown_timeout=0.1) as base_url:
        print(f"LISTENING {base_url}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator as a process; returns the exit code (2: invalid options)."""
    parser = argparse.ArgumentParser(prog="python -m llmscen.services.openai_sim",
                                     description="OpenAI/vLLM-compatible simulator (openai-sim)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    parser.add_argument("--options", default="{}", metavar="JSON",
                        help="openai-sim options as a JSON object, e.g. '{\"ttft\": \"50ms\"}'")
    args = parser.parse_args(argv)
    try:
        options = parse_options(args.options)
    except OptionsError as exc:
        print(f"openai-sim: invalid options:\n{exc}", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        run = asyncio.run
    else:
        run = uvloop.run
    try:
        run(_serve(options, args.host, args.port))
    except KeyboardInterrupt:  # pragma: no cover - SIGINT where signal handlers are unsupported
        return 0
    except OSError as exc:
        print(f"openai-sim: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
