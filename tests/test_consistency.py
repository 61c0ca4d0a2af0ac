"""`expect: consistent`: identical requests get identical answers at low load and under
load. Through the CLI against openai-sim (deterministic, and corrupting under load), in
one and in two worker processes; the merge-then-judge rule by property; compile errors."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from llmscen.assertions.consistency import difference, judge_consistency
from llmscen.cli.main import cli
from llmscen.engine.protocol import Exchange
from llmscen.metrics.consistency import ConsistencyTracker
from llmscen.metrics.merge import merge
from llmscen.metrics.results import Meta, PhaseInfo, RunResults
from llmscen.services.openai_sim import OpenAISimOptions, running_sim
from llmscen.spec.expect import Consistent, Expect

SCENARIO = """
version: 1
services:
  sim: {{builtin: openai-sim, options: {{ttft: 5ms, itl: 2ms, output_tokens: 16{extra}}}}}
targets:
  chat: {{plugin: openai, service: sim, model: sim-model}}
data:
  topics: {{synthetic: {{input_tokens: 16, tokenizer: words, rows: 10}}}}
phases:
  - {{name: calm, users: 2, requests: 10}}
  - {{name: busy, users: 8, requests: 80}}
requests:
  - name: chat
    target: chat
    stream: true
    data: topics
    body:
      messages: [{{role: user, content: "{{{{ row.prompt }}}}"}}]
      temperature: 0
      seed: 1
      max_tokens: 16
    expect:
      consistent: {consistent}
"""


def run(tmp_path: Path, extra: str = "", consistent: str = "{reference: calm}",
        workers: int = 1) -> tuple[int, str, RunResults, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO.format(extra=extra, consistent=consistent))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(scenario), "--out", str(out), "-q",
                                      "--workers", str(workers)], catch_exceptions=False)
    return result.exit_code, result.output, RunResults.load(out / "results.json"), out


def check(results: RunResults) -> tuple[int, int, list[str]]:
    summary = next(c for c in results.checks if c.expectation == "consistent")
    return summary.passed, summary.failed, [s.message for s in summary.samples]


def test_the_deterministic_simulator_answers_alike_at_low_and_high_concurrency(
        tmp_path: Path) -> None:
    code, output, results, _ = run(tmp_path)
    assert code == 0, output
    assert check(results) == (90, 0, [])
    # digests of every answer by phase, one record per rendered request (10 rows)
    assert len(results.consistency) == 10
    assert sum(sum(c.values()) for r in results.consistency
               for c in r.answers.values()) == 90
    assert all(len(r.answers["calm"]) == 1 for r in results.consistency)


def test_corrupt_under_load_fails_and_the_junit_message_shows_the_difference(
        tmp_path: Path) -> None:
    code, output, results, out = run(tmp_path, extra=", corrupt_under_load: 2")
    assert code == 1, output
    passed, failed, messages = check(results)
    assert passed + failed == 90 and failed >= 40, (passed, failed)
    message = messages[0]
    assert "in phase 'busy'" in message and "phase 'calm'" in message, message
    assert "they part at character" in message and "request 'chat'" in message, message
    cases = ET.parse(out / "junit.xml").getroot().iter("testcase")
    case = next(c for c in cases if c.get("classname", "").endswith("expect.chat")
                and c.get("name") == "consistent")
    failure = case.find("failure")
    assert failure is not None and "they part at character" in (failure.get("message") or "")
    # the calm phase ran 2 at a time: no answer there was corrupted
    assert "calm 0/10" in message, message


def test_a_bound_lets_that_share_of_answers_differ(tmp_path: Path) -> None:
    code, output, results, _ = run(tmp_path, extra=", corrupt_under_load: 2",
                                   consistent="{max_differing: 100%}")
    assert code == 0, output
    assert check(results)[1] == 0
    assert any("within max_differing 100.00%" in n for n in results.meta.notes), \
        results.meta.notes


@pytest.mark.slow
def test_answers_in_two_worker_processes_are_compared_after_the_merge(tmp_path: Path) -> None:
    code, output, results, _ = run(tmp_path / "ok", workers=2)
    assert code == 0, output
    assert check(results) == (90, 0, [])
    assert results.meta.workers == 2
    code, output, results, _ = run(tmp_path / "bad", extra=", corrupt_under_load: 2",
                                   workers=2)
    assert code == 1, output
    assert "they part at character" in check(results)[2][0]


def test_the_simulator_corrupts_only_above_its_limit() -> None:
    import aiohttp

    async def answers(concurrent: int) -> set[str]:
        options = OpenAISimOptions(ttft=0.02, itl=0.001, output_tokens=12, corrupt_under_load=2)
        async with running_sim(options) as url, aiohttp.ClientSession() as session:
            async def ask() -> str:
                body = {"messages": [{"role": "user", "content": "same question"}]}
                async with session.post(url + "/v1/chat/completions", json=body) as resp:
                    return str((await resp.json())["choices"][0]["message"]["content"])
            texts: set[str] = set()
            for _ in range(3):
                texts |= set(await asyncio.gather(*(ask() for _ in range(concurrent))))
            return texts

    alone, crowded = asyncio.run(answers(2)), asyncio.run(answers(6))
    assert len(alone) == 1                    # two at a time: never above the limit
    assert len(crowded) > 1 and alone <= crowded | alone
    reference = next(iter(alone))
    for text in crowded - alone:              # one word replaced, the rest as it was
        assert len(text.split()) == len(reference.split())
        assert sum(a != b for a, b in zip(text.split(), reference.split(), strict=True)) == 1


# -- merge, then judge: the same verdict however the answers were split over workers -----

ANSWERS = st.lists(st.tuples(st.sampled_from(["calm", "busy"]), st.integers(0, 3),
                             st.sampled_from(["a", "a", "a", "b", "c"]), st.integers(0, 2)),
                   min_size=1, max_size=40)


def judged(parts: list[list[tuple[str, int, str]]], spec: Consistent) -> tuple[int, int]:
    workers = []
    for part in parts:
        tracker = ConsistencyTracker(str)
        for phase, key, answer in sorted(part, key=lambda a: a[0] != "calm"):
            exchange = Exchange(intended_ns=0)
            exchange.text = f"answer {answer}"
            tracker.add(phase, "chat", (f"k{key}", f"prompt {key}"), exchange)
        workers.append(RunResults(meta=Meta(scenario="s"), consistency=list(
            tracker.records.values())))
    results = merge(workers)
    results.phases = [PhaseInfo(name="calm", kind="closed", started=0, ended=1),
                      PhaseInfo(name="busy", kind="closed", started=1, ended=2)]
    judge_consistency(results, {"chat": spec})
    summary = next(c for c in results.checks if c.expectation == "consistent")
    return summary.passed, summary.failed


@given(ANSWERS, st.sampled_from([None, "calm"]))
@settings(max_examples=60, deadline=None)
def test_the_verdict_does_not_depend_on_which_worker_saw_which_answer(
        answers: list[tuple[str, int, str, int]], reference: str | None) -> None:
    spec = Consistent(reference=reference)
    one = judged([[(p, k, a) for p, k, a, _ in answers]], spec)
    split = judged([[(p, k, a) for p, k, a, w in answers if w == i] for i in range(3)], spec)
    assert one == split
    # and it is what the rule says: per request, answers unlike its most common answer
    # in its reference phase fail
    # (a tie for the most common answer may go either way: both outcomes are right)
    outcomes = {(0, 0, 0)}
    for key in {k for _, k, _, _ in answers}:
        mine = [(p, a) for p, k, a, _ in answers if k == key]
        phase = reference or ("calm" if any(p == "calm" for p, _ in mine) else "busy")
        there = [a for p, a in mine if p == phase]
        if not there:
            outcomes = {(c, d, u + len(mine)) for c, d, u in outcomes}
            continue
        top = max(there.count(a) for a in there)
        options = {sum(a != ref for _, a in mine) for ref in there if there.count(ref) == top}
        outcomes = {(c + len(mine), d + n, u) for c, d, u in outcomes for n in options}
    expected = {(0, u) if not c else (c - d, d) for c, d, u in outcomes}
    assert one in expected


def test_a_difference_is_shown_escaped_around_where_the_answers_part() -> None:
    text = difference("The cat sat on the mat.\n<b>", "The cat sat on the hat.\n<b>")
    assert "they part at character 19" in text
    assert "the mat.\\n<b>'" in text and "the hat.\\n<b>'" in text
    assert "texts were not kept" in difference(None, "x")
    assert "characters agree" in difference("same", "same")


# -- what the scenario says is checked when it is compiled ---------------------------

def test_an_unknown_reference_phase_and_a_hot_temperature_are_errors(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO.format(extra="", consistent="{reference: clam}")
                        .replace("temperature: 0", "temperature: 0.7"))
    result = CliRunner().invoke(cli, ["validate", str(scenario)])
    assert result.exit_code == 2, result.output
    assert "unknown phase 'clam'; did you mean 'calm'?" in result.output
    assert "differ by design at temperature 0.7" in result.output
    assert "s.yaml:" in result.output


def test_consistent_true_is_the_default_check() -> None:
    assert Expect.model_validate({"consistent": True}).consistent == Consistent()
    assert json.loads(Consistent(max_differing=0.01).model_dump_json())["max_differing"] == 0.01
