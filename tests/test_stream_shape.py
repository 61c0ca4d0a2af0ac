"""Stream shape metrics (issue 16.9): characters and tokens per chunk, chunks per second,
the share of large chunks — seed 001's "average chunk 1–50 characters", "≥ 10 chunks/s",
"≥ 20 % large chunks" as plain SLOs, against openai-sim through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults

pytestmark = pytest.mark.slow

SCENARIO = """
version: 1
services:
  sim: {{builtin: openai-sim, options: {{ttft: 20ms, itl: 10ms, output_tokens: 30}}}}
targets:
  chat: {{plugin: openai, service: sim, model: sim-model}}
metrics: {{large_chunk: 5}}
phases:
  - {{name: code, duration: 2s, arrival_rate: 10}}
requests:
  - name: codegen
    target: chat
    stream: true
    body: {{messages: [{{role: user, content: write code}}], max_tokens: 30}}
slos:
  - chunk_chars.mean >= 1
  - chunk_chars.mean <= 50
  - chunk_rate.p50 >= 10
  - chunk_tokens.mean == 1
  - large_chunk_share >= {share}
"""


def run(tmp_path: Path, share: str) -> tuple[int, str, RunResults]:
    scenario = tmp_path / "shape.yaml"
    scenario.write_text(SCENARIO.format(share=share))
    out = tmp_path / share.replace("%", "pct")
    result = CliRunner().invoke(cli, ["run", str(scenario), "--out", str(out), "--quiet",
                                      "--workers", "1"])
    return result.exit_code, result.output, RunResults.load(out / "results.json")


def test_chunk_shape_slos_pass_and_a_variant_that_must_fail_does(tmp_path: Path) -> None:
    code, output, results = run(tmp_path, "20%")
    assert code == exitcodes.OK, output
    agg = aggregate(results)
    mean = agg.value("chunk_chars", "mean")
    assert mean is not None and 1 <= mean <= 12, mean    # the sim's words are short
    rate = agg.value("chunk_rate", "p50")
    assert rate is not None and 60 <= rate <= 110, rate          # 10 ms between tokens
    assert agg.value("chunk_tokens", "mean") == 1.0
    share = agg.value("large_chunk_share")
    assert share is not None and 0.2 <= share < 1.0, share
    assert agg.counters.content_chunks == 30 * agg.counters.ok       # 30 tokens, one a chunk
    code, output, _ = run(tmp_path, "99%")
    assert code == exitcodes.ASSERTIONS_FAILED, output
    assert "large_chunk_share" in output and "FAIL" in output
