"""The full example of SPEC.md (kept beside the repository) compiles as written."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmscen.cli.main import cli

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "SPEC.md"


@pytest.mark.skipif(not SPEC.exists(), reason="SPEC.md is not beside this checkout")
def test_spec_full_example_validates_and_plans(tmp_path: Path) -> None:
    blocks = re.findall(r"```ya?ml\n(.*?)```", SPEC.read_text(), re.S)
    full = next(b for b in blocks if b.startswith("version: 1"))
    (tmp_path / "data").mkdir()
    shutil.copy(ROOT / "scenarios" / "data" / "prompts.jsonl", tmp_path / "data")
    (tmp_path / "peak.yaml").write_text(full)
    result = CliRunner().invoke(cli, ["plan", str(tmp_path / "peak.yaml")])
    assert result.exit_code == 0, result.output
    for phase in ("warmup", "ramp", "peak", "soak"):
        assert phase in result.output
    assert "3650" in result.output
