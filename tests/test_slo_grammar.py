"""The SLO grammar: parsing, kind checks, error columns, round-trips, the doc."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmscen.compile.plan import SLOPlan
from llmscen.compile.slo import (
    OPS,
    SLOExpr,
    SLOSyntaxError,
    catalog_markdown,
    format_slo,
    parse_slo,
)
from llmscen.spec.metrics import CATALOG, HISTOGRAM_KINDS, PLAIN_STATS

DOC = Path(__file__).resolve().parent.parent / "docs" / "slo.md"


@pytest.mark.parametrize(("text", "expected"), [
    ("latency.p95 < 5s", SLOExpr("latency", "p95", "<", 5.0)),
    ("latency.mean < 2s", SLOExpr("latency", "mean", "<", 2.0)),
    ("error_rate < 1%", SLOExpr("error_rate", None, "<", 0.01)),
    ("error_rate < 0.01", SLOExpr("error_rate", None, "<", 0.01)),
    ("throughput > 50/min", SLOExpr("throughput", None, ">", 50 / 60)),
    ("throughput > 50", SLOExpr("throughput", None, ">", 50.0)),
    ("throughput >= 2/s", SLOExpr("throughput", None, ">=", 2.0)),
    ("ttft.p99.9 <= 500ms", SLOExpr("ttft", "p99.9", "<=", 0.5)),
    ("ttft.p99 < 500ms", SLOExpr("ttft", "p99", "<", 0.5)),
    ("output_tokens.mean >= 100", SLOExpr("output_tokens", "mean", ">=", 100.0)),
    ("chunks.min == 128", SLOExpr("chunks", "min", "==", 128.0)),
    ("itl.p50<12ms", SLOExpr("itl", "p50", "<", 0.012)),
    ("  itl.p50   <  12 ms  ", SLOExpr("itl", "p50", "<", 0.012)),
    ("latency.p99 < 1.5m", SLOExpr("latency", "p99", "<", 90.0)),
    ("schedule_lag.max < 250us", SLOExpr("schedule_lag", "max", "<", 250e-6)),
    ("latency.count > 1000", SLOExpr("latency", "count", ">", 1000.0)),
    ("success_rate >= 99.5%", SLOExpr("success_rate", None, ">=", 0.995)),
    ("latency.p100 < 1e1s", SLOExpr("latency", "p100", "<", 10.0)),
])
def test_parses(text: str, expected: SLOExpr) -> None:
    assert parse_slo(text) == expected


def test_percent_matches_the_unit_parser() -> None:
    # 7 * 0.01 != 7 / 100 in floats; the grammar and units.parse_percent must agree.
    assert parse_slo("error_rate < 7%").threshold == 0.07


def test_fields_match_slo_plan() -> None:
    expr = parse_slo("ttft.p99 < 500ms")
    plan = SLOPlan(text="ttft.p99 < 500ms", metric=expr.metric, stat=expr.stat, op=expr.op,
                   threshold=expr.threshold)
    assert plan.threshold == 0.5


@pytest.mark.parametrize(("text", "column", "message"), [
    ("latency < 5s", 0, "latency is a distribution: add a statistic, e.g. latency.p95"),
    ("ttft <= 500ms", 0, "ttft is a distribution: add a statistic, e.g. ttft.p95"),
    ("throughput.p95 > 5", 10, "throughput is a rate over the scope and takes no statistic"),
    ("error_rate.mean < 1%", 10, "error_rate is a ratio over the scope and takes no statistic"),
    ("latncy.p95 < 5s", 0, "unknown metric 'latncy'; did you mean latency?"),
    ("Latency.p95 < 5s", 0, "did you mean latency?"),
    ("zzz.p95 < 5s", 0, "unknown metric 'zzz'; known: latency, latency_sent"),
    ("latency.q95 < 5s", 8, "unknown statistic 'q95' for latency; valid: min max mean stdev "
                            "count pNN"),
    ("latency.p999 < 5s", 8, "unknown statistic 'p999'"),
    ("latency. < 5s", 8, "expected a statistic after '.'"),
    ("latency.p95 = 5s", 12, "use == for equality"),
    ("latency.p95 != 5s", 12, "'not equal' is not supported"),
    ("latency.p95 5s", 12, "expected a comparison (< <= > >= ==), got '5s'"),
    ("latency.p95", 11, "got the end of the SLO"),
    ("latency.p95 <", 13, "expected a threshold such as 5s or 500ms, got nothing"),
    ("latency.p95 < -1s", 14, "expected a threshold such as 5s or 500ms, got '-1s'"),
    ("latency.p95 < 5%", 15, "unit '%' does not fit latency, which is a duration"),
    ("latency.p95 < 5/s", 15, "unit '/s' does not fit latency"),
    ("latency.p95 < 5 parsecs", 16, "unknown unit 'parsecs' for latency"),
    ("error_rate < 5s", 14, "unit 's' does not fit error_rate, which is a fraction; use %"),
    ("error_rate < 50", 13, "error_rate is a fraction and 50 means 5000 %: write 50%"),
    ("error_rate < 1", 13, "error_rate is a fraction and 1 means 100 %: write 1% or 100%"),
    ("success_rate >= 1.0", 16, "success_rate is a fraction and 1.0 means 100 %: write 1.0% "
                                "or 100%"),
    ("error_rate < 101", 13, "error_rate is a fraction between 0 and 1 (0% to 100%)"),
    ("latency.p95 < 2000", 14, "latency is a duration and its threshold needs a unit: write "
                               "2000ms or 2s"),
    ("ttft.p99 < 0.5", 11, "ttft is a duration and its threshold needs a unit: write 0.5s or "
                           "500ms"),
    ("itl.p50 < 0", 10, "itl is a duration and its threshold needs a unit: write 0s"),
    ("error_rate < 150%", 13, "error_rate is a fraction between 0 and 1"),
    ("throughput > 5%", 14, "unit '%' does not fit throughput, which is a rate; use /s"),
    ("throughput > 5ms", 14, "unit 'ms' does not fit throughput"),
    ("output_tokens.mean > 5s", 22, "output_tokens is a count and takes no unit, got 's'"),
    ("chunks.p50 > 5%", 14, "chunks is a count and takes no unit"),
    ("latency.count > 5s", 17, "latency.count is a count and takes no unit"),
    ("latency.p95 < 5s and more", 17, "unexpected 'and more' after the threshold"),
    ("throughput > 1e999", 13, "threshold '1e999' is too large"),
    ("", 0, "empty SLO"),
    ("   ", 0, "empty SLO"),
    ("  95 < 5s", 2, "expected a metric name such as latency"),
])
def test_errors_name_the_problem_and_its_column(text: str, column: int, message: str) -> None:
    with pytest.raises(SLOSyntaxError) as info:
        parse_slo(text)
    assert message in info.value.message
    assert info.value.column == column
    assert str(info.value) == info.value.message


def test_error_is_a_value_error() -> None:
    # so pydantic validators that call parse_slo turn it into a validation error
    assert issubclass(SLOSyntaxError, ValueError)


def test_non_string_is_a_syntax_error() -> None:
    with pytest.raises(SLOSyntaxError, match="must be a string"):
        parse_slo(42)  # type: ignore[arg-type]


def test_format_is_canonical() -> None:
    assert format_slo(parse_slo("throughput>50/min")) == "throughput > 50/min"
    assert format_slo(parse_slo("ttft.p99.9<=500ms")) == "ttft.p99.9 <= 0.5s"
    assert format_slo(parse_slo("success_rate >= 100%")) == "success_rate >= 100%"
    assert format_slo(SLOExpr("latency", "p95", "<", 5e-324)) == "latency.p95 < 5e-324s"
    assert format_slo(parse_slo("itl.p50 < 12 ms")) == "itl.p50 < 12ms"
    assert format_slo(parse_slo("error_rate < 0.01")) == "error_rate < 1%"
    assert format_slo(parse_slo("output_tokens.mean >= 100")) == "output_tokens.mean >= 100"
    assert format_slo(parse_slo("latency.p99 < 90m")) == "latency.p99 < 1.5h"


# --- property tests ---------------------------------------------------------------------

_STATS = st.one_of(
    st.sampled_from(PLAIN_STATS),
    st.integers(0, 99).map(lambda n: f"p{n}"),
    st.tuples(st.integers(0, 99), st.integers(0, 9999)).map(lambda t: f"p{t[0]}.{t[1]}"),
    st.just("p100"),
)


@st.composite
def slo_exprs(draw: st.DrawFn) -> SLOExpr:
    metric = draw(st.sampled_from(sorted(CATALOG)))
    kind = CATALOG[metric].kind
    stat = draw(_STATS) if kind in HISTOGRAM_KINDS else None
    op = draw(st.sampled_from(OPS))
    if kind == "ratio":
        threshold = draw(st.floats(0.0, 1.0))
    else:
        threshold = draw(st.floats(0.0, 1e12) | st.integers(0, 10**6).map(float))
    return SLOExpr(metric, stat, op, threshold)  # type: ignore[arg-type]


@given(slo_exprs())
def test_format_then_parse_round_trips(expr: SLOExpr) -> None:
    assert parse_slo(format_slo(expr)) == expr


_UNITS = ["", "s", "ms", "us", "µs", "m", "min", "h", "%", "/s", "/min", "/h", "/sec", "/m"]


@given(st.sampled_from(sorted(CATALOG)), st.none() | _STATS, st.sampled_from(OPS),
       st.floats(0, 1e6, allow_nan=False), st.sampled_from(_UNITS), st.booleans())
def test_written_text_parses_or_fails_cleanly(metric: str, stat: str | None, op: str,
                                              number: float, unit: str, spaced: bool) -> None:
    sep = " " if spaced else ""
    text = f"{metric}{'' if stat is None else '.' + stat}{sep}{op}{sep}{number!r}{unit}"
    try:
        expr = parse_slo(text)
    except SLOSyntaxError as err:
        assert 0 <= err.column <= len(text)
        return
    assert expr.metric == metric and expr.stat == stat and expr.op == op
    assert math.isfinite(expr.threshold) and expr.threshold >= 0
    assert parse_slo(format_slo(expr)) == expr


@given(st.sampled_from([m for m in sorted(CATALOG) if CATALOG[m].kind == "duration"]),
       _STATS.filter(lambda s: s != "count"), st.sampled_from(OPS),
       st.floats(0, 1e9, allow_nan=False) | st.integers(0, 10**9))
def test_a_bare_number_on_a_duration_is_refused_with_both_readings(
        metric: str, stat: str, op: str, number: float) -> None:
    written = repr(number)
    with pytest.raises(SLOSyntaxError) as info:
        parse_slo(f"{metric}.{stat} {op} {written}")
    assert "needs a unit: write " in info.value.message
    suggested = info.value.message.split("write ", 1)[1].split(" or ")
    for text in suggested:   # every suggestion parses, and to one of the two readings
        value = parse_slo(f"{metric}.{stat} {op} {text}").threshold
        assert math.isclose(value, number, rel_tol=1e-12) or \
            math.isclose(value, number / 1000, rel_tol=1e-12)
    # the count of samples is a plain number whatever the metric
    assert parse_slo(f"{metric}.count {op} {written}").threshold == float(number)


@given(st.sampled_from([m for m in sorted(CATALOG) if CATALOG[m].kind == "ratio"]),
       st.sampled_from(OPS), st.floats(1, 1e6) | st.integers(1, 10**6))
def test_a_bare_ratio_of_one_or_more_is_refused(metric: str, op: str, number: float) -> None:
    with pytest.raises(SLOSyntaxError, match=f"^{metric} is a fraction"):
        parse_slo(f"{metric} {op} {number!r}")


_ALPHABET = st.sampled_from([*"latency.p95<>=!% /sminuµh0123456789e+-_.\t\n", "é", "\x00"])


@given(st.text() | st.text(_ALPHABET))
def test_arbitrary_text_only_raises_slo_syntax_error(text: str) -> None:
    try:
        expr = parse_slo(text)
    except SLOSyntaxError as err:
        assert 0 <= err.column <= len(text)
    else:
        assert parse_slo(format_slo(expr)) == expr


# --- the document -----------------------------------------------------------------------

def test_doc_metric_table_is_generated_from_the_catalog() -> None:
    doc = DOC.read_text(encoding="utf-8")
    start = doc.index("<!-- metrics:start -->\n") + len("<!-- metrics:start -->\n")
    end = doc.index("<!-- metrics:end -->")
    assert doc[start:end] == catalog_markdown(), (
        "docs/slo.md is out of date; regenerate its metric table with "
        "python -c 'from llmscen.compile.slo import catalog_markdown; print(catalog_markdown())'")
    for name in CATALOG:
        assert f"| `{name}` |" in doc


def test_doc_examples_parse() -> None:
    doc = DOC.read_text(encoding="utf-8")
    block = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    for line in block.splitlines():
        item = line.strip().removeprefix("- ").split("#")[0].strip()
        if item.startswith("{assert:"):
            item = item.removeprefix("{assert:").split(",")[0].strip()
        if item and item != "slos:":
            parse_slo(item)


def test_doc_error_table_is_what_the_parser_says() -> None:
    doc = DOC.read_text(encoding="utf-8")
    table = doc.split("## Errors", 1)[1].split("##", 1)[0]
    rows = [r for r in table.splitlines() if r.startswith("| `")]
    assert len(rows) >= 5
    for row in rows:
        text = row.split("`")[1]
        told = row.split(" | ", 1)[1].rstrip(" |")
        with pytest.raises(SLOSyntaxError) as info:
            parse_slo(text)
        assert info.value.message == told, text
