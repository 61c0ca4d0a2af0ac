"""Bundled scenarios against real third-party OpenAI-compatible servers, through the CLI."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmscen.cli.main import cli
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults

sys.path.insert(0, str(Path(__file__).parent))
import realservers

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.realserver]


def paths(*names: str) -> realservers.RealServerPaths:
    try:
        return realservers.real_server_paths(require=names)
    except realservers.RealServersMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def llama() -> Iterator[str]:
    with realservers.start_llama_server(paths=paths("llama_server", "gguf")) as url:
        yield url


def run(args: list[str], env: dict[str, str], out: Path) -> tuple[int, str, RunResults]:
    result = CliRunner().invoke(cli, ["run", *args, "--out", str(out), "--quiet",
                                      "--workers", "1"], env=env)
    return result.exit_code, result.output, RunResults.load(out / "results.json")


def test_real_model_tokens_usage_checks_and_slos(llama: str, tmp_path: Path) -> None:
    code, output, results = run([str(ROOT / "tests/scenarios/real/llama.yaml")],
                                {"LLAMA_URL": llama}, tmp_path)
    agg = aggregate(results)
    counters = agg.counters
    assert counters.requests >= 6, output
    assert counters.ok == counters.requests, output
    # usage came from the server, not from counting chunks
    assert counters.tokens_estimated == 0
    assert counters.output_tokens > counters.requests
    assert counters.input_tokens > counters.requests
    story = aggregate(results, request="story")
    ttft = story.value("ttft_sent", "p50")
    assert ttft is not None and 0 < ttft < 15   # a CPU model on 2 shared cores
    # expectations and SLOs were evaluated on real output
    assert {c.expectation for c in results.checks} >= {"status", "output_tokens",
                                                        "finish_reason"}
    assert all(c.failed == 0 for c in results.checks), output
    assert len(results.slos) == 4 and all(s.passed for s in results.slos), output
    # the server's own counters, scraped before and after each phase
    load = next(m for m in results.server_metrics if m.phase == "load")
    assert any(v > 0 for k, v in load.delta.items() if "tokens" in k), load.delta
    assert code == 0, output


def test_smoke_scenario_against_xpyd_sim(tmp_path: Path) -> None:
    with realservers.start_xpyd_sim(paths=paths("xpyd_sim")) as url:
        code, output, results = run(["scenarios/smoke.yaml", "--target", f"chat={url}"],
                                    {"LLM_MODEL": url.model}, tmp_path)
    counters = aggregate(results).counters
    assert counters.requests == 20 and counters.ok == 20, output
    assert counters.tokens_estimated == 0
    ttft = aggregate(results, request="chat").value("ttft_sent", "p50")
    assert ttft is not None and 0.1 <= ttft < 0.2    # the 100 ms prefill delay
    assert code == 0, output


def test_ttft_waits_for_content_not_the_role_chunk(tmp_path: Path) -> None:
    """xpyd-sim with --scheduling sends the role chunk at once and every content chunk
    in one burst after decoding: TTFT must say so rather than report the first byte."""
    with realservers.start_xpyd_sim(paths=paths("xpyd_sim"), scheduling=True,
                                    max_num_seqs=8) as url:
        code, output, results = run(["scenarios/smoke.yaml", "--target", f"chat={url}",
                                     "--set", "slos=[]"], {"LLM_MODEL": url.model}, tmp_path)
    chat = aggregate(results, request="chat")
    ttft, latency = chat.value("ttft_sent", "p50"), chat.value("latency_sent", "p50")
    assert ttft is not None and latency is not None
    assert ttft > 0.1 + 0.02 * 20          # after prefill and most of the decode
    assert latency - ttft < 0.05           # the content came in one burst at the end
    assert code == 0, output


def test_per_request_numbers_from_a_csv_against_llama_server(llama: str, tmp_path: Path) -> None:
    """The seed-003 stress plan: max_tokens and temperature from a CSV row per request,
    sent as numbers (llama.cpp refuses strings: "type must be number, but is string")."""
    quick = ["--target", f"chat={llama}", "--set", "phases.0.duration=2s", "--set",
             "phases.0.users=1", "--set", "phases.0.ramp_to=2", "--set",
             "phases.1.duration=6s", "--set", "phases.1.users=2",
             "--set", "slos=[error_rate == 0]"]     # a CPU model on shared cores: no speed SLOs
    code, output, results = run(["scenarios/stress-random-params.yaml", *quick],
                                {"LLM_MODEL": llama.model}, tmp_path / "typed")
    counters = aggregate(results).counters
    assert counters.requests >= 4 and counters.ok == counters.requests, output
    assert counters.tokens_estimated == 0        # the server's own usage counts
    tokens = aggregate(results)
    low, high = tokens.value("output_tokens", "min"), tokens.value("output_tokens", "max")
    assert low is not None and high is not None and 1 <= low <= high <= 48, (low, high)
    assert code == 0, output

    strings = tmp_path / "scenarios" / "strings.yaml"
    strings.parent.mkdir()
    (strings.parent / "data").mkdir()
    (strings.parent / "data" / "sampling.csv").write_text(
        (ROOT / "scenarios/data/sampling.csv").read_text())
    strings.write_text((ROOT / "scenarios/stress-random-params.yaml").read_text()
                       .replace(" | int }}", " }}"))
    code, output, results = run([str(strings), *quick, "--set", "phases.1.duration=2s"],
                                {"LLM_MODEL": llama.model}, tmp_path / "strings")
    counters = aggregate(results).counters
    assert counters.requests > 0 and counters.ok == 0, output
    assert counters.errors == {"http": counters.requests}
    assert "type must be number, but is string" in output
    assert code == 1, output


@pytest.fixture(autouse=True)
def _in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    os.environ.pop("LLMSCEN_TEST_NOTHING", None)


def test_a_capacity_search_against_llama_server(llama: str, tmp_path: Path) -> None:
    code, output, results = run([str(ROOT / "tests/scenarios/real/llama-search.yaml")],
                                {"LLAMA_URL": llama}, tmp_path)
    assert code == 0, output
    (found,) = results.search
    assert 1 <= len(found.steps) <= 6
    # an answer with its interval: the highest load that held below the lowest that failed
    assert found.capacity is not None, found
    if found.ceiling is not None:
        assert found.capacity < found.ceiling
    assert found.knee is not None and found.knee >= found.capacity * 0.999   # it held: followed
    for step in found.steps:
        assert step.served is not None and step.offered == step.value
        assert step.passed == (not step.failed and not step.saturated)
    html = (tmp_path / "report.html").read_text()
    assert "Capacity search" in html and f"{found.capacity:g}/s" in html


def test_three_turn_sessions_carry_their_history_to_llama_server(llama: str,
                                                                  tmp_path: Path) -> None:
    code, output, results = run([str(ROOT / "tests/scenarios/real/llama-session.yaml")],
                                {"LLAMA_URL": llama}, tmp_path)
    assert code == 0, output
    prompts = []
    for k in (1, 2, 3):
        turn = aggregate(results, request=f"chat.turn{k}")
        assert turn.counters.requests == turn.counters.ok == 4, output
        assert turn.counters.tokens_estimated == 0
        assert turn.value("ttft", "count") == 4
        prompts.append(turn.counters.input_tokens / 4)
    # the server's own prompt count grows turn by turn: the answers went back to it
    assert prompts[0] < prompts[1] < prompts[2], prompts
    assert all(c.failed == 0 for c in results.checks), output


def test_synthetic_prompts_are_128_tokens_by_llama_servers_own_count(llama: str,
                                                                     tmp_path: Path) -> None:
    code, output, results = run([str(ROOT / "tests/scenarios/real/llama-synthetic.yaml")],
                                {"LLAMA_URL": llama}, tmp_path)
    assert code == 0, output
    checks = {(c.request, c.expectation): c for c in results.checks}
    for request, planned in (("completion", 100), ("chat", 20)):
        agg = aggregate(results, request=request)
        sent = agg.counters.requests
        # all that were planned on an idle machine; a loaded one reaches the phase's
        # duration first (llama.cpp at 1 token/s), and still sends a good part of them
        assert planned // 4 <= sent <= planned and agg.counters.ok == sent, output
        # usage.prompt_tokens of every request: llama.cpp counted what its /tokenize did
        assert agg.value("input_tokens", "min") == agg.value("input_tokens", "max") == 128
        assert agg.counters.input_tokens == 128 * sent
        assert checks[(request, "input_tokens")].passed == sent
        assert checks[(request, "input_tokens")].failed == 0


def test_identical_requests_against_llama_server_at_low_and_high_load(llama: str,
                                                                      tmp_path: Path) -> None:
    """Consistency under load against a real model: every answer is compared with the
    reference phase's (one at a time) by digest; whatever llama.cpp's batching does, the
    verdict and the counts must agree with what the results hold."""
    code, output, results = run([str(ROOT / "tests/scenarios/real/llama-consistent.yaml")],
                                {"LLAMA_URL": llama}, tmp_path)
    check = next(c for c in results.checks if c.expectation == "consistent")
    answered = sum(n for r in results.consistency for c in r.answers.values()
                   for n in c.values())
    assert answered == aggregate(results).counters.ok == 40, output
    assert len(results.consistency) == 8            # eight distinct rendered requests
    assert check.passed + check.failed == answered
    assert all(len(r.answers["calm"]) == 1 for r in results.consistency)
    if check.failed:     # batching changed answers: the case says where and how
        assert code == 1 and "they part at character" in check.samples[0].message, output
    else:
        assert code == 0, output


def test_a_mooncake_trace_replays_against_llama_server_at_its_times(llama: str,
                                                                   tmp_path: Path) -> None:
    """Every arrival's prompt is its input_length by llama.cpp's own count (usage), sent at the
    trace's time; the fidelity figures are there and llama.cpp reports no prefix-cache hit rate."""
    trace = [json.loads(line) for line in
             (ROOT / "tests/scenarios/real/llama-trace.jsonl").read_text().splitlines()]
    code, output, results = run([str(ROOT / "tests/scenarios/real/llama-replay.yaml")],
                                {"LLAMA_URL": llama}, tmp_path)
    assert code == 0, output
    agg = aggregate(results, phase="replay")
    assert agg.counters.requests == agg.counters.ok == len(trace), output
    assert agg.counters.input_tokens == sum(r["input_length"] for r in trace)
    assert agg.value("input_tokens", "min") == min(r["input_length"] for r in trace)
    assert agg.value("input_tokens", "max") == max(r["input_length"] for r in trace)
    assert agg.counters.output_tokens == sum(r["output_length"] for r in trace)
    (info,) = results.replay
    assert info.sent == len(trace) and info.ks is not None and info.lag_p99 is not None
    assert info.prefix_cache_hit_rate is None
    phase = results.phase("replay")
    span = (trace[-1]["timestamp"] - trace[0]["timestamp"]) / 1000
    assert phase is not None and phase.wall >= span
    assert "replay 'replay' of trace" in output and "not reported" in output
