"""`llmscen schema` is an editor's reference: every property described, and
`check-jsonschema` with it accepts the bundled scenarios and rejects typical mistakes."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from llmscen.cli.main import cli
from llmscen.compile.schema import SLO_PATTERN, scenario_schema
from llmscen.engine.registry import Registry

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
MISTAKES = sorted((ROOT / "tests" / "scenarios" / "schema-mistakes").glob("*.yaml"))
REGISTRY = Registry.discover()
VALIDATOR = jsonschema.Draft202012Validator(scenario_schema(REGISTRY))
# beside this Python (a venv not on PATH), else on PATH
CHECK = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or \
    shutil.which("check-jsonschema")


@pytest.fixture(scope="module")
def schema_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0, result.output
    path = tmp_path_factory.mktemp("schema") / "llmscen.schema.json"
    path.write_text(result.output)
    return path


def properties(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for name, prop in (node.get("properties") or {}).items():
            yield f"{where}.{name}", prop
        for key, value in node.items():
            yield from properties(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from properties(item, f"{where}[{i}]")


def test_every_property_has_a_description(schema_file: Path) -> None:
    schema = json.loads(schema_file.read_text())
    found = list(properties(schema))
    assert len(found) > 250   # targets, services and requests of every bundled plugin
    missing = [where for where, prop in found if not prop.get("description")]
    assert not missing, f"{len(missing)} properties have no description: {missing[:10]}"


def test_durations_and_rates_say_their_unit(schema_file: Path) -> None:
    defs = json.loads(schema_file.read_text())["$defs"]
    assert "250ms" in defs["OpenaiTarget"]["properties"]["timeout"]["description"]
    assert "300/min" in defs["PhaseSpec"]["properties"]["arrival_rate"]["description"]
    assert "1%" in defs["OpenAISimOptions"]["properties"]["error_rate"]["description"]
    assert defs["OpenaiTarget"]["properties"]["timeout"]["default"] == 60.0


def test_each_plugin_has_its_own_request_shape(schema_file: Path) -> None:
    defs = json.loads(schema_file.read_text())["$defs"]
    assert "inputs" in defs["TritonRequest"]["properties"]
    assert "inputs" not in defs["OpenaiRequest"]["properties"]
    # openai's body is a JSON object, http's raw text: each keeps its own
    assert defs["OpenaiRequest"]["properties"]["body"]["type"] == "object"
    assert "ttft" in defs["OpenAISimOptions"]["properties"]


@pytest.mark.parametrize("slo", [
    "latency.p95 < 5s", " ttft.p99.9 <= 500ms ", "error_rate < 1%", "throughput > 50/min",
    "output_tokens.mean >= 100", "capacity >= 40/s", "images_per_second > 5/s",
    "server.vllm:num_requests_waiting.max < 10", "service.sim.rss.max < 2GB",
    "latency.p95<1.5e3ms"])
def test_the_slo_pattern_accepts_what_the_grammar_does(slo: str) -> None:
    assert re.match(SLO_PATTERN, slo)


@pytest.mark.parametrize("slo", [
    "latency.p95 5s", "latency.p95 =< 5s", "latency p95 < 5s", "latency.p95 <", "< 5s",
    "error_rate < -1%", "latency.p95 < 5 s s"])
def test_the_slo_pattern_refuses_what_is_no_slo(slo: str) -> None:
    assert not re.match(SLO_PATTERN, slo)


def check_jsonschema(schema: Path, files: list[Path]) -> dict[str, Any]:
    """One run of the real CLI over `files`: its JSON report."""
    assert CHECK is not None
    result = subprocess.run([CHECK, "-o", "json", "--schemafile", str(schema),
                             *map(str, files)], capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert not report.get("parse_errors"), report["parse_errors"]
    return report


needs_check = pytest.mark.skipif(CHECK is None, reason="check-jsonschema is in the dev extra")


@needs_check
def test_the_schema_is_a_valid_2020_12_schema(schema_file: Path) -> None:
    assert CHECK is not None
    result = subprocess.run([CHECK, "--check-metaschema", str(schema_file)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_check
def test_check_jsonschema_accepts_every_bundled_scenario(schema_file: Path) -> None:
    report = check_jsonschema(schema_file, SCENARIOS)
    assert report["status"] == "ok", report["errors"][:3]


@needs_check
def test_the_documented_pipe_works(tmp_path: Path) -> None:
    """docs/scenario-files.md: `llmscen schema | check-jsonschema --schemafile - FILES`."""
    assert CHECK is not None
    command = f"'{sys.executable}' -m llmscen.cli.main schema | '{CHECK}' --schemafile - "
    good = subprocess.run(command + " ".join(map(str, SCENARIOS)), shell=True,
                          capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = subprocess.run(command + str(MISTAKES[0]), shell=True, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 1 and "Schema validation errors" in bad.stdout, bad.stdout


@pytest.fixture(scope="module")
def refused(schema_file: Path) -> dict[str, list[str]]:
    """file name → where check-jsonschema found each mistake."""
    out: dict[str, list[str]] = {}
    for error in check_jsonschema(schema_file, MISTAKES)["errors"]:
        out.setdefault(Path(error["filename"]).name, []).append(error["path"])
    return out


@needs_check
@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda p: p.stem)
def test_check_jsonschema_refuses_a_typical_mistake(refused: dict[str, list[str]],
                                                   mistake: Path) -> None:
    assert mistake.name in refused, f"{mistake.name} passed the schema"


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda p: p.stem)
def test_the_compiler_refuses_the_mistakes_too(mistake: Path) -> None:
    """The schema is no stricter than llmscen: each mistake is one `validate` reports."""
    result = CliRunner().invoke(cli, ["validate", str(mistake)])
    assert result.exit_code == 2, result.output
    assert f"{mistake}:" in result.output


# --- never stricter than llmscen ---------------------------------------------------------

# Values people write in other forms than the bundled scenarios do; each placed at a path
# of a bundled scenario. Whatever `validate` accepts, the schema must accept too.
EDITS: list[tuple[str, Any]] = [
    ("phases.0.duration", 5), ("phases.0.duration", "1.5s"), ("phases.0.duration", "2m"),
    ("phases.0.duration", "${DURATION:-5s}"), ("phases.0.arrival_rate", "300/min"),
    ("phases.0.arrival_rate", "${RATE:-4}"), ("phases.0.requests", 7),
    ("phases.0.arrival", "poisson"), ("phases.0.warmup", True), ("phases.0.seed", 42),
    ("phases.0.name", "ramp up to peak"), ("phases.0.think", "1s..3s"),
    ("phases.0.think", [1, 3]), ("phases.0.think", {"min": "1s", "max": "2s"}),
    ("phases.0.mix", {"chat": 2}), ("phases.0.max_in_flight", 8),
    ("slos", ["latency.p95 < 5s", {"assert": "error_rate < 1%", "window": "10s"}]),
    ("slos", [{"assert": "latency.p99 < 2s", "abort": True, "window": 5}]),
    ("requests.0.weight", 0.5), ("requests.0.timeout", "45s"), ("requests.0.stream", False),
    ("requests.0.expect", {"status": [200, 201], "contains": ["a", "b"]}),
    ("seed", 7), ("description", "edited"), ("run", {"connect_failures": 0}),
    ("goodput", {"ttft": "500ms"}), ("metrics", {"large_chunk": 40}),
]


def _set(doc: Any, path: str, value: Any) -> bool:
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.get(part)
        if node is None or (isinstance(node, list) and not node):
            return False
    if isinstance(node, list):
        if int(last) >= len(node):
            return False
        node[int(last)] = value
    else:
        node[last] = value
    return True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(scenario=st.sampled_from(SCENARIOS),
       edits=st.lists(st.sampled_from(EDITS), min_size=1, max_size=3))
def test_what_validate_accepts_the_schema_accepts(scenario: Path, edits: list[tuple[str, Any]],
                                                  tmp_path: Path) -> None:
    from ruamel.yaml import YAML

    from llmscen.compile.compiler import compile_document
    from llmscen.spec.diagnostics import ScenarioError
    from llmscen.spec.loader import load_file

    doc = YAML(typ="safe", pure=True).load(scenario.read_text())
    if not all([_set(doc, path, copy.deepcopy(value)) for path, value in edits]):
        return
    where = tmp_path / "edited"
    where.mkdir(exist_ok=True)
    if not (where / "data").exists():
        shutil.copytree(ROOT / "scenarios" / "data", where / "data")
    path = where / scenario.name
    YAML().dump(doc, path)
    try:
        compile_document(load_file(path), REGISTRY)
    except ScenarioError:
        event("refused by validate")
        return   # the schema may refuse it or not
    event("accepted by validate")
    errors = list(VALIDATOR.iter_errors(doc))
    assert not errors, f"{scenario.name} with {edits}: the schema refuses " \
        f"{'.'.join(map(str, errors[0].absolute_path))}: {errors[0].message[:300]}"
