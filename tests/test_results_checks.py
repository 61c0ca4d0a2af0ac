"""Results files are checked when read (issue 10.4): a corrupt histogram, negative or
inconsistent counts, or a phase that ends before it starts is refused by `report` and
`compare` with exit 2 and a message naming the scope and the field — never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from test_report_samples import build_results

from llmscen.cli import exitcodes
from llmscen.cli.main import cli


def scope(data: dict[str, Any]) -> dict[str, Any]:
    return data["scopes"][1]


Mutation = Callable[[dict[str, Any]], None]
CORRUPT: dict[str, tuple[Mutation, str]] = {
    "histogram": (lambda d: scope(d)["histograms"].update(latency="HISTFAAAAnotbase64!!"),
                  "histograms.latency: not a readable HDR histogram"),
    "truncated histogram": (lambda d: scope(d)["histograms"].update(
        ttft=scope(d)["histograms"]["ttft"][:40]), "histograms.ttft: not a readable"),
    "negative": (lambda d: scope(d)["counters"].update(requests=-5, ok=-5),
                 "counters: requests is -5, a count cannot be negative"),
    "inconsistent": (lambda d: scope(d)["counters"].update(ok=scope(d)["counters"]["ok"] + 7),
                     "but ok + errors + check_failures is"),
    "backwards phase": (lambda d: d["phases"][1].update(ended=d["phases"][1]["started"] - 1),
                        "phases[1] (ramp): ended"),
    "zero wall": (lambda d: d["phases"][1].update(ended=d["phases"][1]["started"]),
                  "requests in a wall time of 0s"),
    "negative series": (lambda d: d["series"]["scopes"][0]["points"][0].update(ok=-1),
                        "t=0: ok is -1"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
@pytest.mark.parametrize("command", ["report", "compare"])
def test_a_corrupt_results_file_is_refused_clearly(tmp_path: Path, case: str,
                                                   command: str) -> None:
    good = tmp_path / "good.json"
    build_results().save(good)
    data = orjson.loads(good.read_bytes())
    mutate, message = CORRUPT[case]
    mutate(data)
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps(data))
    args = ["report", str(bad), "--html", str(tmp_path / "r.html")] if command == "report" \
        else ["compare", str(good), str(bad)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == exitcodes.INVALID_INPUT, result.output
    assert message in result.output, result.output
    assert "scopes[1] (phase warmup, request short, target main)" in result.output \
        or "phases[1]" in result.output or "scopes[3] (phase ramp" in result.output \
        or "series.scopes[0]" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    build_results().save(good)
    bad = tmp_path / "bad.json"
    bad.write_bytes(good.read_bytes()[:500])
    result = CliRunner().invoke(cli, ["report", str(bad)])
    assert result.exit_code == exitcodes.INVALID_INPUT
    assert "not valid JSON" in result.output


def test_a_sound_file_passes(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    build_results().save(good)
    result = CliRunner().invoke(cli, ["report", str(good), "--html", str(tmp_path / "r.html")])
    assert result.exit_code == exitcodes.OK, result.output
