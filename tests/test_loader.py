from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from llmscen.compile.compiler import compile_document
from llmscen.engine.registry import Registry
from llmscen.spec.diagnostics import ScenarioError
from llmscen.spec.loader import apply_overrides, load_file, parse_yaml


def test_positions_are_kept_for_keys_and_values() -> None:
    doc = parse_yaml("a: 1\nb:\n  - {x: 2, y: three}\n", "f.yaml", {})
    assert str(doc.diagnostic(("b", 0, "y"), "m")) == "f.yaml:3:15: m"
    assert str(doc.diagnostic(("b", 0, "y"), "m", key=True)) == "f.yaml:3:12: m"
    # a missing node points at its nearest ancestor
    assert str(doc.diagnostic(("b", 0, "zz", 4), "m")) == "f.yaml:3:5: m"


def test_environment_interpolation() -> None:
    doc = parse_yaml("a: ${A}\nb: ${B:-fallback}\nc: x${A}y\nd: $${A}\ne: ${E:-}\n",
                     "f.yaml", {"A": "1", "E": ""})
    assert doc.data == {"a": "1", "b": "fallback", "c": "x1y", "d": "${A}", "e": ""}


def test_missing_variable_names_it_and_its_line() -> None:
    with pytest.raises(ScenarioError) as exc:
        parse_yaml("a: 1\nurl: http://${HOST}:80\n", "f.yaml", {})
    (diag,) = exc.value.diagnostics
    assert (diag.line, diag.col) == (2, 13)
    assert "HOST is not set" in diag.message


def test_tags_are_refused() -> None:
    with pytest.raises(ScenarioError, match=r"tag !!python/name:os.system is not allowed"):
        parse_yaml("a: !!python/name:os.system ''\n", "f.yaml", {})


def test_duplicate_keys_are_errors() -> None:
    with pytest.raises(ScenarioError, match=r"f.yaml:2:1: invalid YAML.*duplicate key"):
        parse_yaml("a: 1\na: 2\n", "f.yaml", {})


def test_overrides_parse_values_as_yaml(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("phases:\n  - {duration: 10s}\nname: x\n")
    doc = load_file(path, overrides=["phases.0.duration=2s", "name=y", "seed=7"])
    assert doc.data["phases"][0]["duration"] == "2s"
    assert doc.data["name"] == "y" and doc.data["seed"] == 7
    assert str(doc.diagnostic(("phases", 0, "duration"), "m")) == \
        "--set phases.0.duration=2s:1:1: m"
    with pytest.raises(ScenarioError, match="index 3 is out of range"):
        apply_overrides(doc, ["phases.3.duration=1s"])
    with pytest.raises(ScenarioError, match="expected --set PATH=VALUE"):
        apply_overrides(doc, ["phases"])


def test_unreadable_file_is_a_diagnostic(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read the scenario"):
        load_file(tmp_path / "nope.yaml")


REGISTRY = Registry.discover()
VOCAB = ["version", "name", "targets", "phases", "requests", "slos", "plugin", "url", "model",
         "duration", "arrival_rate", "users", "pause", "sweep", "target", "body", "expect",
         "services", "builtin", "options", "data", "file", "steps", "capture", "weight",
         "goodput", "ttft", "assert", "phase", "window", "ramp_to", "think", "openai", "chat"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 100),
                    st.floats(allow_nan=False, allow_infinity=False, width=32),
                    st.sampled_from(["1s", "5/s", "openai", "chat", "latency.p95 < 1s", "x",
                                     "{{ row.x }}", "${HOME}", "1s..2s", "10%"]))
trees = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4),
    st.dictionaries(st.sampled_from(VOCAB), children, max_size=5)), max_leaves=25)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(VOCAB), trees, max_size=7))
def test_any_document_gives_a_plan_or_scenario_error(data: dict[str, object]) -> None:
    registry = REGISTRY
    buf = io.StringIO()
    YAML().dump(data, buf)
    try:
        doc = parse_yaml(buf.getvalue(), "gen.yaml", {"HOME": "/root"})
        compile_document(doc, registry)
    except ScenarioError as exc:
        assert exc.diagnostics
        for diag in exc.diagnostics:
            assert diag.file == "gen.yaml" and diag.line >= 1 and diag.col >= 1


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_data_or_scenario_error(text: str) -> None:
    try:
        parse_yaml(text, "gen.yaml", {})
    except ScenarioError as exc:
        assert all(d.line >= 1 for d in exc.diagnostics)
