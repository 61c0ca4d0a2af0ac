"""Captures: the grammar (compile.capture) and what the engine takes from a response."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from llmscen.cli.main import cli
from llmscen.compile.capture import (
    Capture,
    CaptureSyntaxError,
    is_variable_name,
    parse_capture,
)
from llmscen.engine.capture import compile_capture, is_missing
from llmscen.engine.protocol import Exchange


@pytest.mark.parametrize(("expr", "kind", "path"), [
    ("$", "json", ()),
    ("$.access_token", "json", ("access_token",)),
    ("$.data[0].id", "json", ("data", 0, "id")),
    ("$['odd key'][12]", "json", ("odd key", 12)),
    ('$["x-y"].z_1', "json", ("x-y", "z_1")),
    ("$.choices[0].message.content", "json", ("choices", 0, "message", "content")),
])
def test_json_paths(expr: str, kind: str, path: tuple[str | int, ...]) -> None:
    assert parse_capture(expr) == Capture(kind, path=path)  # type: ignore[arg-type]


def test_headers_and_regexes() -> None:
    assert parse_capture("header: X-Request-Id") == Capture("header", name="x-request-id")
    capture = parse_capture(r"regex:order (\d+)")
    assert capture.kind == "regex" and capture.pattern is not None
    assert capture.pattern.pattern == r"order (\d+)"


@pytest.mark.parametrize(("expr", "column", "message"), [
    ("choices.0", 0, "a capture starts with `$` (the JSON body, e.g. $.id), `header:` or "
                     "`regex:`; did you mean '$.choices[0]'?"),
    ("access_token", 0, "did you mean '$.access_token'?"),
    ("a.b-c.1x", 0, "did you mean \"$.a.b-c['1x']\"?"),
    ("Bearer {{ x }}", 0, "a capture starts with `$`"),
    ("$.choices.0", 9, "invalid JSON path at '.0': a list index is written [0]"),
    ("$.a[x]", 3, "invalid JSON path at '[x]': write $.key.sub[0] or $['odd key']"),
    ("$.", 1, "invalid JSON path at '.'"),
    ("header:", 7, "`header:` needs a header name"),
    ("header:   ", 10, "`header:` needs a header name"),
    ("regex:order (\\d+", 12, "invalid regex: missing ), unterminated subpattern"),
    ("regex:[", 6, "invalid regex: unterminated character set"),
])
def test_errors_say_what_and_where(expr: str, column: int, message: str) -> None:
    with pytest.raises(CaptureSyntaxError) as info:
        parse_capture(expr)
    assert message in info.value.message
    assert info.value.column == column


@given(st.text(max_size=40) | st.text("$.[]'\"0123abc-_ :header:regex:()\\", max_size=30))
def test_any_text_parses_or_fails_with_a_column_inside_it(expr: str) -> None:
    try:
        capture = parse_capture(expr)
    except CaptureSyntaxError as exc:
        assert 0 <= exc.column <= len(expr)
    else:
        assert capture.kind in ("json", "header", "regex")


@given(st.lists(st.one_of(st.integers(0, 99), st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,8}",
                                                             fullmatch=True)), max_size=6))
def test_a_written_path_reads_back(parts: list[str | int]) -> None:
    expr = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
    assert parse_capture(expr).path == tuple(parts)


def test_variable_names_are_what_templates_can_use() -> None:
    assert is_variable_name("token") and is_variable_name("_x1")
    assert not is_variable_name("my-id") and not is_variable_name("1x")
    assert not is_variable_name("")


def test_the_engine_runs_the_parsed_form() -> None:
    ex = Exchange(intended_ns=0, body={"data": [{"id": 7}], "odd key": "v"}, text="order 42 ok",
                  headers={"x-request-id": "abc"})
    assert compile_capture("$.data[0].id")(ex) == 7
    assert compile_capture("$['odd key']")(ex) == "v"
    assert compile_capture("$")(ex) == ex.body
    assert compile_capture("header:X-Request-Id")(ex) == "abc"
    assert compile_capture(r"regex:order (\d+)")(ex) == "42"
    assert compile_capture(r"regex:ok")(ex) == "ok"
    for missing in ("$.data[3].id", "$.data.id", "$.odd key", "header:nope", "regex:zzz"):
        assert is_missing(compile_capture(missing.replace("$.odd key", "$['x']"))(ex))
    with pytest.raises(CaptureSyntaxError):
        compile_capture("choices.0")


def test_validate_reports_a_bad_capture_before_any_traffic(tmp_path: Path) -> None:
    """`capture: {x: "choices.0"}` used to pass validate and fail mid-run."""
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "version: 1\n"
        "targets: {chat: {plugin: openai, url: 'http://127.0.0.1:9', model: m}}\n"
        "phases: [{duration: 1s, arrival_rate: 1}]\n"
        "requests:\n"
        "  - name: flow\n"
        "    target: chat\n"
        "    steps:\n"
        "      - {name: a, body: {messages: []}, capture: {x: choices.0}}\n"
        "      - {name: b, body: {messages: [{role: user, content: '{{ x }}'}]}}\n")
    result = CliRunner().invoke(cli, ["validate", str(scenario)])
    assert result.exit_code == 2
    assert f"{scenario}:8:54: a capture starts with `$`" in result.output
    assert "did you mean '$.choices[0]'?" in result.output
