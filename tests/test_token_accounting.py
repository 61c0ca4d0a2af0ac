"""token_mismatch_rate: the server's usage against the token chunks the client counted,
through the CLI against openai-sim (one token a chunk) and a server that packs two
tokens into some chunks, as vLLM does under load."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from click.testing import CliRunner

from llmscen.cli.main import cli
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults
from llmscen.testing.fixtures import start_openai_sim

SCENARIO = """
version: 1
targets:
  chat: {plugin: openai, url: "URL", model: sim-model}
phases:
  - {name: p, each: [chat], times: 10}
requests:
  - name: chat
    target: chat
    stream: true
    body: {messages: [{role: user, content: "n {{ seq }}"}], max_tokens: 6}
slos:
  - token_mismatch_rate < 60%
"""


def run(url: str, tmp_path: Path) -> tuple[int, str, RunResults]:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO.replace("URL", url))
    result = CliRunner().invoke(cli, ["run", str(scenario), "--out", str(tmp_path / "out"),
                                      "-q", "--workers", "1"], catch_exceptions=False)
    return result.exit_code, result.output, RunResults.load(tmp_path / "out/results.json")


@pytest.fixture
def packing_server() -> Iterator[str]:
    """Streams 6 tokens; every other request in 3 chunks of two tokens each."""
    ready = threading.Event()
    state: dict[str, Any] = {"n": 0}

    async def chat(request: web.Request) -> web.StreamResponse:
        state["n"] += 1
        packed = state["n"] % 2 == 0
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        pieces = ["a b", " c d", " e f"] if packed else ["a", " b", " c", " d", " e", " f"]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            await response.write(b"data: " + orjson.dumps({"id": "x", "choices": [{
                "index": 0, "delta": {"content": piece},
                "finish_reason": "stop" if last else None}]}) + b"\n\n")
        usage = {"prompt_tokens": 1, "completion_tokens": 6, "total_tokens": 7}
        await response.write(b"data: " + orjson.dumps({"id": "x", "choices": [],
                                                       "usage": usage}) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        state["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}"
        state["loop"], state["stop"] = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        await state["stop"].wait()
        await runner.cleanup()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield state["url"]
    state["loop"].call_soon_threadsafe(state["stop"].set)
    thread.join(10)


def test_half_the_streams_disagree_with_their_usage(packing_server: str,
                                                   tmp_path: Path) -> None:
    code, output, results = run(packing_server, tmp_path)
    agg = aggregate(results)
    assert agg.counters.tokens_compared == 10 and agg.counters.token_mismatches == 5
    assert agg.value("token_mismatch_rate") == 0.5
    assert code == 0, output          # 50% < 60%: the SLO holds


def test_one_token_a_chunk_matches_exactly(tmp_path: Path) -> None:
    with start_openai_sim({"output_tokens": 6, "empty_token_rate": "20%"}, tmp_path) as sim:
        code, output, results = run(sim.url, tmp_path)
    assert code == 0, output
    agg = aggregate(results)
    assert agg.counters.tokens_compared == 10
    assert agg.value("token_mismatch_rate") == 0.0    # empty-text token chunks count too
