from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from llmscen import __version__
from llmscen.cli import exitcodes
from llmscen.cli.main import cli

SCENARIOS = sorted((Path(__file__).resolve().parent.parent / "scenarios").glob("*.yaml"))


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_every_bundled_scenario_validates(in_root: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", *[str(p.relative_to(in_root))
                                                    for p in SCENARIOS]])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok  ") == len(SCENARIOS)


def test_plan_shows_every_phase(in_root: Path) -> None:
    result = CliRunner().invoke(cli, ["plan", "scenarios/peak.yaml"])
    assert result.exit_code == 0, result.output
    for phase, load, expected in (("warmup", "5/s constant", "50"),
                                  ("ramp", "10/s → 50/s", "600"),
                                  ("peak", "100/s poisson", "3000"),
                                  ("soak", "50 users, spawn 10/s, think 1s..3s", "by latency")):
        line = next(ln for ln in result.output.splitlines() if ln.strip().startswith(phase))
        assert load in line and line.rstrip().endswith(expected)
        # an open phase without max_in_flight shows the client's own bound
        assert ("≤1,024 in flight (default)" in line) == (phase != "soak"), line
    assert "sim-model" in result.output


def test_plan_json_masks_secrets(in_root: Path) -> None:
    result = CliRunner().invoke(cli, ["plan", "scenarios/peak.yaml", "--json"],
                                env={"OPENAI_API_KEY": "sk-very-secret"})
    assert result.exit_code == 0, result.output
    assert "sk-very-secret" not in result.output
    plan = json.loads(result.output)
    assert [p["name"] for p in plan["phases"]] == ["warmup", "ramp", "peak", "soak"]
    assert plan["phases"][2]["expected_requests"] == 3000
    # each plugin's own options are in the plan, the key masked
    chat = plan["targets"][0]["options"]
    assert chat["model"] == "sim-model" and chat["api_key"] == "**********"


def test_plan_json_masks_secret_headers(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("""\
version: 1
targets:
  api: {plugin: http, url: "http://127.0.0.1:9",
        headers: {Authorization: "Bearer ${TOK}", Accept: text/plain}}
  chat: {plugin: openai, url: "http://127.0.0.1:9", model: m, headers: {X-Api-Key: "${TOK}"}}
phases: [{name: p, duration: 1s, arrival_rate: 1}]
requests:
  - {name: h, target: api, get: /health}
  - {name: c, target: chat, body: {messages: [{role: user, content: hi}]}}
""")
    result = CliRunner().invoke(cli, ["plan", str(scenario), "--json"],
                                env={"TOK": "tok-0123456789"})
    assert result.exit_code == 0, result.output
    assert "tok-0123456789" not in result.output
    options = {t["name"]: t["options"] for t in json.loads(result.output)["targets"]}
    assert options["api"]["headers"] == {"Authorization": "**********", "Accept": "text/plain"}
    assert options["chat"]["headers"] == {"X-Api-Key": "**********"}


def test_set_and_target_overrides(in_root: Path) -> None:
    result = CliRunner().invoke(cli, ["plan", "scenarios/peak.yaml", "--json",
                                      "--set", "phases.2.duration=5s",
                                      "--target", "chat=http://127.0.0.1:9999"])
    plan = json.loads(result.output)
    assert plan["phases"][2]["expected_requests"] == 500
    assert plan["targets"][0]["url"] == "http://127.0.0.1:9999"
    assert plan["targets"][0]["service"] is None
    bad = CliRunner().invoke(cli, ["plan", "scenarios/peak.yaml", "--target", "nope=http://x"])
    assert bad.exit_code == exitcodes.INVALID_INPUT
    assert "no target named 'nope'" in bad.output


def test_schema_accepts_the_bundled_scenarios(in_root: Path) -> None:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    validator = jsonschema.Draft202012Validator(schema)
    for path in SCENARIOS:
        doc = YAML(typ="safe").load(path)
        errors = list(validator.iter_errors(doc))
        assert not errors, f"{path.name}: {errors[0].message}"
    wrong = {"targets": {"chat": {"plugin": "openai", "modle": "x"}}, "phases": [],
             "requests": []}
    assert list(validator.iter_errors(wrong))


def test_plugins_lists_builtins_with_versions() -> None:
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0
    for name in ("openai", "vllm", "openai-sim", "command"):
        assert any(line.split()[:1] == [name] and "llmscen" in line
                   for line in result.output.splitlines()), name


def test_missing_file_is_invalid_input_without_traceback(in_root: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", "scenarios/nope.yaml"])
    assert result.exit_code == exitcodes.INVALID_INPUT
    assert "scenarios/nope.yaml:1:1: cannot read the scenario" in result.output


@pytest.mark.slow
def test_real_subprocess_exit_code(in_root: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "llmscen.cli.main", "validate",
                           "tests/scenarios/invalid/several-mistakes.yaml"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == exitcodes.INVALID_INPUT
    assert "Traceback" not in proc.stderr
    assert "did you mean 'weight'?" in proc.stderr
