"""Synthetic prompts counted offline by a tokenizer file (`tokenizer: FILE`): tiny
tokenizers built and saved here with the `tokenizers` package, prompts that measure
their requested length by them, and the errors for a missing file or package."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmscen.cli.main import cli
from llmscen.compile.plan import SyntheticPlan
from llmscen.compile.tokenizer_file import TokenizerFileError, file_counter
from llmscen.engine.synthetic import WORDS, synthesize
from llmscen.metrics.results import RunResults
from llmscen.spec.models import LengthSpec

tokenizers = pytest.importorskip("tokenizers")


def word_level(path: Path, bos: bool = True) -> Path:
    """Each common word one token, [BOS] before every text (its post-processor)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"[UNK]": 0, "[BOS]": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[BOS] $A", special_tokens=[("[BOS]", 1)])
    tokenizer.save(str(path))
    return path


def bpe(path: Path) -> Path:
    """A byte-level BPE trained on a few lines: common words whole, rarer ones in pieces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    lines = [" ".join(WORDS[:60])] * 20 + [" ".join(WORDS)]
    tokenizer.train_from_iterator(lines, trainers.BpeTrainer(
        vocab_size=450, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.save(str(path))
    return path


def make(tokenizer: Path, rows: int, low: int, high: int) -> list[dict[str, object]]:
    plan = SyntheticPlan(input_tokens=LengthSpec(min=low, max=high), tokenizer="file",
                         tokenizer_file=str(tokenizer), target="t", seed=3)
    counted = file_counter(tokenizer)

    async def count(text: str) -> int:
        return counted(text)
    return asyncio.run(synthesize(plan, rows, count, "synth"))


@pytest.mark.parametrize("build", [word_level, bpe])
def test_prompts_measure_their_length_by_the_tokenizer_file(build, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = build(tmp_path / "tokenizer.json")
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    rows = make(path, 30, 20, 60)
    assert {20 <= int(str(r["input_tokens"])) <= 60 for r in rows} == {True}
    for row in rows:
        ids = tokenizer.encode(str(row["prompt"])).ids
        assert len(ids) == row["input_tokens"], row
    assert len({r["input_tokens"] for r in rows}) > 5      # the lengths were drawn


def test_the_bpe_tokenizer_splits_some_words_and_they_are_left_out(tmp_path: Path) -> None:
    path = bpe(tmp_path / "tokenizer.json")
    counted = file_counter(path)
    split = [w for w in WORDS if counted(w) > 1 or counted(f"the {w}") != 2]
    assert split, "the trained vocabulary should leave some words in pieces"
    used = {w for r in make(path, 20, 30, 30) for w in str(r["prompt"]).split()}
    assert used and not used & set(split)


SCENARIO = """
version: 1
services:
  sim: {{builtin: openai-sim, options: {{ttft: 2ms, itl: 1ms, output_tokens: 2}}}}
targets:
  chat: {{plugin: openai, service: sim, model: sim-model}}
data:
  synth: {{synthetic: {{input_tokens: 32, tokenizer: {tokenizer}, rows: 5}}}}
phases:
  - {{name: p, requests: 5, users: 1}}
requests:
  - name: chat
    target: chat
    data: synth
    body: {{messages: [{{role: user, content: "{{{{ row.prompt }}}}"}}]}}
    expect:
      # the simulator counts words: the tokenizer's [BOS] is one of the 32
      input_tokens: {{min: 31, max: 31}}
"""


def test_a_run_counts_its_prompts_with_the_file_relative_to_the_scenario(
        tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    word_level(tmp_path / "models" / "tokenizer.json")
    (tmp_path / "s.yaml").write_text(SCENARIO.format(tokenizer="models/tokenizer.json"))
    plan = CliRunner().invoke(cli, ["plan", str(tmp_path / "s.yaml")])
    assert "counted by tokenizer file" in plan.output and "tokenizer.json" in plan.output
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "s.yaml"), "--out",
                                      str(tmp_path / "out"), "-q", "--workers", "1"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    check = next(c for c in RunResults.load(tmp_path / "out" / "results.json").checks
                 if c.expectation == "input_tokens")
    assert (check.passed, check.failed) == (5, 0)


def test_a_missing_file_is_an_error_naming_the_file_and_the_key(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SCENARIO.format(tokenizer="models/tokenizer.jsn"))
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "s.yaml")])
    assert result.exit_code == 2, result.output
    assert "s.yaml:8:" in result.output
    assert "tokenizer file 'models/tokenizer.jsn' not found" in result.output


def test_a_file_that_is_not_a_tokenizer_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text('{"not": "a tokenizer"}')
    (tmp_path / "s.yaml").write_text(SCENARIO.format(tokenizer="tokenizer.json"))
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "s.yaml")])
    assert result.exit_code == 2, result.output
    assert "is not a tokenizer file that `tokenizers` reads" in result.output


def test_without_the_package_the_error_names_the_extra(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    word_level(tmp_path / "tokenizer.json")
    (tmp_path / "s.yaml").write_text(SCENARIO.format(tokenizer="tokenizer.json"))
    monkeypatch.setitem(sys.modules, "tokenizers", None)     # import fails as if absent
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "s.yaml")])
    assert result.exit_code == 2, result.output
    assert "s.yaml:8:" in result.output
    assert "needs the `tokenizers` package: pip install 'llmscen[tokenizer]'" in result.output
    with pytest.raises(TokenizerFileError, match="llmscen\\[tokenizer\\]"):
        file_counter(tmp_path / "tokenizer.json")


def test_a_trace_is_counted_by_the_tokenizer_file_too(tmp_path: Path) -> None:
    from llmscen.compile.plan import TracePlan
    from llmscen.engine.synthetic import synthesize_trace

    path = word_level(tmp_path / "tokenizer.json")
    counted = file_counter(path)

    async def count(text: str) -> int:
        return counted(text)
    arrivals = [{"timestamp": i, "input_length": n, "output_length": 2, "hash_ids": [1, 2 + i]}
                for i, n in enumerate((12, 40, 40, 90))]
    plan = TracePlan(block_tokens=8, tokenizer="file", tokenizer_file=str(path), target="t",
                     seed=5)
    rows = asyncio.run(synthesize_trace(plan, arrivals, count, "trace"))
    assert [counted(r["prompt"]) for r in rows] == [12, 40, 40, 90]
    # hash id 1 is the same block in every prompt
    assert len({tuple(r["prompt"].split()[:8]) for r in rows}) == 1


def test_a_trace_with_a_missing_tokenizer_file_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "trace.jsonl").write_text(
        '{"timestamp": 0, "input_length": 20, "output_length": 2, "hash_ids": [1]}\n')
    (tmp_path / "s.yaml").write_text("""\
version: 1
services:
  sim: {builtin: openai-sim}
targets:
  chat: {plugin: openai, service: sim, model: sim-model}
data:
  trace: {file: trace.jsonl, format: mooncake, tokenizer: models/tok.json}
phases:
  - {name: replay, replay: trace}
requests:
  - {name: chat, target: chat, data: trace}
""")
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "s.yaml")])
    assert result.exit_code == 2, result.output
    assert "s.yaml:7:59: tokenizer file" in result.output   # at the value of `tokenizer:`
    assert "tokenizer file 'models/tok.json' not found" in result.output
