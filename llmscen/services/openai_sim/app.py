"""The simulator's application, its in-process runner and its process entry point."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import orjson
from aiohttp import web
from pydantic import ValidationError

from llmscen.services.openai_sim import handlers, state
from llmscen.services.openai_sim.options import OpenAISimOptions

__all__ = ["OptionsError", "create_app", "main", "parse_options", "running_sim"]


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
    app.router.add_post("/tokenize", handlers.tokenize)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/version", handlers.version)
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
