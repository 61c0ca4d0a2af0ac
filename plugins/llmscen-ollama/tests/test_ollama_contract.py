"""The llmscen plugin contract, run against the `ollama` plugin and the fake server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import llmscen_ollama
import pytest
from fake_ollama import FakeConfig, serve

from llmscen.engine.protocol import Call
from llmscen.testing.contract import RunnerContract

MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def target_url() -> Iterator[str]:
    with serve(FakeConfig(ttft=0.01, itl=0.002)) as (url, _):
        yield url


class TestOllamaContract(RunnerContract):
    @pytest.fixture
    def plugin(self) -> Any:
        return llmscen_ollama.plugin

    def target_options(self, secret: str) -> dict[str, Any]:
        return {"model": "llama3.2", "api_key": secret, "timeout": "10s"}

    def good_call(self) -> Call:
        return Call("chat", {"body": {"messages": MESSAGES}})

    def streaming_call(self) -> Call:
        return Call("chat", {"body": {"messages": MESSAGES}}, stream=True)

    def failing_call(self) -> Call:
        return Call("chat", {"body": {"messages": MESSAGES, "fake": "error500"}})


class TestOllamaGenerateContract(TestOllamaContract):
    """The same rules through `/api/generate`."""

    def good_call(self) -> Call:
        return Call("gen", {"api": "generate", "body": {"prompt": "Say hello."}})

    def streaming_call(self) -> Call:
        return Call("gen", {"api": "generate", "body": {"prompt": "Say hello."}}, stream=True)
