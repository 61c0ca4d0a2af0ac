"""Synthetic prompts of exact token length: the generator against tokenizers that add
tokens of their own and split some words, and whole runs through the CLI."""

from __future__ import annotations

import asyncio
import json
import statistics
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from servers.api_server import serve

from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.compile.plan import SyntheticPlan
from llmscen.engine.synthetic import SynthesisError, synthesize
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults
from llmscen.spec.models import LengthSpec
from llmscen.testing.fixtures import start_openai_sim

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "synthetic-prompts.yaml"


def bpe_like(overhead: int, split: frozenset[str] = frozenset({"people", "water"})):  # type: ignore[no-untyped-def]
    """A tokenizer that adds `overhead` tokens (BOS, a chat template) around a prompt and
    cuts some words in two, as real ones do."""
    calls = []

    async def count(text: str) -> int:
        calls.append(text)
        return overhead + sum(2 if w in split else 1 for w in text.split())
    return count, calls


def plan(**fields: object) -> SyntheticPlan:
    base: dict[str, object] = {"input_tokens": LengthSpec(value=128), "target": "t", "seed": 7}
    return SyntheticPlan.model_validate({**base, **fields})


def make(p: SyntheticPlan, rows: int, count) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    return asyncio.run(synthesize(p, rows, count, "synth"))


@given(overhead=st.integers(0, 12), low=st.integers(16, 200), width=st.integers(0, 100),
       seed=st.integers(0, 2**32))
@settings(max_examples=25, deadline=None)
def test_every_prompt_counts_exactly_its_drawn_length(overhead: int, low: int, width: int,
                                                      seed: int) -> None:
    count, _ = bpe_like(overhead)
    rows = make(plan(input_tokens=LengthSpec(min=low, max=low + width), seed=seed), 20, count)
    for row in rows:
        n = row["input_tokens"]
        assert isinstance(n, int) and low <= n <= low + width
        assert asyncio.run(count(str(row["prompt"]))) == n
        assert "people" not in str(row["prompt"]).split()     # split words are left out


def test_lengths_follow_their_distribution_and_the_seed() -> None:
    count, _ = bpe_like(3)
    normal = plan(input_tokens=LengthSpec(mean=200, stdev=20, min=150),
                  output_tokens=LengthSpec(min=5, max=9))
    rows = make(normal, 400, count)
    lengths = [int(r["input_tokens"]) for r in rows]   # type: ignore[call-overload]
    assert 195 < statistics.mean(lengths) < 205 and 16 < statistics.stdev(lengths) < 24
    assert min(lengths) >= 150
    assert {r["output_tokens"] for r in rows} == {5, 6, 7, 8, 9}
    assert make(normal, 400, count) == rows            # the same seed, the same prompts
    assert make(plan(seed=8), 3, count) != make(plan(seed=7), 3, count)


def test_shared_prefixes_start_their_share_of_prompts() -> None:
    count, _ = bpe_like(0)
    rows = make(plan(prefix_tokens=32, prefix_share=0.5, prefix_count=2), 400, count)
    with_prefix = [r for r in rows if r["prefix"] != -1]
    assert 0.4 < len(with_prefix) / len(rows) < 0.6
    heads = {" ".join(str(r["prompt"]).split()[:32]) for r in with_prefix}
    assert len(heads) == 2      # two prefixes, each 32 tokens, shared by their rows
    for r in with_prefix:
        assert asyncio.run(count(" ".join(str(r["prompt"]).split()[:32]))) == 32


def test_a_prompt_shorter_than_the_servers_own_tokens_is_refused() -> None:
    count, _ = bpe_like(10)
    with pytest.raises(SynthesisError, match="adds 10 tokens around every prompt"):
        make(plan(input_tokens=LengthSpec(value=10)), 1, count)


def run(args: list[str], out: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["run", *args, "--out", str(out), "-q", "--workers", "1"],
                                catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.slow
def test_128_tokens_by_the_servers_count_for_every_request(tmp_path: Path) -> None:
    code, output = run([str(SCENARIO)], tmp_path)
    assert code == 0, output
    results = RunResults.load(tmp_path / "results.json")
    agg = aggregate(results)
    assert agg.counters.requests == agg.counters.ok == 100
    assert agg.value("input_tokens", "min") == agg.value("input_tokens", "max") == 128
    assert agg.counters.input_tokens == 128 * 100
    checks = {c.expectation: c for c in results.checks}
    assert checks["input_tokens"].passed == 100 and checks["output_tokens"].passed == 100


def test_the_simulator_counts_at_tokenize_as_in_usage(tmp_path: Path) -> None:
    with start_openai_sim({}, tmp_path) as sim:
        def tokenize(body: dict[str, object]) -> dict[str, object]:
            request = urllib.request.Request(sim.url + "/tokenize", json.dumps(body).encode(),
                                             {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as resp:
                return json.loads(resp.read())   # type: ignore[no-any-return]

        assert tokenize({"prompt": "one two  three"})["count"] == 3
        assert tokenize({"content": "a b"})["count"] == 2
        chat = tokenize({"messages": [{"role": "system", "content": "x y"},
                                      {"role": "user", "content": "z"}]})
        assert chat["count"] == 3 and len(chat["tokens"]) == 3   # type: ignore[arg-type]


def test_a_target_without_tokenize_cannot_run_and_says_why(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    with serve() as (url, _):
        scenario.write_text(f"""
version: 1
targets:
  llm: {{plugin: openai, url: "{url}", model: m, api: completions}}
data:
  synth: {{synthetic: {{input_tokens: 32}}}}
phases:
  - {{name: p, requests: 1, arrival_rate: 1}}
requests:
  - {{name: r, target: llm, data: synth, body: {{prompt: "{{{{ row.prompt }}}}"}}}}
""")
        code, output = run([str(scenario)], tmp_path / "out")
    assert code == exitcodes.COULD_NOT_RUN, output
    assert "/tokenize gave no token count (HTTP 404)" in output
    assert "tokenizer: words" in output and "Traceback" not in output


SPEC_SHAPE = """
version: 1
services:
  sim: {builtin: openai-sim, options: {ttft: 10ms, itl: 1ms, check_history: true}}
targets:
  chat: {plugin: vllm, service: sim, model: sim-model}
data:
  synth: {synthetic: {input_tokens: 128, output_tokens: 32, tokenizer: server}}
phases:
  - {name: p, users: 2, requests: 10, duration: 20s}
requests:
  - {name: chat, target: chat, data: synth, turns: 3}
"""


@pytest.mark.slow
def test_a_request_without_a_body_sends_the_synthetic_row(tmp_path: Path) -> None:
    """SPEC's shape: no body, so the plugin fills one from the row (prompt, max_tokens and,
    for vllm, ignore_eos and min_tokens); here in a three-turn session."""
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SPEC_SHAPE)
    code, output = run([str(scenario)], tmp_path / "out")
    assert code == 0, output
    results = RunResults.load(tmp_path / "out/results.json")
    first = aggregate(results, request="chat.turn1")
    assert first.value("input_tokens", "min") == first.value("input_tokens", "max") == 128
    every = aggregate(results, request="chat")
    assert every.counters.requests == every.counters.ok == 30
    assert every.value("output_tokens", "min") == every.value("output_tokens", "max") == 32
