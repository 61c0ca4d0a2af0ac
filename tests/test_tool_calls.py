"""Tool calls: OpenAI `tool_calls` deltas assembled per call, `ttft` at the first of them,
and `expect: tool_call` (name, arguments as JSON matching a schema) — from raw events, and
through the CLI against openai-sim, which calls tools deterministically."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from llmscen.assertions.expect import build_checker
from llmscen.cli.main import cli
from llmscen.engine.protocol import Exchange, ToolCall
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults
from llmscen.runners.openai_responses import StreamBody, read_body
from llmscen.spec.expect import Expect
from llmscen.testing.fixtures import start_openai_sim


def event(delta: dict[str, object], finish: str | None = None) -> bytes:
    return b"data: " + orjson.dumps({"id": "x", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"


def call(index: int, name: str | None = None, arguments: str = "",
         id: str | None = None) -> dict[str, object]:
    function: dict[str, object] = {"arguments": arguments}
    if name is not None:
        function["name"] = name
    out: dict[str, object] = {"index": index, "function": function}
    if id is not None:
        out.update(id=id, type="function")
    return out


def test_fragments_of_parallel_calls_are_joined_per_call_and_time_the_first_token() -> None:
    ex = Exchange(intended_ns=0)
    body = StreamBody(True, ex.itl_us)
    body.feed(event({"role": "assistant", "content": ""}), 1_000)
    body.feed(event({"tool_calls": [call(0, "get_weather", "", "call_a")]}), 2_000)
    body.feed(event({"tool_calls": [call(0, arguments='{"city": ')]}), 3_000)
    body.feed(event({"tool_calls": [call(1, "get_time", '{"zone"', "call_b")]}), 4_000)
    body.feed(event({"tool_calls": [call(0, arguments='"Paris"}')]}) +
              event({"tool_calls": [call(1, arguments=": 2}")]}, "tool_calls") +
              b"data: [DONE]\n\n", 5_000)
    body.finish(ex, 5_000)
    assert ex.error is None
    assert ex.tool_calls == [ToolCall("get_weather", '{"city": "Paris"}', "call_a"),
                             ToolCall("get_time", '{"zone": 2}', "call_b")]
    # the first tool-call delta is the first generated token; no answer text came
    assert ex.first_content_ns == 2_000 and ex.first_answer_ns == 0
    assert ex.chunks == 5 and ex.finish_reason == "tool_calls" and ex.text == ""


def test_a_malformed_tool_call_delta_is_a_protocol_error() -> None:
    ex = Exchange(intended_ns=0)
    body = StreamBody(True, ex.itl_us)
    with pytest.raises(Exception, match="tool call delta is not an object"):
        body.feed(event({"tool_calls": ["oops"]}), 1_000)


def test_a_whole_answers_tool_calls_are_read_with_object_arguments_too() -> None:
    ex = Exchange(intended_ns=0)
    problem = read_body("chat", {"choices": [{"index": 0, "finish_reason": "tool_calls",
                                              "message": {"role": "assistant", "content": None,
                                                          "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": {"b": 2}}}]}}]},
        ex)
    assert problem is None
    assert ex.tool_calls == [ToolCall("f", '{"a": 1}', "c1"), ToolCall("g", '{"b":2}', "c2")]


def failures(expect: dict[str, object], ex: Exchange) -> list[str]:
    return [f.message for f in build_checker(Expect.model_validate(expect)).check(ex)]


def test_each_way_a_tool_call_can_be_wrong_says_what_came_back() -> None:
    spec = {"tool_call": {"name": "get_weather", "arguments": {"schema": {
        "type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}}}
    ex = Exchange(intended_ns=0, text="It is sunny.", finish_reason="stop")
    assert failures(spec, ex) == ["expected a tool call to 'get_weather'; the answer made "
                                  "none, finish_reason 'stop': 'It is sunny.'"]
    ex.tool_calls = [ToolCall("get_time", "{}")]
    assert failures(spec, ex) == ["expected a tool call to 'get_weather'; got a call to "
                                  "'get_time'"]
    ex.tool_calls = [ToolCall("get_time", "{}"), ToolCall("get_weather", '{"city": ')]
    (message,) = failures(spec, ex)
    assert message.startswith("expected the arguments of 'get_weather' to be JSON; got "
                              "'{\"city\": ' (Expecting value")
    ex.tool_calls[1].arguments = '{"city": 75}'
    assert failures(spec, ex) == ["expected the arguments of 'get_weather' to match the "
                                  "schema; at $.city: 75 is not of type 'string' (got "
                                  "'{\"city\": 75}')"]
    ex.tool_calls[1].arguments = '{"city": "Oslo"}'
    assert failures(spec, ex) == []
    assert failures({"tool_call": {}}, ex) == []       # any call, arguments that are JSON


def test_an_invalid_arguments_schema_is_refused_when_validated() -> None:
    with pytest.raises(ValueError, match="invalid JSON Schema"):
        Expect.model_validate({"tool_call": {"arguments": {"schema": {"type": "objekt"}}}})


TOOLS = """[{type: function, function: {name: get_weather, parameters: {type: object,
        required: [city], properties: {city: {type: string},
        unit: {type: string, enum: [celsius, fahrenheit]}}}}},
      {type: function, function: {name: get_time, parameters: {type: object,
        properties: {zone: {type: integer}}}}}]"""

SCENARIO = f"""
version: 1
services:
  sim: {{builtin: openai-sim, options: {{ttft: 50ms, itl: 5ms}}}}
  broken: {{builtin: openai-sim, options: {{ttft: 5ms, itl: 1ms, tool_arguments: '{{"city": '}}}}
targets:
  chat: {{plugin: openai, service: sim, model: sim-model}}
  broken: {{plugin: openai, service: broken, model: sim-model}}
phases:
  - {{name: cases, each: all, times: 3}}
requests:
  - name: streamed
    target: chat
    stream: true
    body:
      messages: [{{role: user, content: Weather in Paris?}}]
      tools: {TOOLS}
    expect:
      finish_reason: tool_calls
      tool_call:
        name: get_weather
        arguments: {{schema: {{type: object, required: [city], properties: {{city: {{type: string}}}}}}}}
  - name: whole
    target: chat
    body:
      messages: [{{role: user, content: What time is it?}}]
      tools: {TOOLS}
      tool_choice: {{type: function, function: {{name: get_time}}}}
    expect:
      tool_call: {{name: get_time, arguments: {{schema: {{required: [zone]}}}}}}
  - name: wrong-name
    target: chat
    stream: true
    body: {{messages: [{{role: user, content: hi}}], tools: {TOOLS}}}
    expect: {{tool_call: {{name: get_time}}}}
  - name: wrong-arguments
    target: chat
    stream: true
    body: {{messages: [{{role: user, content: hi}}], tools: {TOOLS}}}
    expect:
      tool_call: {{arguments: {{schema: {{properties: {{city: {{type: integer}}}}}}}}}}
  - name: not-json
    target: broken
    stream: true
    body: {{messages: [{{role: user, content: hi}}], tools: {TOOLS}}}
    expect: {{tool_call: {{name: get_weather}}}}
"""


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, RunResults]:
    folder = tmp_path_factory.mktemp("tools")
    (folder / "s.yaml").write_text(SCENARIO)
    result = CliRunner().invoke(cli, ["run", str(folder / "s.yaml"), "--out", str(folder),
                                      "-q", "--workers", "1"], catch_exceptions=False)
    return result.exit_code, result.output, RunResults.load(folder / "results.json")


def case(results: RunResults, request: str) -> tuple[str, str]:
    assert results.outcome is not None
    found = next(c for c in results.outcome.cases
                 if c.kind == "expectation" and c.name == f"{request}: tool_call")
    return found.status, found.message


def test_the_simulators_tool_calls_pass_their_expectations(
        ran: tuple[int, str, RunResults]) -> None:
    code, output, results = ran
    assert case(results, "streamed") == ("passed", "3 of 3 responses passed"), output
    assert case(results, "whole") == ("passed", "3 of 3 responses passed"), output
    streamed = aggregate(results, request="streamed")
    assert streamed.counters.ok == 3 and streamed.counters.tokens_estimated == 0
    # ttft is the first tool-call delta: the simulator's 50 ms, never earlier
    ttft = streamed.value("ttft", "min")
    assert ttft is not None and ttft >= 0.050 - 0.002, ttft
    assert streamed.value("ttft_answer", "count") in (None, 0)   # no answer text at all
    assert code == 1, output       # the three requests below fail their checks


def test_wrong_name_schema_and_json_fail_with_what_came_back(
        ran: tuple[int, str, RunResults]) -> None:
    results = ran[2]
    status, message = case(results, "wrong-name")
    assert status == "failed" and "expected a tool call to 'get_time'; got a call to " \
        "'get_weather'" in message, message
    status, message = case(results, "wrong-arguments")
    assert status == "failed" and "to match the schema; at $.city:" in message and \
        "is not of type 'integer'" in message, message
    status, message = case(results, "not-json")
    assert status == "failed" and "to be JSON; got '{\"city\": '" in message, message
    assert "3 of 3 responses failed tool_call" in message


def test_the_simulator_refuses_a_tool_choice_it_was_not_given(tmp_path: Path) -> None:
    with start_openai_sim({}, tmp_path) as sim:
        body = json.dumps({"messages": [{"role": "user", "content": "q"}],
                           "tools": [{"type": "function", "function": {"name": "a"}}],
                           "tool_choice": {"type": "function", "function": {"name": "b"}}})
        request = urllib.request.Request(sim.url + "/v1/chat/completions", body.encode(),
                                         {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 400
    assert "tool_choice names 'b', which is not among the tools: a" in \
        refused.value.read().decode()
