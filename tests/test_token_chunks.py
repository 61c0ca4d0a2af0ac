"""`itl` and `chunks` count every chunk that carries a token, empty text included (as vLLM's
ITL does), through the CLI against openai-sim streaming some empty-text token chunks."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults

SCENARIO = """\
version: 1
services:
  sim:
    builtin: openai-sim
    options: {ttft: 5ms, itl: 2ms, output_tokens: 16, empty_token_rate: 30%, seed: 3}
targets:
  chat: {plugin: openai, service: sim, model: sim-model}
phases:
  - {name: load, duration: 1s, users: 2, think: 0s}
requests:
  - name: stream
    target: chat
    stream: true
    body: {messages: [{role: user, content: "hello"}]}
slos:
  - chunks.min >= 16
"""


def test_empty_text_token_chunks_count_in_itl_and_chunks(tmp_path: Path) -> None:
    scenario = tmp_path / "tokens.yaml"
    scenario.write_text(SCENARIO)
    result = CliRunner().invoke(cli, ["run", str(scenario), "--out", str(tmp_path / "out"),
                                      "--quiet", "--workers", "1"])
    assert result.exit_code == exitcodes.OK, result.output
    agg = aggregate(RunResults.load(tmp_path / "out" / "results.json"))
    requests = agg.counters.ok
    assert requests >= 2 and agg.counters.requests == requests
    # 16 token chunks per stream, about 30% of them without text: all counted
    assert agg.value("chunks", "min") == agg.value("chunks", "max") == 16
    assert agg.value("output_tokens", "mean") == 16
    assert agg.value("itl", "count") == 15 * requests
