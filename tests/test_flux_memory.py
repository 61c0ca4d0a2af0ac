"""scenarios/flux-memory.yaml on a real Triton server: memory per image grows linearly with the
batch size (issue 12), and a planted quadratic growth fails the fit, shown in JUnit and HTML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.metrics.results import RunResults

pytest.importorskip("tritonclient")
pytest.importorskip("pytriton")
ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.triton]
MB = 1e6


def run(tmp_path: Path, growth: str) -> tuple[int, str, RunResults]:
    result = CliRunner().invoke(cli, [
        "run", str(ROOT / "scenarios/flux-memory.yaml"), "--out", str(tmp_path), "--quiet",
        "--workers", "1", "--set", f"services.triton.options.memory_growth={growth}"])
    return result.exit_code, result.output, RunResults.load(tmp_path / "results.json")


def fit_case(tmp_path: Path) -> ET.Element:
    return next(c for c in ET.parse(tmp_path / "junit.xml").iter("testcase")
                if c.get("name", "").startswith("fit service.triton.rss.max"))


def test_memory_grows_linearly_with_the_batch(tmp_path: Path) -> None:
    code, output, results = run(tmp_path, "linear")
    fit = next(s.fit for s in results.slos if s.fit is not None)
    assert [(p.phase, p.x) for p in fit.points] == [
        ("flux-batch-1", 1), ("flux-batch-2", 2), ("flux-batch-4", 4), ("flux-batch-8", 8)]
    # every step sent batches of its size: images = batch × requests
    for p in fit.points:
        scope = next(s for s in results.scopes if s.phase == p.phase and s.request == "images")
        assert scope.counters.images == p.x * scope.counters.ok > 0
    # the server really held 16 MB per image in flight (one request at a time)
    assert fit.slope is not None and fit.r2 is not None
    assert 12 * MB < fit.slope < 24 * MB, fit
    assert fit.r2 >= 0.99, fit
    assert fit_case(tmp_path).find("failure") is None
    assert "least-squares line" in (tmp_path / "report.html").read_text()
    assert code == exitcodes.OK, output


def test_a_quadratic_leak_fails_the_fit_with_the_fit_shown(tmp_path: Path) -> None:
    code, output, results = run(tmp_path, "quadratic")
    assert code == exitcodes.ASSERTIONS_FAILED, output
    slo = next(s for s in results.slos if s.fit is not None)
    assert slo.passed is False and slo.fit is not None and slo.fit.slope is not None
    assert slo.fit.slope > 40 * MB   # 16 MB × batch², fitted by a line: ~9× steeper
    failure = fit_case(tmp_path).find("failure")
    assert failure is not None
    text = failure.get("message", "") + (failure.text or "")
    assert "R² 0." in text and "slope " in text and "above 40MB" in text, text
    assert "(1: " in text and "8: " in text, text   # the points themselves
    page = (tmp_path / "report.html").read_text()
    assert "least-squares line" in page and "flux-batch-8" in page and "Residual" in page
