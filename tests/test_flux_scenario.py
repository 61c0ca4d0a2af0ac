"""scenarios/flux.yaml and the streaming model on a real Triton server, through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults

pytest.importorskip("tritonclient")
pytest.importorskip("pytriton")
ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.triton]
SHORT = ["--set", "phases.1.duration=2s", "--quiet", "--workers", "1"]


def run(tmp_path: Path, protocol: str, *args: str) -> tuple[int, str, RunResults]:
    result = CliRunner().invoke(cli, ["run", str(ROOT / "scenarios/flux.yaml"), "--out",
                                      str(tmp_path), *SHORT, *args],
                                env={"TRITON_PROTOCOL": protocol})
    return result.exit_code, result.output, RunResults.load(tmp_path / "results.json")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_flux_test_plan_passes(tmp_path: Path, protocol: str) -> None:
    code, output, results = run(tmp_path, protocol)
    checks = {(c.request, c.expectation): c for c in results.checks}
    for key in [("cat-sign", "outputs"), ("batch-of-three", "outputs"),
                ("batch-of-three", "batch_consistent"), ("empty-prompt", "error"),
                ("too-many-steps", "error"), ("bad-size", "error")]:
        assert key in checks and checks[key].passed > 0 and checks[key].failed == 0, \
            (key, output)
    singles = aggregate(results, phase="load", request="cat-sign").counters
    batches = aggregate(results, phase="load", request="batch-of-three").counters
    load = aggregate(results, phase="load")
    assert load.counters.images == singles.requests + 3 * batches.requests   # every image
    assert load.value("images_per_second") == pytest.approx(
        load.counters.images / load.wall_seconds)
    # Triton's own queue and compute times, per phase and model (its `model` label)
    metrics = {m.phase: m.delta for m in results.server_metrics}
    assert metrics["load"].get('nv_inference_compute_infer_duration_us{model="flux",'
                               'version="1"}', 0) > 0
    # the summary's columns are those of a FLUX run: images per second, no token timings
    header = next(line for line in output.splitlines() if line.startswith("phase "))
    assert "images/s" in header and "ttft" not in header and "itl" not in header
    assert "tokens/s" not in header
    assert code == exitcodes.OK, output


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_wrong_expected_shape_names_output_expected_and_actual(tmp_path: Path,
                                                               protocol: str) -> None:
    code, _output, results = run(tmp_path, protocol,
                                "--set", "requests.0.expect.outputs.images.shape=[1, 3, 64, 64]")
    assert code == exitcodes.ASSERTIONS_FAILED
    check = next(c for c in results.checks
                 if c.request == "cat-sign" and c.expectation == "outputs")
    assert check.failed > 0 and check.passed == 0
    message = check.samples[0].message
    assert "images" in message and "[1, 3, 64, 64]" in message and "[1, 3, 128, 128]" in message


def test_empty_prompt_error_is_what_came_back(tmp_path: Path) -> None:
    # expecting the wrong error shows what the server actually said
    code, _, results = run(tmp_path, "grpc", "--set",
                           "requests.2.expect.error.contains=unrelated words")
    assert code == exitcodes.ASSERTIONS_FAILED
    check = next(c for c in results.checks if c.request == "empty-prompt")
    assert check.failed > 0
    assert "empty" in check.samples[0].message   # the server's own message is quoted


def test_streaming_model_ttft_within_3ms(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["run", str(ROOT / "tests/scenarios/triton/stream.yaml"),
                                      "--out", str(tmp_path), "--quiet", "--workers", "1"])
    results = RunResults.load(tmp_path / "results.json")
    agg = aggregate(results)
    assert agg.counters.ok == agg.counters.requests >= 45, result.output
    ttft = agg.value("ttft_sent", "p50")
    itl = agg.value("itl", "p50")
    assert ttft is not None and abs(ttft - 0.050) <= 0.003, ttft
    assert itl is not None and abs(itl - 0.010) <= 0.001, itl
    assert result.exit_code == 0, result.output
