from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from llmscen.compile.compiler import compile_document
from llmscen.engine.registry import Registry
from llmscen.spec.diagnostics import ScenarioError
from llmscen.spec.loader import (
    MAX_ALIAS_CHARS,
    MAX_ALIAS_VALUES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    Document,
    apply_overrides,
    load_file,
    parse_yaml,
)


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


def messages(doc: Document) -> list[str]:
    return [str(d) for d in doc.diagnostics()]


def test_missing_variable_names_it_and_its_line() -> None:
    doc = parse_yaml("a: 1\nurl: http://${HOST}:80\nq: 'x${PORT}'\n", "f.yaml", {})
    assert messages(doc) == [
        "f.yaml:2:13: environment variable HOST is not set and has no default (write "
        "${HOST:-default} to give one)",
        "f.yaml:3:6: environment variable PORT is not set and has no default (write "
        "${PORT:-default} to give one)"]
    # the compiler says nothing more about a value the loader already reported
    assert not doc.usable(("url",)) and not doc.usable(("q", 0)) and doc.usable(("a",))


def test_tags_are_refused() -> None:
    doc = parse_yaml("a: !!python/name:os.system ''\nb: !!str 5\nc: !!int '7'\n", "f.yaml", {})
    assert messages(doc) == ["f.yaml:1:4: YAML tag !!python/name:os.system is not allowed; "
                             "scenarios hold plain data only"]
    assert doc.data == {"a": None, "b": "5", "c": 7}


def test_duplicate_keys_are_errors() -> None:
    doc = parse_yaml("a: 1\na: 2\n", "f.yaml", {})
    assert messages(doc) == ["f.yaml:2:1: invalid YAML: duplicate key 'a' (first on line 1)"]
    assert doc.data == {"a": 1}


def test_scalars_resolve_as_yaml_1_2() -> None:
    doc = parse_yaml("[1, 0x1F, 0o17, 1_000, -3, 1.5, 1e3, .inf, true, False, null, ~, yes, "
                     "'1', 2024-01-01, 12:30, '']", "f.yaml", {})
    assert doc.data == [1, 31, 15, 1000, -3, 1.5, 1000.0, float("inf"), True, False, None,
                        None, "yes", "1", "2024-01-01", "12:30", ""]
    assert not doc.problems


def test_anchors_aliases_and_merge_keys() -> None:
    text = ("base: &base {model: m, max_tokens: 8}\n"
            "a: {<<: *base, max_tokens: 16}\n"
            "b:\n  - *base\n  - <<: [*base, {stream: true}]\n")
    doc = parse_yaml(text, "f.yaml", {})
    assert doc.data["a"] == {"max_tokens": 16, "model": "m"}
    assert doc.data["b"] == [{"model": "m", "max_tokens": 8},
                             {"model": "m", "max_tokens": 8, "stream": True}]
    # an alias is a copy: changing one use leaves the others alone
    doc.data["b"][0]["model"] = "x"
    assert doc.data["base"]["model"] == "m"
    # positions of an alias are where it is used, not where its anchor is
    assert str(doc.diagnostic(("b", 0, "model"), "m")) == "f.yaml:4:5: m"
    assert str(doc.diagnostic(("a", "model"), "m")) == "f.yaml:2:5: m"


def test_overrides_parse_values_as_yaml(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("phases:\n  - {duration: 10s}\nname: x\n")
    doc = load_file(path, overrides=["phases.0.duration=2s", "name=y", "seed=7"])
    assert doc.data["phases"][0]["duration"] == "2s"
    assert doc.data["name"] == "y" and doc.data["seed"] == 7
    assert str(doc.diagnostic(("phases", 0, "duration"), "m")) == \
        "--set phases.0.duration=2s:1:1: m"
    apply_overrides(doc, ["phases.3.duration=1s", "phases", "name=${UNSET_FOR_TEST}"])
    assert [m.split(": ", 1)[1] for m in messages(doc)] == [
        "phases has 1 items; index 3 is out of range",
        "expected --set PATH=VALUE, e.g. --set phases.0.duration=5s",
        "environment variable UNSET_FOR_TEST is not set and has no default (write "
        "${UNSET_FOR_TEST:-default} to give one)"]


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


# --- bounds ---------------------------------------------------------------------------

def test_nesting_past_the_limit_is_refused_where_it_happens() -> None:
    with pytest.raises(ScenarioError) as exc:
        parse_yaml("a:\n  b: " + "[" * 70 + "]" * 70 + "\n", "f.yaml", {})
    (diag,) = exc.value.diagnostics
    # two mappings, then the 63rd `[` reaches 65 levels
    assert str(diag) == "f.yaml:2:68: the document is nested deeper than 64 levels; a " \
                        "scenario is never that deep"
    doc = parse_yaml("a: " + "[" * 63 + "]" * 63 + "\n", "f.yaml", {})
    assert not doc.problems


def test_integers_are_limited_to_64_bits() -> None:
    doc = parse_yaml(f"[{2**64 - 1}, {-2**63}, {2**64}, {-2**63 - 1}, 0x{'F' * 17}, "
                     f"{'7' * 5000}, 1e400]", "f.yaml", {})
    assert doc.data[:2] == [2**64 - 1, -2**63]
    assert doc.data[2:6] == [None] * 4 and doc.data[6] == float("inf")
    assert [d.message for d in doc.diagnostics()] == [
        f"integer {2**64} is out of range: integers are limited to 64 bits",
        f"integer {-2**63 - 1} is out of range: integers are limited to 64 bits",
        f"integer 0x{'F' * 17} is out of range: integers are limited to 64 bits",
        "integer of 5000 digits is out of range: integers are limited to 64 bits"]


def laughs(levels: int, width: int = 9) -> str:
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_aliases_past_the_budget_are_cut_at_the_first_use_over_it() -> None:
    tracemalloc.start()
    try:
        doc = parse_yaml(laughs(9), "f.yaml", {})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20
    # 10 + 90 + 819 + 7380 values added, then the first *l3 of l4 would add 7381 more
    assert [str(d) for d in doc.diagnostics()] == [
        f"f.yaml:5:10: alias *l3 expands the document past the limit of {MAX_ALIAS_VALUES} "
        f"values or {MAX_ALIAS_CHARS} characters that aliases may add (a YAML alias bomb?)"]
    assert doc.data["l3"][8][8][8] == ["lol"] * 9
    assert doc.data["l4"] == [None] * 9   # and later aliases only while the budget lasts
    assert not doc.usable(("l4", 0)) and doc.usable(("l3", 0))
    # everything the document holds is under the budget plus what the text itself spells
    assert _count(doc.data) <= MAX_ALIAS_VALUES + len(laughs(9))


def test_aliased_text_counts_against_the_budget() -> None:
    text = f"a: &a {'x' * 60_000}\nb: [{', '.join(['*a'] * 20)}]\n"
    doc = parse_yaml(text, "f.yaml", {})
    assert [d.message.split(" expands")[0] for d in doc.diagnostics()] == ["alias *a"]
    assert doc.data["b"].count(None) == 4 and doc.data["b"][15] == "x" * 60_000


def test_aliases_cannot_nest_past_the_depth_limit() -> None:
    text = "".join(f"d{i}: &d{i} {'[' * 20}{f'*d{i - 1}' if i else '1'}{']' * 20}\n"
                   for i in range(4))
    doc = parse_yaml(text, "f.yaml", {})
    assert [str(d) for d in doc.diagnostics()] == [
        f"f.yaml:4:29: alias *d2 nests the document deeper than {MAX_DEPTH} levels"]


def test_structural_mistakes_are_reported_and_loading_goes_on() -> None:
    text = ("a: *nope\n"
            "b: &b [1, *b]\n"
            "? [k]\n: v\n"
            "&k key: 1\n"
            "c: {*k : 2}\n"
            "d: !custom [1, {x: 2}]\n"
            "e: 5\n")
    doc = parse_yaml(text, "f.yaml", {})
    assert [str(d) for d in doc.diagnostics()] == [
        "f.yaml:1:4: invalid YAML: found undefined alias 'nope'",
        "f.yaml:2:11: alias *b is used inside its own anchor &b",
        "f.yaml:3:3: a mapping key must be a plain value, not a list",
        "f.yaml:7:4: YAML tag !custom is not allowed; scenarios hold plain data only"]
    assert doc.data == {"a": None, "b": [1, None], "key": 1, "c": {"key": 2}, "d": None,
                        "e": 5}


def test_a_second_document_is_refused() -> None:
    with pytest.raises(ScenarioError, match=r"f.yaml:2:1: invalid YAML: a scenario is one YAML "
                                            "document; found a second one"):
        parse_yaml("a: 1\n---\nb: 2\n", "f.yaml", {})


def test_files_past_the_size_limit_or_not_regular_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * MAX_FILE_BYTES + "\n")
    with pytest.raises(ScenarioError, match=r"big.yaml:1:1: cannot read the scenario: it is "
                                            r"64 KiB, past the limit of 64 KiB; put large"):
        load_file(big)
    with pytest.raises(ScenarioError, match="it is a directory, not a regular file"):
        load_file(tmp_path)
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"a: \xff\n")
    with pytest.raises(ScenarioError, match=r"it is not UTF-8 text \(byte 3\)"):
        load_file(binary)


def _count(value: object) -> int:
    if isinstance(value, dict):
        return 1 + sum(1 + _count(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_count(v) for v in value)
    return 1


_NAMES = st.sampled_from(["a", "b", "c", "d"])
_ANCHOR = st.one_of(st.just(""), _NAMES.map(lambda n: f"&{n} "))
_LEAF = st.one_of(_NAMES.map(lambda n: f"*{n}"),
                  st.tuples(_ANCHOR, st.sampled_from(["1", "x", "'${HOME}'", "null", "9" * 30]))
                  .map("".join))


def _collection(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    seq = st.tuples(_ANCHOR, st.lists(children, max_size=9)).map(
        lambda t: t[0] + "[" + ", ".join(t[1]) + "]")
    mapping = st.tuples(_ANCHOR, st.lists(children, max_size=9)).map(
        lambda t: t[0] + "{" + ", ".join(f"k{i}: {v}" for i, v in enumerate(t[1])) + "}")
    return seq | mapping


@st.composite
def _alias_chains(draw: st.DrawFn) -> str:
    """Anchors that alias the ones before them, some many times: bombs of any shape."""
    defs = []
    for i in range(draw(st.integers(1, 12))):
        items = [f"*a{draw(st.integers(max(0, i - 2), i - 1))}" if i else "x"
                 for _ in range(draw(st.integers(0, 12)))]
        items += draw(st.lists(st.sampled_from(["1", "x", "'${HOME}'", "*zz"]), max_size=3))
        body = "[" + ", ".join(items) + "]" if draw(st.booleans()) else \
            "{" + ", ".join(f"k{n}: {v}" for n, v in enumerate(items)) + "}"
        defs.append(f"k{i}: &a{i} {body}")
    return "{" + ", ".join(defs) + "}"


# Flow YAML where any node may be anchored and any value may alias an anchor (defined
# or not, before or inside itself), and chains of aliases of aliases.
aliased_yaml = st.recursive(_LEAF, _collection, max_leaves=60) | _alias_chains()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(aliased_yaml)
def test_aliases_never_expand_past_the_budget(text: str) -> None:
    try:
        doc = parse_yaml(text, "gen.yaml", {"HOME": "/root"})
    except ScenarioError as exc:
        assert all(d.line >= 1 and d.col >= 1 for d in exc.diagnostics)
        return
    assert _count(doc.data) <= MAX_ALIAS_VALUES + len(text)
    for diag in doc.diagnostics():
        assert diag.file == "gen.yaml" and diag.line == 1 and 1 <= diag.col <= len(text) + 1


# --- the user's reference -------------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "scenario-files.md"


def test_doc_example_compiles_with_its_merge_keys(registry: Registry) -> None:
    block = DOC.read_text().split("```yaml\n", 1)[1].split("```", 1)[0]
    plan = compile_document(parse_yaml(block, "doc.yaml", {}), registry)
    bodies = {r.name: r.steps[0].payload["body"] for r in plan.requests}
    assert [r.name for r in plan.requests] == ["short", "long", "again"]
    assert bodies["short"]["max_tokens"] == 16 and bodies["again"] == bodies["short"]
    assert bodies["long"]["max_tokens"] == 256
    assert plan.target("chat").url == "http://127.0.0.1:8000"


def test_doc_limits_are_the_code_s() -> None:
    from llmscen.compile.data import MAX_DATA_BYTES

    text = DOC.read_text()
    assert f"| {MAX_FILE_BYTES // 1024} KiB, a regular file" in text
    assert f"| {MAX_DEPTH} levels |" in text
    assert f"| {MAX_ALIAS_VALUES:,} values and {MAX_ALIAS_CHARS:,} characters in all |" in text
    assert f"| {MAX_DATA_BYTES // 2**20} MiB, a regular file" in text
