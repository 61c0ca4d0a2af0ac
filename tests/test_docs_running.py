"""docs/running.md stays true: its completion lines, its --out example, its live-view screen."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from llmscen.metrics.results import RunResults

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "running.md").read_text()
LLMSCEN = Path(sys.executable).with_name("llmscen")


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)\n```", DOC, re.S)


@pytest.mark.skipif(not LLMSCEN.exists(), reason="the llmscen entry point is not installed")
@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_completion_lines_print_a_completion_script(shell: str) -> None:
    line = next(line for block in shell_blocks() for line in block.splitlines()
                if f"_LLMSCEN_COMPLETE={shell}_source" in line)
    variable = re.search(r"_LLMSCEN_COMPLETE=(\w+)", line)
    assert variable is not None
    done = subprocess.run([str(LLMSCEN)], env={"_LLMSCEN_COMPLETE": variable.group(1),
                                               "PATH": str(LLMSCEN.parent)},
                          capture_output=True, text=True, timeout=60, check=True)
    assert "_llmscen_completion" in done.stdout and "_LLMSCEN_COMPLETE" in done.stdout


@pytest.mark.skipif(not LLMSCEN.exists(), reason="the llmscen entry point is not installed")
def test_completion_completes_run_options() -> None:
    done = subprocess.run([str(LLMSCEN)], env={
        "_LLMSCEN_COMPLETE": "bash_complete", "COMP_WORDS": "llmscen run x.yaml --progr",
        "COMP_CWORD": "3", "PATH": str(LLMSCEN.parent)},
        capture_output=True, text=True, timeout=60, check=True)
    assert "--progress" in done.stdout


@pytest.mark.slow
def test_the_out_example_runs_as_written(tmp_path: Path) -> None:
    command = next(line for block in shell_blocks() for line in block.splitlines()
                   if "--out json=" in line)
    argv = shlex.split(command)
    assert argv[:2] == ["llmscen", "run"]
    argv[2] = str(ROOT / argv[2])
    done = subprocess.run([sys.executable, "-m", "llmscen.cli.main", *argv[1:], "-q",
                           "--workers", "1", "--set", "phases.0.requests=4"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert RunResults.load(tmp_path / "r.json").outcome is not None
    assert (tmp_path / "junit.xml").exists() and (tmp_path / "reports").is_dir()


def test_the_documented_screen_is_the_captured_one() -> None:
    screen = (ROOT / "docs" / "live-view.txt").read_text().rstrip("\n")
    block = DOC.split("## The live view", 1)[1].split("```text\n", 1)[1].split("\n```", 1)[0]
    assert block == screen
    for label in ("load", "latency", "ttft", "errors", "client", "worker 0"):
        assert re.search(rf"^ *{label} ", screen, re.M), label
