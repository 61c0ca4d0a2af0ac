"""`--out`: a folder, or k6-style `FORMAT=FILE` — never a folder named `json=r.json`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmscen.cli import exitcodes
from llmscen.cli.failure import Failure
from llmscen.cli.main import cli
from llmscen.cli.run import Outputs
from llmscen.metrics.results import RunResults

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("outs", "flags", "expected"), [
    (("out",), {}, Outputs(folder="out")),
    (("json=r.json",), {}, Outputs(json="r.json")),
    (("out", "results=r.json", "xml=j.xml", "report=r.html", "md=s.md"), {},
     Outputs(folder="out", json="r.json", junit="j.xml", html="r.html", summary="s.md")),
    (("./a=b",), {}, Outputs(folder="./a=b")),
    (("JSON=r.json",), {"json": "r.json"}, Outputs(json="r.json")),
])
def test_out_values(outs: tuple[str, ...], flags: dict[str, str], expected: Outputs) -> None:
    assert Outputs.parse(outs, **flags) == expected


@pytest.mark.parametrize(("outs", "flags", "message"), [
    (("influxdb=http://127.0.0.1:8086",), {}, "llmscen writes no 'influxdb' output"),
    (("csv=r.csv",), {}, "FORMAT one of json, junit, html, summary"),
    (("json=",), {}, "name the file, e.g. --out json=r.json"),
    (("a", "b"), {}, "--out names two folders"),
    (("json=a.json",), {"json": "b.json"}, "the json file is already 'b.json'"),
])
def test_out_mistakes_are_refused_with_a_hint(outs: tuple[str, ...], flags: dict[str, str],
                                              message: str) -> None:
    with pytest.raises(Failure, match=message.replace("(", r"\(").replace(".", r"\.")) as info:
        Outputs.parse(outs, **flags)
    assert info.value.exit_code == exitcodes.INVALID_INPUT


def test_a_refused_out_sends_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["run", str(ROOT / "scenarios/smoke.yaml"),
                                      "--out", "influxdb=http://127.0.0.1:8086"])
    assert result.exit_code == exitcodes.INVALID_INPUT
    assert "--out DIR is the output folder" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_k6_style_out_writes_the_file_where_asked(tmp_path: Path) -> None:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = CliRunner().invoke(cli, [
            "run", str(ROOT / "scenarios/smoke.yaml"), "-q", "--workers", "1",
            "--set", "phases.0.requests=6", "--out", "folder", "--out", "json=r.json",
            "--out", "junit=j.xml"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "json=r.json").exists()
    assert RunResults.load(tmp_path / "r.json").outcome is not None
    assert (tmp_path / "j.xml").read_text().startswith("<?xml")
    assert sorted(p.name for p in (tmp_path / "folder").iterdir() if p.suffix != ".log") == \
        ["report.html"]
    assert f"wrote {'r.json'}" in result.output
