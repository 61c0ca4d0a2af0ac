"""Faults as part of the plan (issue 16.8): stop a service or unload a Triton model mid-phase,
and measure `time_to_recover`, from the fault to the first success after it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults

pytestmark = pytest.mark.slow

SERVICE = """
version: 1
services:
  sim: {builtin: openai-sim, options: {ttft: 10ms, itl: 2ms, output_tokens: 4}}
targets:
  chat: {plugin: openai, service: sim, model: sim-model, timeout: 2s}
phases:
  - name: chaos
    duration: 9s
    arrival_rate: 20
    faults:
      - {at: 2s, stop: sim, for: 2s}
requests:
  - {name: chat, target: chat, body: {messages: [{role: user, content: hi}]}}
slos:
  - error_rate < 70%
  - time_to_recover.max < 8s
"""


def recovered(results: RunResults) -> float:
    value = aggregate(results).value("time_to_recover", "max")
    assert value is not None
    return value


def test_a_stopped_service_comes_back_and_the_recovery_is_measured(tmp_path: Path) -> None:
    scenario = tmp_path / "chaos.yaml"
    scenario.write_text(SERVICE)
    result = CliRunner().invoke(cli, ["run", str(scenario), "--out", str(tmp_path / "o"),
                                      "--quiet", "--workers", "1"])
    assert result.exit_code == exitcodes.OK, result.output
    results = RunResults.load(tmp_path / "o" / "results.json")
    (fault,) = results.faults
    assert fault.action == "stop" and fault.subject == "sim" and fault.undone_at is not None
    truth = fault.undone_at - fault.at           # down for 2 s, then its start-up
    assert truth >= 2.0
    # the first success after it: no later than the next arrival after it was back
    assert truth - 0.05 <= recovered(results) <= truth + 0.5
    counters = aggregate(results).counters
    assert counters.errors.get("connect", 0) > 20      # refused while it was down ...
    assert counters.ok > 100                            # ... and answering before and after


def test_a_fault_on_a_service_that_is_not_started_is_invalid(tmp_path: Path) -> None:
    scenario = tmp_path / "chaos.yaml"
    scenario.write_text(SERVICE.replace("stop: sim", "stop: simm"))
    result = CliRunner().invoke(cli, ["validate", str(scenario)])
    assert result.exit_code == exitcodes.INVALID_INPUT
    assert "unknown service 'simm'; did you mean 'sim'?" in result.output
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "chaos.yaml"), "--target",
                                      "chat=http://127.0.0.1:9", "--out", str(tmp_path / "o")])
    assert result.exit_code == exitcodes.INVALID_INPUT


TRITON = """
version: 1
services:
  triton: {builtin: triton-sim, options: {image_size: 32, step_delay: 1ms}}
targets:
  flux: {plugin: triton, service: triton, model: flux, timeout: 10s}
phases:
  - name: unload
    duration: 12s
    arrival_rate: 10
    faults:
      - {at: 2s, unload: flux, target: flux, for: 3s}
requests:
  - name: cat
    target: flux
    inputs:
      prompt: {datatype: BYTES, shape: [1], data: ["a cat"]}
      num_inference_steps: {datatype: INT32, shape: [1], data: [2]}
      guidance_scale: {datatype: FP32, shape: [1], data: [0.0]}
slos:
  - error_rate < 70%
"""


@pytest.mark.triton
@pytest.mark.skipif(importlib.util.find_spec("pytriton") is None, reason="needs llmscen[triton]")
def test_a_triton_model_unloaded_for_3s(tmp_path: Path) -> None:
    scenario = tmp_path / "unload.yaml"
    scenario.write_text(TRITON)
    result = CliRunner().invoke(cli, ["run", str(scenario), "--out", str(tmp_path / "o"),
                                      "--quiet", "--workers", "1"])
    assert result.exit_code == exitcodes.OK, result.output
    results = RunResults.load(tmp_path / "o" / "results.json")
    (fault,) = results.faults
    assert fault.action == "unload" and fault.undone_at is not None
    truth = fault.undone_at - fault.at               # 3 s, and the time to load it again
    assert truth >= 3.0
    assert abs(recovered(results) - truth) <= 0.5, (recovered(results), truth)
    assert aggregate(results).counters.errors.get("http", 0) > 10   # refused while unloaded
