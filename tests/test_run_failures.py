"""Failures are classified and counted; an interrupted run keeps what it measured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults

HERE = Path(__file__).parent / "scenarios" / "engine"
pytestmark = pytest.mark.slow


def test_misbehaving_server_is_classified_and_the_run_goes_on(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["run", str(HERE / "faults.yaml"), "--out", str(tmp_path),
                                      "--quiet", "--workers", "1"])
    assert result.exit_code == exitcodes.ASSERTIONS_FAILED, result.output
    results = RunResults.load(tmp_path / "results.json")
    counters = aggregate(results).counters
    assert counters.requests >= 190
    errors = counters.errors
    # 10% each of 503s, cut streams and malformed events, give or take chance
    assert 0.04 < errors.get("http", 0) / counters.requests < 0.18, errors
    assert 0.10 < errors.get("protocol", 0) / counters.requests < 0.32, errors
    assert counters.ok + sum(errors.values()) == counters.requests
    http = next(e for e in results.errors if e.error == "http")
    assert http.samples and "503" in http.samples[0].message
    assert "FAIL  error_rate" in result.output


def test_unreachable_target_could_not_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["run", str(HERE / "faults.yaml"), "--out", str(tmp_path),
                                      "--quiet", "--workers", "1",
                                      "--target", "chat=http://127.0.0.1:9"])
    assert result.exit_code == exitcodes.COULD_NOT_RUN
    assert "COULD NOT RUN" in result.output and "127.0.0.1:9" in result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "results.json").exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_interrupted_run_writes_what_it_measured(tmp_path: Path, workers: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "llmscen.cli.main", "run",
                             str(HERE / "long.yaml"), "--out", str(tmp_path),
                             "--workers", workers],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:    # wait until traffic flows, however slow start-up is
        seen.append(line)
        if "phase long" in line:
            break
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    output = "".join(seen) + rest
    assert proc.returncode == exitcodes.COULD_NOT_RUN, output
    assert "INTERRUPTED" in output
    assert "Traceback" not in output
    results = RunResults.load(tmp_path / "results.json")
    assert results.meta.interrupted
    counters = aggregate(results).counters
    assert counters.requests >= 20, output
    assert (tmp_path / "junit.xml").exists()
