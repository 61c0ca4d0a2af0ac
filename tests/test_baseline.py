"""A `baseline:` in the scenario (issue 13.4): `llmscen run` fails when the run is significantly
worse than an earlier one, with the comparison as a test case."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.metrics.results import RunResults

pytestmark = pytest.mark.slow

SCENARIO = """
version: 1
services:
  # itl 20 ms: a 2 ms ITL let a loaded machine's scheduling jitter move tpot.p95 by 16 %
  sim: {{builtin: openai-sim, options: {{ttft: {ttft}, itl: 20ms, output_tokens: 4}}}}
targets:
  chat: {{plugin: openai, service: sim, model: sim-model}}
phases:
  - {{name: steady, duration: 4s, arrival_rate: 50}}
requests:
  - {{name: chat, target: chat, stream: true, body: {{messages: [{{role: user, content: hi}}]}}}}
{baseline}
"""


def run(tmp_path: Path, name: str, ttft: str, baseline: str = "") -> tuple[int, str, Path]:
    scenario = tmp_path / f"{name}.yaml"
    scenario.write_text(SCENARIO.format(ttft=ttft, baseline=baseline))
    out = tmp_path / name
    result = CliRunner().invoke(cli, ["run", str(scenario), "--out", str(out), "--quiet",
                                      "--workers", "1"])
    return result.exit_code, result.output, out


def test_a_run_significantly_worse_than_its_baseline_fails(tmp_path: Path) -> None:
    code, output, _ = run(tmp_path, "first", "50ms")
    assert code == exitcodes.OK, output
    gate = "baseline: {file: first/results.json, max_regression: 10%}"
    code, output, same = run(tmp_path, "same", "50ms", gate)
    assert code == exitcodes.OK, output
    results = RunResults.load(same / "results.json")
    assert results.baseline is not None and results.baseline.verdict == "NO REGRESSION"
    case = next(c for c in results.outcome.cases if c.kind == "baseline")   # type: ignore[union-attr]
    assert case.status == "passed"
    code, output, slower = run(tmp_path, "slower", "100ms", gate)
    assert code == exitcodes.ASSERTIONS_FAILED, output
    results = RunResults.load(slower / "results.json")
    assert results.baseline is not None and results.baseline.verdict == "REGRESSED"
    assert any(r.startswith("ttft.p50 [overall]") for r in results.baseline.regressions), \
        results.baseline.regressions
    assert "REGRESSED" in output
    # report gives the same verdict from the saved file
    again = CliRunner().invoke(cli, ["report", str(slower / "results.json"), "--html",
                                     str(tmp_path / "r.html")])
    assert again.exit_code == exitcodes.ASSERTIONS_FAILED


def test_a_baseline_that_is_missing_or_unsound_is_refused_before_traffic(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO.format(ttft="5ms", baseline="baseline: {file: nowhere.json}"))
    result = CliRunner().invoke(cli, ["validate", str(scenario)])
    assert result.exit_code == exitcodes.INVALID_INPUT
    assert "no results file at nowhere.json" in result.output
    (tmp_path / "bad.json").write_text('{"schema_version": 2, "meta": {"scenario": "x"}, '
                                       '"scopes": [{"phase": "p", "request": "r", "target": "t",'
                                       ' "counters": {"requests": -1}}]}')
    scenario.write_text(SCENARIO.format(ttft="5ms", baseline="baseline: {file: bad.json}"))
    result = CliRunner().invoke(cli, ["run", str(scenario), "--out", str(tmp_path / "o")])
    assert result.exit_code == exitcodes.INVALID_INPUT, result.output
    assert "requests is -1" in result.output
    assert not (tmp_path / "o" / "results.json").exists()      # nothing was sent
