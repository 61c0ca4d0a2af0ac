"""`llmscen compare`: direction-aware deltas between two saved runs."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_report_samples import build_results

from llmscen.cli.main import cli
from llmscen.metrics.results import RunResults
from llmscen.report.compare import (
    Comparison,
    Delta,
    compare,
    delta,
    format_change,
    relative_change,
)


@pytest.fixture(scope="module")
def base() -> RunResults:
    return build_results()


def find(comparison: Comparison, scope: str, name: str) -> Delta:
    return next(d for d in comparison.deltas if d.scope == scope and d.name == name)


def test_a_planted_30_percent_p95_regression_is_flagged(base: RunResults) -> None:
    slower = build_results(itl_ms=12.0 * 1.3, ttft_ms=80.0 * 1.3)
    comparison = compare(base, slower, 0.10)
    p95 = find(comparison, "overall", "latency.p95")
    assert p95.change == pytest.approx(0.30, abs=0.01)
    assert p95.regression
    assert find(comparison, "phase steady", "latency.p95").regression
    assert find(comparison, "request chat", "itl.p95").regression
    assert not find(comparison, "overall", "throughput").regression
    assert not compare(base, slower, 0.35).regressions


def test_an_identical_rerun_passes(base: RunResults) -> None:
    comparison = compare(base, build_results(), 0.10)
    assert comparison.regressions == []
    assert all(d.change == 0 for d in comparison.deltas)
    assert comparison.scopes() == ["overall", "phase warmup", "phase ramp", "phase steady",
                                   "request chat", "request short"]


def test_lower_throughput_is_worse_and_higher_is_better(base: RunResults) -> None:
    slower = compare(base, build_results(rate=14.0), 0.10)
    assert find(slower, "overall", "throughput").regression
    assert find(slower, "overall", "output_token_throughput").regression
    faster = compare(base, build_results(rate=30.0), 0.10)
    tp = find(faster, "overall", "throughput")
    assert (tp.change or 0) > 0.4 and tp.improved and not tp.regression


def test_faster_latency_is_an_improvement(base: RunResults) -> None:
    comparison = compare(base, build_results(itl_ms=6.0), 0.10)
    p95 = find(comparison, "overall", "latency.p95")
    assert (p95.change or 0) < -0.3 and p95.improved and not p95.regression


def test_errors_appearing_regress_at_any_bound(base: RunResults) -> None:
    comparison = compare(base, build_results(errors_every=50), 5.0)
    rate = find(comparison, "overall", "error_rate")
    assert rate.change == math.inf and rate.regression
    assert format_change(rate.change) == "new"


def test_scopes_in_only_one_run_are_listed_not_compared(base: RunResults) -> None:
    other = build_results(phases=(("warmup", 2.0, True), ("ramp", 4.0, False),
                                  ("burst", 6.0, False)))
    comparison = compare(base, other, 0.1)
    assert comparison.only_base == ["phase steady"]
    assert comparison.only_new == ["phase burst"]
    assert "phase steady" not in comparison.scopes()


def test_delta_arithmetic() -> None:
    assert relative_change(None, 1.0) is None
    assert relative_change(0.0, 0.0) == 0.0
    assert relative_change(2.0, 3.0) == pytest.approx(0.5)
    unknown = delta("overall", "latency", "p95", None, 1.0, 0.1)
    assert not unknown.regression and format_change(unknown.change) == "n/a"
    assert format_change(-0.123) == "−12.3%"
    at_bound = delta("overall", "latency", "p95", 1.0, 1.1, 0.1)
    assert at_bound.worse and not at_bound.regression   # "exceeds" the bound, not "reaches"


def test_cli_exit_codes_table_and_html(base: RunResults, tmp_path: Path) -> None:
    base_file, new_file, same_file = (tmp_path / n for n in ("base.json", "new.json",
                                                               "same.json"))
    base.save(base_file)
    build_results(itl_ms=12.0 * 1.3, ttft_ms=80.0 * 1.3).save(new_file)
    build_results().save(same_file)
    runner = CliRunner()
    html = tmp_path / "compare.html"
    result = runner.invoke(cli, ["compare", str(base_file), str(new_file), "--html", str(html)])
    assert result.exit_code == 1, result.output
    assert "REGRESSED:" in result.output
    row = next(line for line in result.output.splitlines() if "latency.p95" in line)
    assert re.search(r"\+(29|30)\.\d%", row) and row.rstrip().endswith("REGRESSED")
    page = html.read_text()
    assert "REGRESSED" in page and "://" not in page.replace("&#34;", "")

    result = runner.invoke(cli, ["compare", str(base_file), str(same_file)])
    assert result.exit_code == 0, result.output
    assert "NO REGRESSION" in result.output

    result = runner.invoke(cli, ["compare", str(base_file), str(new_file),
                                 "--max-regression", "50%"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("args", [["--max-regression", "ten"], ["--max-regression", "-5%"]])
def test_cli_bad_bound_exits_2(base: RunResults, tmp_path: Path, args: list[str]) -> None:
    base.save(tmp_path / "b.json")
    result = CliRunner().invoke(cli, ["compare", str(tmp_path / "b.json"),
                                      str(tmp_path / "b.json"), *args])
    assert result.exit_code == 2


def test_cli_missing_file_exits_2(base: RunResults, tmp_path: Path) -> None:
    base.save(tmp_path / "b.json")
    proc = subprocess.run([sys.executable, "-m", "llmscen.cli.main", "compare",
                           str(tmp_path / "b.json"), str(tmp_path / "nope.json")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "nope.json: No such file or directory" in proc.stderr
    assert "Traceback" not in proc.stderr
