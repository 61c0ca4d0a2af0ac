"""The `ollama` runner against the fake Ollama server (fake_ollama.py) on port 0."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import llmscen_ollama
import orjson
import pytest
from fake_ollama import FakeConfig, serve
from llmscen_ollama import OllamaRequestOptions, OllamaRunner, OllamaTargetOptions
from llmscen_ollama.runner import full_name
from llmscen_ollama.stream import LineSplitter, StreamProblem, StreamState, read_body
from pydantic import ValidationError

from llmscen.compile.plan import TargetPlan
from llmscen.engine.protocol import Call, Exchange
from llmscen.engine.registry import Registry, check_plugin

SECRET = "ollama-SECRET-0123456789"
MESSAGES = [{"role": "user", "content": "hi"}]


def plan(url: str | None, **options: Any) -> TargetPlan:
    return TargetPlan(name="local", plugin="ollama", url=url,
                      options=OllamaTargetOptions(**{"model": "llama3.2", **options}))


@contextlib.asynccontextmanager
async def started(target: TargetPlan) -> AsyncIterator[OllamaRunner]:
    runner = llmscen_ollama.plugin.create_runner(target)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


async def send(runner: OllamaRunner, body: dict[str, Any] | None = None, *, stream: bool = False,
               timeout: float | None = None, **payload: Any) -> Exchange:
    call = Call("r", {"body": {"messages": MESSAGES} if body is None else body, **payload},
                stream=stream, timeout=timeout)
    ex = Exchange(intended_ns=time.perf_counter_ns())
    await runner.send(call, ex)
    return ex


@pytest.fixture(scope="module")
def fake() -> Any:
    with serve(FakeConfig(ttft=0.03, itl=0.01, output_tokens=6)) as (url, seen):
        yield url, seen


# -- the plugin object and its options ----------------------------------------------------


def test_plugin_is_registered_by_its_distribution():
    assert check_plugin(llmscen_ollama.plugin) == []
    registry = Registry.discover()
    if "ollama" not in registry.plugins:
        pytest.fail("entry point `ollama` not found: pip install -e plugins/llmscen-ollama")
    entry = registry.plugins["ollama"]
    assert entry.obj is llmscen_ollama.plugin
    assert (entry.distribution, entry.version) == ("llmscen-ollama", llmscen_ollama.__version__)


def test_options_forbid_typos_and_hide_the_key():
    options = OllamaTargetOptions(model="m", api_key=SECRET, timeout="1.5s")
    assert options.timeout == 1.5 and SECRET not in repr(options)
    assert OllamaTargetOptions(model="m", api_key="").api_key is None
    with pytest.raises(ValidationError, match="modle"):
        OllamaTargetOptions.model_validate({"model": "m", "modle": "x"})
    with pytest.raises(ValidationError, match="api"):
        OllamaRequestOptions.model_validate({"api": "embeddings"})


def test_runner_pickles_before_start_and_fills_the_body():
    runner = llmscen_ollama.plugin.create_runner(pickle.loads(pickle.dumps(plan(
        "http://h:1/", model_options={"num_predict": 5, "seed": 1}, keep_alive="10m"))))
    runner = pickle.loads(pickle.dumps(runner))
    assert runner.base == "http://h:1"
    body = {"prompt": "x", "options": {"seed": 2}}
    sent = orjson.loads(runner.encode(body, stream=False))
    assert sent == {"prompt": "x", "model": "llama3.2", "stream": False, "keep_alive": "10m",
                    "options": {"num_predict": 5, "seed": 2}}
    assert body == {"prompt": "x", "options": {"seed": 2}}     # the caller's dict is left alone
    assert orjson.loads(runner.encode({"model": "other"}, stream=True))["model"] == "other"


@pytest.mark.parametrize(("name", "full"), [("llama3.2", "llama3.2:latest"),
                                            ("qwen2.5:0.5b", "qwen2.5:0.5b"),
                                            ("hf.co/org/model", "hf.co/org/model:latest"),
                                            ("registry:5000/m", "registry:5000/m:latest")])
def test_model_names_default_to_latest(name, full):
    assert full_name(name) == full


# -- the NDJSON path ----------------------------------------------------------------------


def test_lines_split_across_reads_and_batched():
    splitter = LineSplitter()
    assert splitter.feed(b'{"a": 1}\n{"b"') == [b'{"a": 1}']
    assert splitter.feed(b': 2}\n\n{"c": 3}\n') == [b'{"b": 2}', b"", b'{"c": 3}']
    assert splitter.feed(b'{"d": 4}') == []
    assert splitter.close() == [b'{"d": 4}'] and splitter.close() == []


def chat_line(content: str, **extra: Any) -> bytes:
    return orjson.dumps({"message": {"role": "assistant", "content": content}, "done": False,
                         **extra})


def test_stream_accounting_counts_content_thinking_and_final_counts():
    ex = Exchange(intended_ns=0)
    state = StreamState(True, ex.itl_us)
    state.lines([chat_line("")], 1_000_000)                     # role-only: not content
    state.lines([b'{"message": {"role": "assistant", "content": "", "thinking": "hm"}}'],
                2_000_000)
    state.lines([chat_line("Hel"), chat_line("lo")], 3_000_000)
    state.lines([b'{"message": {"content": ""}, "done": true, "done_reason": "length", '
                 b'"eval_count": 9, "prompt_eval_count": 4}'], 4_000_000)
    state.fill(ex)
    assert ex.error is None and ex.text == "Hello" and ex.chunks == 3
    assert ex.first_content_ns == 2_000_000 and ex.itl_us == [1000, 0]
    assert (ex.output_tokens, ex.input_tokens, ex.finish_reason) == (9, 4, "length")
    assert not ex.tokens_estimated


@pytest.mark.parametrize(("lines", "error", "words"), [
    ([b'{"error": "runner died"}'], "http", "error in stream: runner died"),
    ([b"[1, 2]"], "protocol", "not a JSON object"),
    ([b'{"message": '], "protocol", "malformed NDJSON line"),
    ([b'{"message": "text"}'], "protocol", "unexpected stream line"),
    ([b'{"message": {"content": 5}}'], "protocol", "not a string"),
    ([b'{"done": true}', chat_line("late")], "protocol", "after the one with done: true"),
])
def test_bad_lines(lines, error, words):
    ex = Exchange(intended_ns=0)
    state = StreamState(True, ex.itl_us)
    state.lines([chat_line("ok")], 1)
    with pytest.raises(StreamProblem) as info:
        state.lines(lines, 2)
    assert info.value.error == error and words in info.value.message
    state.fill(ex, complete=False)
    assert ex.chunks == 1 and ex.error is None


def test_a_stream_without_done_is_cut_and_tokens_are_estimated():
    ex = Exchange(intended_ns=0)
    state = StreamState(False, ex.itl_us)
    state.lines([b'{"response": "a", "done": false}', b'{"response": "b", "done": false}'], 1)
    state.fill(ex)
    assert ex.error == "protocol" and "done: true" in ex.error_message
    assert ex.output_tokens == 2 and ex.tokens_estimated


def test_read_body_needs_done():
    ex = Exchange(intended_ns=0)
    assert read_body({"response": "x", "done": True, "eval_count": 1}, ex, chat=False) is None
    assert ex.text == "x" and ex.output_tokens == 1
    assert "done: true" in (read_body({"response": "x"}, Exchange(0), chat=False) or "")
    assert "not a JSON object" in (read_body([1], Exchange(0), chat=True) or "")


# -- against the fake server --------------------------------------------------------------


@pytest.mark.parametrize("api", ["chat", "generate"])
def test_streamed_reply_timings_and_counts(fake, api):
    url, seen = fake

    async def body() -> Exchange:
        async with started(plan(url, api_key=SECRET)) as runner:
            return await send(runner, {"messages": MESSAGES, "prompt": "hi"}, stream=True,
                              api=api)
    ex = asyncio.run(body())
    assert ex.error is None, ex.error_message
    assert ex.text == "The quick brown fox jumps over" and ex.chunks == 6
    assert (ex.output_tokens, ex.input_tokens, ex.finish_reason) == (6, 12, "stop")
    assert ex.first_content_ns - ex.sent_ns >= 25_000_000        # the fake's 30 ms TTFT
    assert len(ex.itl_us) == 5 and sorted(ex.itl_us)[2] >= 5_000  # and its 10 ms ITL
    assert ex.sent_ns <= ex.first_byte_ns <= ex.first_content_ns <= ex.end_ns
    assert seen.paths[-1] == f"/api/{api}" and seen.bodies[-1]["stream"] is True
    assert seen.headers[-1]["Authorization"] == f"Bearer {SECRET}"


def test_unstreamed_reply_sends_stream_false(fake):
    url, seen = fake

    async def body() -> Exchange:
        async with started(plan(url)) as runner:
            return await send(runner, {"prompt": "hi", "options": {"num_predict": 3}},
                              api="generate")
    ex = asyncio.run(body())
    assert ex.error is None and ex.text == "The quick brown" and ex.chunks == 0
    assert (ex.output_tokens, ex.finish_reason) == (3, "length")
    assert seen.bodies[-1]["stream"] is False     # Ollama would stream without it


@pytest.mark.parametrize(("fault", "stream", "error", "words"), [
    ("error500", False, "http", "HTTP 500 Internal Server Error: upstream failed for Bearer ***"),
    ("not_found", True, "http", "HTTP 404 Not Found: model 'llama3.2' not found"),
    ("stream_error", True, "http", "error in stream: llama runner process has terminated"),
    ("malformed", True, "protocol", "malformed NDJSON line"),
    ("cut", True, "protocol", "stream ended before a line with done: true"),
    ("reset", True, "protocol", "response cut off"),
])
def test_faults_are_classified(fake, fault, stream, error, words):
    url, _ = fake

    async def body() -> tuple[Exchange, Exchange]:
        async with started(plan(url, api_key=SECRET)) as runner:
            bad = await send(runner, {"messages": MESSAGES, "fake": fault}, stream=stream)
            return bad, await send(runner)   # the runner still works afterwards
    ex, after = asyncio.run(body())
    assert (ex.error, after.error) == (error, None), ex.error_message
    assert words in ex.error_message and SECRET not in ex.error_message
    if fault in ("stream_error", "malformed", "cut"):
        assert ex.chunks == 2 and ex.first_content_ns > 0    # what arrived is kept


def test_timeout_and_cancel(fake):
    url, seen = fake

    async def body() -> None:
        async with started(plan(url)) as runner:
            ex = await send(runner, {"messages": MESSAGES, "fake": "slow"}, timeout=0.2)
            assert ex.error == "timeout" and "no response within 0.2s" in ex.error_message
            ex = await send(runner, {"messages": MESSAGES, "fake": "stall"}, stream=True,
                            timeout=0.2)
            assert ex.error == "timeout" and "not complete within 0.2s" in ex.error_message
            assert ex.chunks == 1

            ex = Exchange(intended_ns=time.perf_counter_ns())
            count = len(seen.bodies)
            task = asyncio.ensure_future(runner.send(
                Call("r", {"body": {"messages": MESSAGES, "fake": "slow"}}), ex))
            while len(seen.bodies) == count:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert ex.error == "cancelled" and ex.end_ns > 0
    asyncio.run(body())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_preflight(fake):
    url, _ = fake

    async def body() -> None:
        async with started(plan(url)) as runner:
            assert await runner.preflight([Call("a", {"body": {"model": "qwen2.5:0.5b"}})]) == []
            problems = await runner.preflight([Call("b", {"body": {"model": "mistral"}})])
            assert len(problems) == 1
            assert "'mistral' (request 'b') is not on" in problems[0]
            assert "llama3.2:latest, qwen2.5:0.5b" in problems[0]
            assert "ollama pull mistral" in problems[0]
        async with started(plan(url, model="phi3")) as runner:
            assert "'phi3'" in (await runner.preflight([]))[0]
        async with started(plan(f"http://127.0.0.1:{free_port()}", api_key=SECRET)) as runner:
            problems = await runner.preflight([])
            assert "cannot list models" in problems[0] and SECRET not in problems[0]
            ex = await send(runner)
            assert ex.error == "connect" and ex.status is None
    asyncio.run(body())


def test_a_wrong_key_is_named_in_preflight():
    with serve(FakeConfig(require_key=SECRET)) as (url, _):
        async def body() -> None:
            async with started(plan(url, api_key=SECRET)) as runner:
                assert await runner.preflight([]) == []
            async with started(plan(url, api_key="wrong-key-123")) as runner:
                problems = await runner.preflight([])
                assert "HTTP 401 (check api_key)" in problems[0]
                assert "wrong-key-123" not in problems[0]
        asyncio.run(body())


def test_start_without_url_says_so():
    async def body() -> None:
        runner = llmscen_ollama.plugin.create_runner(plan(None))
        with pytest.raises(ConnectionError, match="'local' has no URL"):
            await runner.start()
        await runner.stop()
    asyncio.run(body())
