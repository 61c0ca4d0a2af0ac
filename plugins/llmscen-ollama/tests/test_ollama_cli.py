"""End to end: `llmscen run` of the example scenario against the fake Ollama server.

`llmscen` finds the plugin through its entry point only, so this needs the
package installed (`pip install -e plugins/llmscen-ollama`); it runs the CLI as
a real subprocess with two worker processes, which rebuild the runner from its
pickled plan.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from fake_ollama import FakeConfig, serve

from llmscen.cli.main import cli

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "ollama.yaml"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmscen.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_llmscen_lists_the_plugin_with_its_distribution():
    done = CliRunner().invoke(cli, ["plugins"])
    assert done.exit_code == 0, done.output
    line = next(ln for ln in done.output.splitlines() if ln.strip().startswith("ollama "))
    assert "llmscen-ollama 0.1.0" in line and "NDJSON" in line
    assert "model_options" in done.output and "BROKEN" not in done.output


def test_run_the_example_against_the_fake(tmp_path):
    with serve(FakeConfig(ttft=0.02, itl=0.004, output_tokens=12)) as (url, seen):
        done = run_cli("run", str(EXAMPLE), "--target", f"ollama={url}", "--out",
                       str(tmp_path / "out"), "--workers", "2", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASSED: 4 SLOs, 5 expectations" in done.stdout
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    plugins = {p["name"]: p for p in results["meta"]["plugins"]}
    assert plugins["ollama"]["distribution"] == "llmscen-ollama"
    assert plugins["ollama"]["version"] == "0.1.0"
    chat = [s for s in results["scopes"] if s["phase"] == "steady" and s["request"] == "chat"]
    assert chat and chat[0]["counters"]["ok"] == chat[0]["counters"]["requests"] > 0
    assert {"ttft", "itl", "tpot", "output_tokens"} <= set(chat[0]["histograms"])
    chats = [b for b in seen.bodies if "messages" in b]
    assert chats and all(b["stream"] is True and b["model"] == "llama3.2" for b in chats)
    assert all(b["options"]["num_predict"] == 32 for b in chats)


def test_a_missing_model_stops_the_run_before_traffic(tmp_path):
    with serve(FakeConfig(models=("mistral:latest",))) as (url, seen):
        done = run_cli("run", str(EXAMPLE), "--target", f"ollama={url}", "--out",
                       str(tmp_path / "out"), "--workers", "1", "-q", cwd=tmp_path)
    said = done.stdout + done.stderr
    assert done.returncode == 3, said
    assert "COULD NOT RUN" in said and "ollama pull llama3.2" in said
    assert "target 'ollama': model 'llama3.2' is not on" in said
    assert seen.bodies == []
