"""The README's two set-up commands stay true: CI runs the second verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_exactly_two_setup_commands() -> None:
    first, second = commands()
    assert first.endswith("llmscen run scenarios/peak.yaml")
    assert "pip install" in first and "pip install" in second
    assert second.endswith("pytest")


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands()[1] in ci.splitlines()


def test_exit_codes_documented_match_the_code() -> None:
    from llmscen.cli import exitcodes

    text = (ROOT / "README.md").read_text()
    for code in (exitcodes.OK, exitcodes.ASSERTIONS_FAILED, exitcodes.INVALID_INPUT,
                 exitcodes.COULD_NOT_RUN, exitcodes.INVALID_MEASUREMENT,
                 exitcodes.INTERNAL_ERROR):
        assert re.search(rf"^\| {code} \|", text, re.M)
