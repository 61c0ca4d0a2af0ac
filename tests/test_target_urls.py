"""Target URLs, from the scenario or `--target NAME=URL`, are checked before any traffic."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from llmscen.cli.main import cli
from llmscen.compile.urls import parse_target_args, url_problem


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000", "https://api.example.com/v1", "http://[::1]:8000/v1",
    "grpc://127.0.0.1:8001", "HTTP://host", "127.0.0.1:8001", "localhost:8001",
    "http://user:pw@127.0.0.1:65535/?api_key=x",
    "fake://", "ollama+unix:///run/ollama.sock",   # a third-party plugin's own schemes
])
def test_good_urls(url: str) -> None:
    assert url_problem(url) is None


@pytest.mark.parametrize(("url", "message"), [
    ("", "the URL is empty"),
    ("http://127.0.0.1: 8000", "a URL cannot contain spaces"),
    ("htp://127.0.0.1:8000", "unknown URL scheme 'htp'; did you mean 'http'? (use http, "
                             "https, grpc, grpcs)"),
    ("grcp://127.0.0.1:8001", "did you mean 'grpc'?"),
    ("1http://x", "unknown URL scheme"),
    ("http://:8000", "the URL has no host, e.g. http://127.0.0.1:8000"),
    ("http://127.0.0.1:80000", "port '80000' is not a number from 1 to 65535"),
    ("http://127.0.0.1:0/v1", "port '0' is not a number from 1 to 65535"),
    ("http://127.0.0.1:http", "port 'http' is not a number from 1 to 65535"),
    ("http://[::1:8000", "an IPv6 address goes in [ ]"),
    ("http:/127.0.0.1:8000", "expected SCHEME://HOST[:PORT]"),
    ("127.0.0.1", "expected SCHEME://HOST[:PORT], e.g. http://127.0.0.1:8000 (or HOST:PORT "
                  "for gRPC)"),
    ("localhost:99999", "port '99999' is not a number"),
    ("http://h:" + "9" * 5000, "is not a number from 1 to 65535"),
])
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    problem = url_problem(url)
    assert problem is not None and message in problem


def test_messages_never_repeat_credentials() -> None:
    for url in ("http://admin:hunter2@127.0.0.1:0/?api_key=sk-secret",
                "htp://admin:hunter2@127.0.0.1/?api_key=sk-secret",
                "http://admin:hunter2@:80/?api_key=sk-secret"):
        problem = url_problem(url)
        assert problem is not None
        assert "hunter2" not in problem and "sk-secret" not in problem


def test_target_arguments() -> None:
    urls, problems = parse_target_args(["chat=http://h:1", "x", "=http://h", "y="])
    assert urls == {"chat": "http://h:1"}
    assert [str(p) for p in problems] == [
        f"--target {name}:1:1: expected --target NAME=URL, e.g. --target "
        "chat=http://127.0.0.1:8000" for name in ("x", "=http://h", "y")]


def test_command_line_and_scenario_problems_come_out_together(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("version: 1\n"
                        "targets:\n"
                        "  chat: {plugin: openai, url: 'http://127.0.0.1:9', model: m}\n"
                        "  other: {plugin: openai, url: 'http://127.0.0.1:65536', model: m}\n"
                        "phases: [{duration: 1s, arrival_rate: 1}]\n"
                        "requests: [{name: a, target: chta, body: {messages: []}}]\n")
    result = CliRunner().invoke(cli, [
        "plan", str(scenario), "--target", "chat=htp://admin:hunter2@127.0.0.1:8000",
        "--target", "nope=http://127.0.0.1:8000", "--target", "bad",
        "--set", "phases.0.duration=2 seconds"])
    assert result.exit_code == 2
    lines = result.output.strip().removeprefix("llmscen: ").splitlines()
    assert lines == [
        "--set phases.0.duration=2 seconds:1:1: invalid duration '2 seconds'; write it like "
        "250ms, 1.5s, 2m or 1h",
        "--target bad:1:1: expected --target NAME=URL, e.g. --target chat=http://127.0.0.1:8000",
        "--target chat:1:1: unknown URL scheme 'htp'; did you mean 'http'? (use http, https, "
        "grpc, grpcs)",
        "--target nope:1:1: no target named 'nope' in the scenario",
        f"{scenario}:4:33: port '65536' is not a number from 1 to 65535",
        f"{scenario}:6:30: unknown target 'chta'; did you mean 'chat'? (declared: chat, other)",
        "6 problems found; nothing was sent"]
    assert "hunter2" not in result.output


def test_a_target_overridden_on_the_command_line_is_not_checked_twice(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("version: 1\n"
                        "targets: {chat: {plugin: openai, url: 'htp://broken', model: m}}\n"
                        "phases: [{duration: 1s, arrival_rate: 1}]\n"
                        "requests: [{name: a, target: chat, body: {messages: []}}]\n")
    result = CliRunner().invoke(cli, ["plan", str(scenario), "--target",
                                      "chat=http://127.0.0.1:8000"])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8000" in result.output
