"""Each invalid scenario yields exactly the messages in its .expected file, at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.engine.registry import Registry

CORPUS = sorted((Path(__file__).parent / "scenarios" / "invalid").glob("*.yaml"))


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_invalid_scenario_messages(path: Path, in_root: Path, registry: Registry) -> None:
    relative = path.relative_to(in_root)
    result = CliRunner().invoke(cli, ["validate", str(relative)],
                                env={"LLMSCEN_TEST_SURELY_UNSET_URL": None})
    assert result.exit_code == exitcodes.INVALID_INPUT
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("llmscen: ")
    lines[0] = lines[0].removeprefix("llmscen: ")
    assert lines[-1].endswith("found; nothing was sent")
    # the installed plugins vary by environment; the rest of each message is exact
    installed = ", ".join(sorted(registry.plugins))
    services = ", ".join(sorted(k for k in registry.services if k != "command"))
    expected = path.with_suffix(".expected").read_text().replace("{plugins}", installed)
    expected = expected.replace("{services}", services)
    expected = expected.strip().splitlines()
    assert lines[:-1] == expected


def test_corpus_covers_the_must_show_case() -> None:
    text = (Path(__file__).parent / "scenarios/invalid/several-mistakes.expected").read_text()
    for fragment in ("unknown key 'modle'; did you mean 'model'?",
                     "unknown target 'chta'; did you mean 'chat'?",
                     "invalid duration '10 seconds'",
                     "unknown metric 'latncy'"):
        assert fragment in text


def test_one_run_reports_every_kind_of_mistake() -> None:
    """Environment, keys, references, SLO units, captures, URLs: one round, not three."""
    text = (Path(__file__).parent / "scenarios/invalid/every-kind.expected").read_text()
    for fragment in ("environment variable LLMSCEN_TEST_SURELY_UNSET_URL is not set",
                     "unknown key 'timout'; did you mean 'timeout'?",
                     "unknown target 'chta'; did you mean 'chat'?",
                     "unknown phase 'stedy'; did you mean 'steady'?",
                     "latency is a duration and its threshold needs a unit: write 2000ms or 2s",
                     "error_rate is a fraction and 1 means 100 %: write 1% or 100%",
                     "did you mean '$.choices[0].message.content'?",
                     "unknown URL scheme 'htp'; did you mean 'http'?",
                     "itl is not kept per second, so it cannot have a window",
                     "is out of range: integers are limited to 64 bits"):
        assert fragment in text, fragment
