"""Reasoning streams: `ttft` at the first generated token of any kind, `ttft_answer` at
the first answer token, and reasoning/answer token counts, from openai-sim's reasoning
deltas through the CLI, and from raw events."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from llmscen.cli.main import cli
from llmscen.engine.protocol import Exchange
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults
from llmscen.runners.openai_responses import StreamBody

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "reasoning.yaml"


@pytest.mark.slow
def test_ttft_is_the_first_reasoning_delta_and_ttft_answer_the_first_answer(
        tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["run", str(SCENARIO), "--out", str(tmp_path), "-q",
                                      "--workers", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    agg = aggregate(RunResults.load(tmp_path / "results.json"))
    assert agg.counters.requests == agg.counters.ok == 20
    ttft, answer = agg.value("ttft", "p50"), agg.value("ttft_answer", "p50")
    assert ttft is not None and answer is not None
    # injected: the first reasoning token at 50 ms, 8 of them 10 ms apart, then the answer:
    # never earlier than due (the simulator paces to absolute deadlines), and the gap is the
    # reasoning's 80 ms (a loaded machine may add to either, rarely to one alone by much)
    assert agg.value("ttft", "min") >= 0.050 - 0.002
    assert agg.value("ttft_answer", "min") >= 0.130 - 0.002
    assert 0.080 - 0.002 <= answer - ttft <= 0.080 + 0.020, (ttft, answer)
    assert agg.value("reasoning_tokens", "min") == agg.value("reasoning_tokens", "max") == 8
    assert agg.value("answer_tokens", "min") == agg.value("answer_tokens", "max") == 8
    assert agg.value("output_tokens", "min") == 16


def event(delta: dict[str, object], finish: str | None = None) -> bytes:
    return b"data: " + orjson.dumps({"id": "x", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"


def test_reasoning_deltas_time_ttft_but_not_the_answer_and_are_counted() -> None:
    ex = Exchange(intended_ns=0)
    body = StreamBody(True, ex.itl_us)
    body.feed(event({"role": "assistant", "content": ""}), 1_000)
    body.feed(event({"reasoning_content": "Let"}), 2_000)
    body.feed(event({"reasoning": " me think"}), 3_000)      # vLLM's newer key
    body.feed(event({"content": "Yes"}), 5_000)
    body.feed(event({"content": "."}, "stop") + b"data: [DONE]\n\n", 6_000)
    body.finish(ex, 6_000)
    assert ex.error is None
    assert (ex.first_content_ns, ex.first_answer_ns) == (2_000, 5_000)
    assert ex.reasoning_tokens == 2 and ex.chunks == 4
    assert ex.text == "Yes."       # expectations judge the answer, not the thinking


def test_the_servers_reasoning_count_wins_over_counted_chunks() -> None:
    ex = Exchange(intended_ns=0)
    body = StreamBody(True, ex.itl_us)
    body.feed(event({"reasoning_content": "hmm"}), 1_000)
    body.feed(event({"content": "ok"}, "stop"), 2_000)
    usage = {"prompt_tokens": 3, "completion_tokens": 9,
             "completion_tokens_details": {"reasoning_tokens": 7}}
    body.feed(b"data: " + orjson.dumps({"id": "x", "choices": [], "usage": usage}) +
              b"\n\ndata: [DONE]\n\n", 3_000)
    body.finish(ex, 3_000)
    assert (ex.reasoning_tokens, ex.output_tokens) == (7, 9)
    plain = Exchange(intended_ns=0)
    body = StreamBody(True, plain.itl_us)
    body.feed(event({"content": "hi"}, "stop") + b"data: [DONE]\n\n", 1_000)
    body.finish(plain, 1_000)
    assert plain.reasoning_tokens == 0 and plain.first_answer_ns == plain.first_content_ns


def test_the_simulator_reasons_in_a_whole_response_too(tmp_path: Path) -> None:
    import json
    import urllib.request

    from llmscen.testing.fixtures import start_openai_sim

    with start_openai_sim({"reasoning_tokens": 5, "output_tokens": 3, "ttft": "1ms",
                           "itl": "1ms"}, tmp_path) as sim:
        body = json.dumps({"messages": [{"role": "user", "content": "q"}]}).encode()
        request = urllib.request.Request(sim.url + "/v1/chat/completions", body,
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            answer = json.loads(resp.read())
    message = answer["choices"][0]["message"]
    assert message["reasoning_content"] and message["content"]
    assert answer["usage"]["completion_tokens"] == 8
    assert answer["usage"]["completion_tokens_details"] == {"reasoning_tokens": 5}
