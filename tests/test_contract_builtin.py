"""The plugin contract suite run against the built-in plugins: they register and are
checked exactly like third-party plugins, and the suite must hold for them too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from servers.api_server import make_app as make_api_app

from llmscen.engine.protocol import Call
from llmscen.runners import http, openai, vllm
from llmscen.services.openai_sim import OpenAISimOptions, create_app
from llmscen.testing.background import serve_in_thread
from llmscen.testing.contract import RunnerContract

MODEL = "contract-model"
MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    options = OpenAISimOptions(model=MODEL, ttft="5ms", itl="1ms", output_tokens=6)
    with serve_in_thread(lambda: create_app(options), name="openai-sim") as url:
        yield url


class TestOpenAIContract(RunnerContract):
    @pytest.fixture
    def plugin(self) -> Any:
        return openai.plugin

    @pytest.fixture
    def target_url(self, sim_url: str) -> str:
        return sim_url

    def target_options(self, secret: str) -> dict[str, Any]:
        return {"model": MODEL, "api_key": secret}

    def good_call(self) -> Call:
        return Call("chat", {"body": {"messages": MESSAGES}})

    def streaming_call(self) -> Call:
        return Call("chat", {"body": {"messages": MESSAGES}}, stream=True)

    def failing_call(self) -> Call:
        # longer than the simulator's context: HTTP 400, as vLLM answers
        return Call("chat", {"body": {"messages": MESSAGES, "max_tokens": 10**6}})


class TestVLLMContract(TestOpenAIContract):
    @pytest.fixture
    def plugin(self) -> Any:
        return vllm.plugin

    def target_options(self, secret: str) -> dict[str, Any]:
        return {"model": MODEL, "api_key": secret, "ready_timeout": "1s"}

    def hostile_target_options(self, secret: str) -> dict[str, Any]:
        # the misbehaving servers have no /health: skip the wait, as for such a real server
        return {**self.target_options(secret), "health_path": None}


class TestHttpContract(RunnerContract):
    @pytest.fixture
    def plugin(self) -> Any:
        return http.plugin

    @pytest.fixture(scope="class")
    def target_url(self) -> Iterator[str]:
        with serve_in_thread(make_api_app, name="api-server") as url:
            yield url

    def target_options(self, secret: str) -> dict[str, Any]:
        return {"headers": {"Authorization": f"Bearer {secret}"}}

    def good_call(self) -> Call:
        return Call("health", {"get": "/health"})

    def failing_call(self) -> Call:
        return Call("code", {"get": "/code/503"})
