"""Custom metrics (issue 16.7): a step's `record:` takes a number from each response into the
histogram `custom.NAME`, which SLOs, reports and results read like any other; and the seed-004
style shop plan of scenarios/shop-flows.yaml runs against the test API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.compile.slo import SLOSyntaxError, parse_slo
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "scenarios" / "shop-flows.yaml"
QUICK = ["--set", "phases.0.duration=1s", "--set", "phases.1.duration=3s"]


def run(scenario: Path, out: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["run", str(scenario), "--out", str(out), "--workers", "1",
                                      *QUICK, *args])
    return result.exit_code, result.output


def variant(tmp_path: Path, old: str, new: str) -> Path:
    text = SHOP.read_text()
    assert old in text
    path = tmp_path / "scenarios" / "shop.yaml"     # beside the original: `cwd: ..` holds
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace(old, new).replace("cwd: ..", f"cwd: {ROOT}"))
    return path


@pytest.mark.slow
def test_the_shop_plan_passes_and_its_custom_metric_is_measured(tmp_path: Path) -> None:
    code, output = run(SHOP, tmp_path / "o")
    assert code == exitcodes.OK, output
    results = RunResults.load(tmp_path / "o" / "results.json")
    assert [p.name for p in results.phases] == ["before", "warm up", "shopping", "after"]
    agg = aggregate(results)
    views = aggregate(results, request="view cart")
    cart = aggregate(results, request="add then maybe remove.add")
    # one value per response that had it: every add and every view
    counted = agg.value("custom.cart_size", "count")
    assert counted == views.counters.ok + cart.counters.ok > 0
    low, high = agg.value("custom.cart_size", "min"), agg.value("custom.cart_size", "max")
    assert low is not None and high is not None and 0 <= low <= high
    # the first add of the run (in the warmup) found an empty cart
    first = aggregate(results, request="add then maybe remove.add", include_warmup=True)
    assert first.value("custom.cart_size", "min") == pytest.approx(1, rel=1e-3)
    # the conditional delete ran for some adds, not all (an `if:` over a random draw)
    removes = aggregate(results, request="add then maybe remove.remove").counters.requests
    assert 0 < removes < cart.counters.requests
    html = (tmp_path / "o" / "report.html").read_text()
    assert "custom.cart_size" in html
    assert "custom.cart_size.count" in output


@pytest.mark.slow
def test_a_custom_metric_slo_that_must_fail_does(tmp_path: Path) -> None:
    scenario = variant(tmp_path, "custom.cart_size.max < 500", "custom.cart_size.max < 1")
    code, output = run(scenario, tmp_path / "o")
    assert code == exitcodes.ASSERTIONS_FAILED, output
    assert "FAIL  custom.cart_size.max" in output
    junit = (tmp_path / "o" / "junit.xml").read_text()
    assert "custom.cart_size.max &lt; 1" in junit or "custom.cart_size.max < 1" in junit


@pytest.mark.slow
def test_a_record_that_finds_no_number_is_a_failed_check(tmp_path: Path) -> None:
    scenario = variant(tmp_path, "record: {cart_size: $.count}\n    expect: {status: 200}",
                       "record: {cart_size: $.items}\n    expect: {status: 200}")
    code, output = run(scenario, tmp_path / "o")
    assert code == exitcodes.ASSERTIONS_FAILED, output
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    check = next(c for c in results["checks"]
                 if c["request"] == "view cart" and c["expectation"] == "record")
    assert check["failed"] > 0 and check["passed"] == 0
    assert "record 'cart_size' found" in check["samples"][0]["message"]
    assert "not a number" in check["samples"][0]["message"]


def validate(tmp_path: Path, old: str, new: str) -> str:
    result = CliRunner().invoke(cli, ["validate", str(variant(tmp_path, old, new))])
    assert result.exit_code == exitcodes.INVALID_INPUT, result.output
    return result.output


def test_an_slo_on_a_custom_metric_nobody_records_is_refused_where_it_is(tmp_path: Path) -> None:
    output = validate(tmp_path, "custom.cart_size.count >= 10", "custom.cart_sise.count >= 10")
    assert "shop.yaml:84:5: unknown metric 'custom.cart_sise': no request's `record:` " \
           "declares it (known: custom.cart_size)" in output, output


def test_a_bad_record_name_or_expression_is_refused(tmp_path: Path) -> None:
    output = validate(tmp_path, "record: {cart_size: $.count}\n    expect: {status: 200}",
                      "record: {cart size: $.count, n: count}\n    expect: {status: 200}")
    assert "custom metric name 'cart size'" in output
    assert "shop.yaml:66:14: custom metric name" in output   # view cart's record: line
    assert "did you mean '$.count'?" in output


def test_record_at_the_top_of_a_flow_says_where_it_goes(tmp_path: Path) -> None:
    output = validate(tmp_path, "    weight: 2\n    steps:\n      - name: add",
                      "    weight: 2\n    record: {n: $.count}\n    steps:\n      - name: add")
    assert "`record:` goes inside the step whose response it reads" in output


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True),
       st.sampled_from(["p95", "max", "mean", "count", "p99.9"]),
       st.integers(min_value=0, max_value=10**6))
def test_custom_metric_slos_parse(name: str, stat: str, threshold: int) -> None:
    expr = parse_slo(f"custom.{name}.{stat} < {threshold}")
    assert (expr.metric, expr.stat, expr.threshold) == (f"custom.{name}", stat, threshold)


@pytest.mark.parametrize(("text", "message"), [
    ("custom.x < 3", "is a distribution"),
    ("custom. < 3", "expected the name of a custom metric after 'custom.'"),
    ("custom < 3", "expected the name of a custom metric after 'custom.'"),
])
def test_malformed_custom_metric_slos(text: str, message: str) -> None:
    with pytest.raises(SLOSyntaxError, match=message):
        parse_slo(text)
