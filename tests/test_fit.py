"""Parameter sweeps (`sweep: {vars: ...}`) and `fit:` SLOs: the least-squares maths, the
compile-time checks, and the verdict of a fit re-judged from saved results (openai-sim)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import assume, given
from hypothesis import strategies as st

from llmscen.assertions.fit import least_squares
from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults
from llmscen.testing.run import load_scenario

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
xs_strategy = st.lists(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False), min_size=2,
                       max_size=12).filter(lambda xs: max(xs) - min(xs) > 1e-3)


@given(xs_strategy, finite, finite)
def test_an_exact_line_is_found_with_r2_one(xs: list[float], intercept: float,
                                            slope: float) -> None:
    # a rise lost in the intercept's rounding is no line to find
    assume(slope == 0 or abs(slope) * (max(xs) - min(xs)) > 1e-6 * max(1.0, abs(intercept)))
    line = least_squares(xs, [intercept + slope * x for x in xs])
    scale = max(1.0, abs(intercept), abs(slope) * max(abs(x) for x in xs))
    assert line.slope == pytest.approx(slope, rel=1e-6, abs=1e-6 * scale)
    assert line.intercept == pytest.approx(intercept, rel=1e-6, abs=1e-6 * scale)
    assert line.r2 == pytest.approx(1.0, abs=1e-6)


@given(xs_strategy.flatmap(lambda xs: st.tuples(
    st.just(xs), st.lists(finite, min_size=len(xs), max_size=len(xs)))))
def test_r2_is_a_fraction_and_residuals_balance(data: tuple[list[float], list[float]]) -> None:
    xs, ys = data
    line = least_squares(xs, ys)
    assert 0.0 <= line.r2 <= 1.0
    # the least-squares line goes through the means, so its residuals sum to zero
    residuals = [y - line.intercept - line.slope * x for x, y in zip(xs, ys, strict=True)]
    assert abs(math.fsum(residuals)) <= 1e-6 * max(1.0, *(abs(y) for y in ys)) * len(xs)


def test_a_parabola_is_a_poorer_line_than_a_line() -> None:
    xs = [1.0, 2.0, 4.0, 8.0]
    quadratic = least_squares(xs, [100 + 16 * x * x for x in xs])
    assert quadratic.r2 == pytest.approx(0.9621, abs=1e-3)   # 4 points still look linear-ish
    assert quadratic.slope == pytest.approx(16 * 266.25 / 28.75)   # 9.26× the per-unit cost
    assert least_squares([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]).r2 == 1.0   # flat: fits exactly
    with pytest.raises(ValueError):
        least_squares([2.0, 2.0], [1.0, 3.0])


SIM = """version: 1
services:
  sim: {builtin: openai-sim, options: {ttft: 5ms, itl: 1ms, output_tokens: 8}}
targets:
  chat: {plugin: openai, service: sim, model: sim-model, timeout: 10s}
phases:
  - name: grow
    users: 1
    duration: 1s
    sweep: {vars: {batch: [1, 2, 4]}}
  - {name: users, duration: 1s, sweep: {users: [1, 2]}, mix: [plain]}
requests:
  - name: sized
    target: chat
    body: {messages: [{role: user, content: "{{ 'x ' * batch }}"}],
           max_tokens: "{{ batch }}"}
  - {name: plain, target: chat, body: {messages: [{role: user, content: hi}]}}
"""


def write(tmp_path: Path, text: str, slos: str = "") -> Path:
    path = tmp_path / "fit.yaml"
    path.write_text(text + (f"slos:\n{slos}" if slos else ""))
    return path


def test_a_parameter_sweep_makes_one_phase_per_value_with_the_value_set(tmp_path: Path) -> None:
    plan = load_scenario(write(tmp_path, SIM))
    steps = [p for p in plan.phases if p.sweep == "grow"]
    assert [(p.name, p.kind, p.users, p.vars) for p in steps] == [
        ("grow-1", "closed", 1, {"batch": 1}), ("grow-2", "closed", 1, {"batch": 2}),
        ("grow-4", "closed", 1, {"batch": 4})]
    assert [p.vars for p in plan.phases if p.sweep == "users"] == [{"users": 1}, {"users": 2}]


def validate(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["validate", str(path)])
    return result.exit_code, result.output


@pytest.mark.parametrize(("slo", "line_col", "message"), [
    ("  - {fit: service.sim.rss.max, over: batch, sweep: grwo, linear: {r2: 0.9}}",
     ":19:52:", "unknown sweep 'grwo'; did you mean 'grow'?"),
    ("  - {fit: service.sim.rsss.max, over: batch, linear: {r2: 0.9}}",
     ":19:11:", "unknown resource metric 'service.sim.rsss'"),
    ("  - {fit: latency.p95, over: size, linear: {r2: 0.9}}",
     ":19:30:", "no sweep varies 'size' (sweeps vary: batch, users)"),
    ("  - {fit: latency.p95, over: users, linear: {r2: 0.9}}",
     ":19:30:", "sweep 'users' has 2 steps; a fit needs at least 3 values of 'users'"),
    ("  - {fit: latency.p95, over: batch, sweep: users, linear: {r2: 0.9}}",
     ":19:30:", "sweep 'users' varies users, not 'batch'"),
    ("  - {fit: service.sim.rss.max, over: batch, linear: {slope: 1MB..2ms}}",
     ":19:67:", "unit 'ms' does not fit service.sim.rss, which is a size"),
    ("  - {fit: latency.p95, over: batch, linear: {slope: 5..10ms}}",
     ":19:53:", "latency is a duration and its threshold needs a unit"),
    ("  - {fit: latency, over: batch, linear: {r2: 0.9}}",
     ":19:11:", "latency is a distribution: add a statistic"),
    ("  - {fit: latency.p95, over: batch, linear: {}}",
     ":19:45:", "`linear:` asserts `r2:`, `slope:` or both"),
    ("  - {fit: latency.p95, over: batch, linaer: {r2: 0.9}}",
     ":19:37:", "unknown key 'linaer'; did you mean 'linear'? (valid keys: fit, linear, over, "
                "sweep)"),
])
def test_a_bad_fit_is_an_error_at_its_place(tmp_path: Path, slo: str, line_col: str,
                                            message: str) -> None:
    code, output = validate(write(tmp_path, SIM, slo + "\n"))
    assert code == exitcodes.INVALID_INPUT, output
    lines = [line for line in output.splitlines() if line_col in line]
    assert lines and message in lines[0], output
    assert "1 problem found" in output or "linaer" in slo, output   # one mistake, one message


def test_a_template_reading_a_sweep_value_elsewhere_is_an_error(tmp_path: Path) -> None:
    code, output = validate(write(tmp_path, SIM.replace(", mix: [plain]", "")))
    assert code == exitcodes.INVALID_INPUT
    assert ":13:5: request 'sized' reads 'batch', which only the steps of a sweep over " \
           "'batch' set, but phase 'users' sends it too" in output, output


@pytest.mark.slow
def test_a_fit_is_judged_from_saved_results_as_its_own_case(tmp_path: Path) -> None:
    run = CliRunner().invoke(cli, ["run", str(write(tmp_path, SIM)), "--out",
                                   str(tmp_path / "out"), "--quiet", "--workers", "1"])
    assert run.exit_code == exitcodes.OK, run.output
    saved = tmp_path / "out" / "results.json"
    results = RunResults.load(saved)
    assert {p.name: p.vars for p in results.phases if p.sweep == "grow"} == {
        "grow-1": {"batch": 1}, "grow-2": {"batch": 2}, "grow-4": {"batch": 4}}
    # the template saw the value: max_tokens followed the batch
    tokens = {p: aggregate(results, p, "sized").value("output_tokens", "max")
              for p in ("grow-1", "grow-2", "grow-4")}
    assert tokens == {"grow-1": 1, "grow-2": 2, "grow-4": 4}
    # plant a memory series per step: linear, then quadratic in the batch
    raw = orjson.loads(saved.read_bytes())
    for growth, expected in (("linear", exitcodes.OK), ("quadratic", exitcodes.ASSERTIONS_FAILED)):
        raw["series"]["resources"] = [s for s in raw["series"]["resources"]
                                      if s["name"] != "service.sim.rss"] + [
            {"name": "service.sim.rss", "phase": f"grow-{b}",
             "points": [[i, 100e6 + 16e6 * (b if growth == "linear" else b * b) + i * 1e5]
                        for i in range(3)]} for b in (1, 2, 4)]
        planted = tmp_path / f"{growth}.json"
        planted.write_bytes(orjson.dumps(raw))
        slos = tmp_path / "slos.yaml"
        slos.write_text("slos:\n  - fit: service.sim.rss.max\n    over: batch\n"
                        "    linear: {r2: 0.99, slope: 8MB..40MB}\n")
        junit, html = tmp_path / f"{growth}.xml", tmp_path / f"{growth}.html"
        report = CliRunner().invoke(cli, ["report", str(planted), "--slos", str(slos),
                                          "--junit", str(junit), "--html", str(html)])
        assert report.exit_code == expected, report.output
        case = next(c for c in ET.parse(junit).iter("testcase")
                    if c.get("name", "").startswith("fit service.sim.rss.max"))
        failure = case.find("failure")
        page = html.read_text()
        assert "least-squares line" in page and "grow-4" in page
        if growth == "linear":
            assert failure is None
            assert "slope 16MB per batch" in page and "R² 1.0000" in page
        else:
            assert failure is not None
            text = failure.get("message", "") + (failure.text or "")
            assert "slope 82.3MB per batch" in text and "R² 0.9796" in text, text
            assert "FAILED: R² 0.9796 < 0.99; slope 82.3MB above 40MB" in text, text
