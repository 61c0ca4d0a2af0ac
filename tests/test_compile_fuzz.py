"""Fuzzing the loader and compiler with mutated bundled scenarios.

Whatever the edit, `llmscen validate` answers with a plan (exit 0) or with
problems at FILE:LINE:COL (exit 2) — never a traceback — and quickly. The
edits are the ones people and attackers make: characters dropped or doubled,
lines duplicated or moved, YAML syntax and llmscen syntax pasted in anywhere.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmscen.cli.main import cli

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = sorted((ROOT / "scenarios").glob("*.yaml"))
CPU_SECONDS = 2.0
PROBLEM = re.compile(r"^(?:llmscen: )?(?:m\.yaml|--set [^:]*|--target [^:]*):\d+:\d+: \S")

SNIPPETS = [
    "&a ", "*a", "*nope", "[", "]", "{", "}", ": ", "- ", ", ", "? ", "<<: *a", "---\n", "~",
    "!!python/object/apply:os.system ", "!custom ", "'", '"', "#", "\t", "\\", "|\n  ",
    "${FUZZ_UNSET}", "${HOME:-x}", "$${", "9" * 25, "9" * 5000, "-0x1F", "1e999", ".nan",
    "{{ row.prompt }}", "{{ 1 + }}", "{% for %}", "latency.p95 < 2000", "error_rate < 1",
    "ttft.p99 < 0.5", "throughput > 5%", "{assert: itl.p95 < 1s, window: 0.5s}",
    "capture: {x: choices.0}", "capture: {x: 'regex:('}", "url: htp://x:99999",
    "url: http://:0", "\x00", "\ufeff", "é", "\u2028", "[" * 80, "{a: " * 70,
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of scenarios/ (with its data files) to write mutants into."""
    where = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(ROOT / "scenarios" / "data", where / "data")
    return where


@st.composite
def mutants(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(BUNDLED)).read_text(encoding="utf-8")
    for _ in range(draw(st.integers(1, 4))):
        lines = text.splitlines(keepends=True)
        at = draw(st.integers(0, len(text)))
        line = draw(st.integers(0, len(lines) - 1))
        edit = draw(st.sampled_from(["insert", "delete", "duplicate", "move", "indent"]))
        if edit == "insert":
            text = text[:at] + draw(st.sampled_from(SNIPPETS) | st.text(max_size=8)) + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 12)):]
        elif edit == "duplicate":
            text = "".join(lines[:line + 1] + lines[line:])
        elif edit == "move":
            moved = lines.pop(line)
            lines.insert(draw(st.integers(0, len(lines))), moved)
            text = "".join(lines)
        else:
            lines[line] = " " * draw(st.integers(1, 4)) + lines[line]
            text = "".join(lines)
    return text


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=mutants())
def test_mutated_scenarios_give_a_plan_or_located_problems(workdir: Path, text: str,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.chdir(workdir)
    (workdir / "m.yaml").write_text(text, encoding="utf-8", errors="surrogateescape")
    start = time.process_time()
    result = CliRunner().invoke(cli, ["validate", "m.yaml"], env={"FUZZ_UNSET": None})
    spent = time.process_time() - start
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        lines = result.output.strip().splitlines()
        assert lines[-1].endswith("found; nothing was sent")
        starts = [line for line in lines[:-1] if PROBLEM.match(line)]
        assert starts, result.output   # every problem (some span lines) has a location
        assert PROBLEM.match(lines[0]), lines[0]
    assert spent < CPU_SECONDS, f"{spent:.2f} s of CPU"
