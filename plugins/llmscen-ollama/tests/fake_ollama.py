"""A small deterministic stand-in for Ollama's HTTP API, for tests.

Routes: `POST /api/chat`, `POST /api/generate` (NDJSON streams unless the
body says `"stream": false`, as Ollama does), `GET /api/tags`,
`GET /api/version`.

Each reply generates `output_tokens` pieces (`options.num_predict` in the
body lowers it): the first after `ttft`, then one every `itl`. A body key
`fake` asks for a fault, so one server can serve a good and a bad call:

  error500      HTTP 500 whose message echoes the Authorization header (a careless proxy)
  not_found     HTTP 404 as for a model that was never pulled
  stream_error  two lines, then an `{"error": ...}` line (Ollama's mid-stream failure)
  malformed     two lines, then a line that is not JSON
  cut           two lines, then the end of the body without the `done: true` line
  reset         two lines, then the connection is aborted
  slow          waits `slow` seconds before answering
  stall         sends the header and one line, then waits `slow` seconds

In tests: `with serve(FakeConfig(...)) as (url, seen): ...` runs it on port 0
in a background thread. By hand: `python tests/fake_ollama.py --port 11434`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from llmscen.testing.background import serve_in_thread

WORDS = ("The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".")


@dataclass
class FakeConfig:
    models: tuple[str, ...] = ("llama3.2:latest", "qwen2.5:0.5b")
    ttft: float = 0.02          # seconds before the first content line
    itl: float = 0.005          # seconds between content lines
    output_tokens: int = 8
    prompt_tokens: int = 12
    slow: float = 5.0           # how long `slow` and `stall` wait
    require_key: str | None = None   # answer 401 unless `Authorization: Bearer <key>`


@dataclass
class Seen:
    """What the server received."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


CONFIG = web.AppKey("config", FakeConfig)
SEEN = web.AppKey("seen", Seen)


def piece(index: int) -> str:
    return WORDS[index % len(WORDS)]


def line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"


def now_text() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def part(chat: bool, model: str, text: str) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "created_at": now_text()}
    if chat:
        out["message"] = {"role": "assistant", "content": text}
    else:
        out["response"] = text
    return {**out, "done": False}


def final(chat: bool, model: str, count: int, config: FakeConfig, reason: str) -> dict[str, Any]:
    out = part(chat, model, "")
    if not chat:
        out["context"] = [1, 2, 3]
    return {**out, "done": True, "done_reason": reason, "total_duration": 1_000_000,
            "load_duration": 1000, "prompt_eval_count": config.prompt_tokens,
            "prompt_eval_duration": 1000, "eval_count": count, "eval_duration": 1000}


def authorized(request: web.Request) -> bool:
    key = request.app[CONFIG].require_key
    return key is None or request.headers.get("Authorization") == f"Bearer {key}"


async def generate(request: web.Request) -> web.StreamResponse:
    config, seen = request.app[CONFIG], request.app[SEEN]
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "invalid JSON body"}, status=400)
    seen.bodies.append(body)
    seen.headers.append(dict(request.headers))
    seen.paths.append(request.path)
    if not authorized(request):
        return web.json_response({"error": "unauthorized"}, status=401)
    chat = request.path == "/api/chat"
    model = str(body.get("model", ""))
    fault = body.get("fake")
    if fault == "error500":
        return web.json_response({"error": "upstream failed for "
                                  + request.headers.get("Authorization", "(no auth)")},
                                 status=500)
    if fault == "not_found" or (model not in config.models
                                and f"{model}:latest" not in config.models):
        return web.json_response({"error": f"model '{model}' not found, try pulling it first"},
                                 status=404)
    if fault == "slow":
        await asyncio.sleep(config.slow)
    options = body.get("options") or {}
    count = min(config.output_tokens, int(options.get("num_predict") or config.output_tokens))
    reason = "length" if count < config.output_tokens else "stop"
    if body.get("stream", True) is False:
        await asyncio.sleep(config.ttft + config.itl * max(count - 1, 0))
        whole = final(chat, model, count, config, reason)
        text = "".join(piece(i) for i in range(count))
        if chat:
            whole["message"]["content"] = text
        else:
            whole["response"] = text
        return web.json_response(whole)
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    await asyncio.sleep(config.ttft)
    for i in range(count):
        if i:
            await asyncio.sleep(config.itl)
        await resp.write(line(part(chat, model, piece(i))))
        if fault == "stall":
            await asyncio.sleep(config.slow)
        if i == 1 and fault in ("stream_error", "malformed", "cut", "reset"):
            return await broken_end(request, resp, fault)
    await resp.write(line(final(chat, model, count, config, reason)))
    await resp.write_eof()
    return resp


async def broken_end(request: web.Request, resp: web.StreamResponse,
                     fault: str) -> web.StreamResponse:
    if fault == "stream_error":
        await resp.write(line({"error": "llama runner process has terminated: exit status 2"}))
    elif fault == "malformed":
        await resp.write(b'{"message": {"content": "x"\n')
    elif fault == "reset":
        assert request.transport is not None
        request.transport.abort()
        return resp
    await resp.write_eof()
    return resp


async def tags(request: web.Request) -> web.Response:
    if not authorized(request):
        return web.json_response({"error": "unauthorized"}, status=401)
    models = [{"name": m, "model": m, "modified_at": "2024-01-01T00:00:00Z", "size": 1,
               "digest": "0" * 64, "details": {"format": "gguf"}}
              for m in request.app[CONFIG].models]
    return web.json_response({"models": models})


async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": "0.0.0-fake"})


def make_app(config: FakeConfig | None = None, seen: Seen | None = None) -> web.Application:
    app = web.Application()
    app[CONFIG] = config or FakeConfig()
    app[SEEN] = seen if seen is not None else Seen()
    app.router.add_post("/api/chat", generate)
    app.router.add_post("/api/generate", generate)
    app.router.add_get("/api/tags", tags)
    app.router.add_get("/api/version", version)
    return app


@contextlib.contextmanager
def serve(config: FakeConfig | None = None) -> Iterator[tuple[str, Seen]]:
    """Serve on port 0 in a background thread; yield the URL and what it receives."""
    seen = Seen()
    with serve_in_thread(lambda: make_app(config, seen), name="fake-ollama") as url:
        yield url, seen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    args = parser.parse_args(argv)
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None)


if __name__ == "__main__":
    main()
