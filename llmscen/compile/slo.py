"""SLOs: the grammar of SPEC §6 (`METRIC[.STAT] OP VALUE[UNIT]`) and the `slos:` list.

A hand-written scanner over one short line; the BNF is in docs/slo.md. Every
check against the metric catalog happens here, before any traffic, and each
error carries the 0-based column of the part it is about so the loader can
point at FILE:LINE:COL. `compile_slos` turns a document's `slos:` list into
SLOPlans for both a scenario and `llmscen report --slos`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from pydantic import TypeAdapter, ValidationError

from llmscen.compile.plan import FitPlan, SLOPlan
from llmscen.spec.diagnostics import Diagnostic, did_you_mean, one_of
from llmscen.spec.errors import diagnostics_from
from llmscen.spec.loader import Document, Loc
from llmscen.spec.metrics import (
    CATALOG,
    CUSTOM_PREFIX,
    FAMILY_RE,
    HISTOGRAM_KINDS,
    PLAIN_STATS,
    RESOURCE_ROOTS,
    SAMPLED_STAT_RE,
    SAMPLED_STATS,
    SERVER_STATS,
    STAT_RE,
    WINDOW_METRICS,
    Metric,
    custom_metric,
    lookup,
    parse_labels,
    resource_metric,
    sample_key,
)
from llmscen.spec.models import FitSpec, SLOSpec
from llmscen.spec.units import DURATION_UNITS, RATE_UNITS, SIZE_UNITS

Op = Literal["<", "<=", ">", ">=", "=="]
OPS: tuple[str, ...] = ("<=", ">=", "==", "<", ">")  # two-character ones first

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PART_RE = re.compile(r"[A-Za-z0-9_-]+")     # one dotted part of a resource metric
_LABELS_RE = re.compile(r'\s*(?:[A-Za-z_][A-Za-z0-9_]*\s*=\s*"(?:[^"\\]|\\.)*"\s*'
                        r'(?:,\s*[A-Za-z_][A-Za-z0-9_]*\s*=\s*"(?:[^"\\]|\\.)*"\s*)*,?\s*)?')
_STAT_TOKEN_RE = re.compile(r"[A-Za-z0-9_.]+")
_NUMBER_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_UNIT_RE = re.compile(r"%|/[A-Za-z]*|[A-Za-zµ]+")
_SPACE_RE = re.compile(r"\s*")

# Unit suffix → factor to the base unit, per kind; "" is the bare number. `%` divides
# by 100 instead (see _to_base), as units.parse_percent does: 7 * 0.01 != 7 / 100.
# A duration always has a unit (k6 users write `< 2000` meaning ms), and a bare ratio
# must be below 1 (`error_rate < 1` reads as 100 %).
_UNITS: dict[str, dict[str, float]] = {
    "duration": dict(DURATION_UNITS),
    "amount": {"": 1.0},
    "rate": {"": 1.0, **RATE_UNITS},
    "ratio": {"": 1.0, "%": 100.0},
    "cpu": {"%": 100.0},    # cores; 100% = one core (a bare 80 would read as 80 cores)
    "size": {"": 1.0, **{unit: float(f) for unit, f in SIZE_UNITS.items()}},
    # Prometheus' base units are seconds and bytes: a unit converts to them
    "server": {"": 1.0, "%": 100.0, **DURATION_UNITS,
               **{unit: float(f) for unit, f in SIZE_UNITS.items()}},
}
_EXAMPLES = {"duration": "5s or 500ms", "amount": "a plain number such as 100",
             "rate": "50/s or 300/min", "ratio": "1% or 0.01", "cpu": "80% or 150%",
             "size": "512MB or 2GiB", "server": "10, 500ms or 2GB"}
# Units format_slo may write, preferred first when two texts are equally short.
_FORMAT_UNITS = {"duration": ("s", "ms", "us", "min", "h"), "amount": ("",),
                 "rate": ("/s", "/min", "/h"), "ratio": ("%", ""), "cpu": ("%",),
                 "size": ("GB", "MB", "KB", "GiB", "MiB", "KiB", ""), "server": ("",)}
_BASE_UNITS = {"duration": "s", "amount": "", "rate": "/s", "ratio": "", "cpu": "%",
               "size": "", "server": ""}


class SLOSyntaxError(ValueError):
    """A bad SLO expression; `column` is the 0-based offset of the offending part."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


@dataclass(frozen=True, slots=True)
class SLOExpr:
    """A parsed SLO; the fields match `compile.plan.SLOPlan`."""

    metric: str
    stat: str | None
    op: Op
    threshold: float    # base units: seconds, per second, fraction, count


def parse_slo(text: str) -> SLOExpr:
    """Parse and check one SLO expression, e.g. `latency.p95 < 5s`."""
    return _Parser(text).parse()


def format_slo(expr: SLOExpr) -> str:
    """The canonical text of `expr`; `parse_slo(format_slo(e)) == e`."""
    left = expr.metric if expr.stat is None else f"{expr.metric}.{expr.stat}"
    return f"{left} {expr.op} {_format_threshold(expr.threshold, _value_kind(expr))}"


def stats_for(metric: Metric) -> str:
    """The stats a metric accepts, as shown to users ("" for none)."""
    if metric.sampled:
        stats = SERVER_STATS if metric.kind == "server" else SAMPLED_STATS
        return " ".join(stats) + " pNN (p50 p95 p99 …)"
    if metric.kind not in HISTOGRAM_KINDS:
        return ""
    return " ".join(PLAIN_STATS) + " pNN (p50 p90 p95 p99 p99.9 …)"


def catalog_markdown() -> str:
    """The metric table of docs/slo.md, generated from the catalog."""
    units = {"duration": "`us` `ms` `s` `m` `min` `h`: required",
             "amount": "none: a plain number",
             "rate": "`/s` `/min` `/h`; bare number = per second",
             "ratio": "`%`, or a fraction below 1"}
    rows = ["| metric | kind | stats | units | definition |", "|---|---|---|---|---|"]
    for m in CATALOG.values():
        histogram = m.kind in HISTOGRAM_KINDS
        stats = " ".join(f"`{s}`" for s in (*PLAIN_STATS, "pNN")) if histogram else "none"
        rows.append(f"| `{m.name}` | {m.kind} | {stats} | {units[m.kind]} | {m.description} |")
    return "\n".join(rows) + "\n"


def _value_kind(expr: SLOExpr) -> str:
    # `count` counts samples whatever the metric measures.
    metric = lookup(expr.metric)
    assert metric is not None, expr.metric
    return "amount" if expr.stat == "count" else metric.kind


def _to_base(number: float, kind: str, unit: str) -> float:
    factor = _UNITS[kind][unit]
    return number / factor if unit == "%" else number * factor


def _format_threshold(value: float, kind: str) -> str:
    """The shortest plain-decimal text that parses back to exactly `value`."""
    best: str | None = None
    for unit in _FORMAT_UNITS[kind]:
        if unit == "" and kind == "ratio" and value >= 1:
            continue
        factor = _UNITS[kind][unit]
        amount = value * factor if unit == "%" else value / factor
        for places in range(21):
            text = f"{amount:.{places}f}"
            text = text.rstrip("0").rstrip(".") if "." in text else text
            if _to_base(float(text), kind, unit) == value:
                if best is None or len(text + unit) < len(best):
                    best = text + unit
                break
        else:   # too small for plain decimals: e-notation (a `%`-only kind has no bare form)
            text = repr(amount)
            if kind == "cpu" and _to_base(float(text), kind, unit) == value and best is None:
                best = text + unit
    return best if best is not None else repr(value) + _BASE_UNITS[kind]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> SLOExpr:
        if not isinstance(self.text, str):
            raise SLOSyntaxError(f"an SLO must be a string such as 'latency.p95 < 5s', "
                                 f"got {type(self.text).__name__}", 0)
        self._skip_space()
        if self.pos == len(self.text):
            raise SLOSyntaxError("empty SLO; write it like 'latency.p95 < 5s'", 0)
        metric, metric_col = self._metric()
        stat, stat_col = self._stat()
        self._check_stat(metric, metric_col, stat, stat_col)
        self._skip_space()
        op = self._op()
        self._skip_space()
        kind = "amount" if stat == "count" else metric.kind
        threshold = self._value(metric, kind)
        self._skip_space()
        if self.pos < len(self.text):
            raise SLOSyntaxError(f"unexpected {self.text[self.pos:]!r} after the threshold",
                                 self.pos)
        return SLOExpr(metric.name, stat, op, threshold)

    def _skip_space(self) -> None:
        m = _SPACE_RE.match(self.text, self.pos)
        self.pos = m.end() if m else self.pos

    def _metric(self) -> tuple[Metric, int]:
        start = self.pos
        m = _NAME_RE.match(self.text, start)
        if m is None:
            raise SLOSyntaxError(f"expected a metric name such as latency, got "
                                 f"{self.text[start:start + 10]!r}", start)
        name = m.group()
        if name == "server" and self.text.startswith(".", m.end()):
            return self._server(start), start
        if name in RESOURCE_ROOTS:
            return self._resource(name, start), start
        if name + "." == CUSTOM_PREFIX:
            custom = _NAME_RE.match(self.text, m.end() + 1) \
                if self.text.startswith(".", m.end()) else None
            if custom is None:
                raise SLOSyntaxError("expected the name of a custom metric after 'custom.' "
                                     "(what a `record:` declares), e.g. custom.cart_items.p95",
                                     m.end())
            self.pos = custom.end()
            return custom_metric(f"{CUSTOM_PREFIX}{custom.group()}"), start
        if name not in CATALOG:
            near = difflib.get_close_matches(name.lower(), CATALOG, n=1)
            hint = f"did you mean {near[0]}?" if near else f"known: {', '.join(CATALOG)}"
            raise SLOSyntaxError(f"unknown metric {name!r}; {hint}", start)
        self.pos = m.end()
        return CATALOG[name], start

    def _resource(self, root: str, start: int) -> Metric:
        """A dotted resource metric: `client.cpu`, `service.NAME.rss`, `gpu.0.utilization`."""
        subject, fields = RESOURCE_ROOTS[root]
        self.pos = start + len(root)
        parts = [root]
        for _ in range(2 if subject else 1):
            if not self.text.startswith(".", self.pos):
                break
            m = _PART_RE.match(self.text, self.pos + 1)
            if m is None:
                break
            parts.append(m.group())
            self.pos = m.end()
        name = ".".join(parts)
        metric = resource_metric(name)
        if metric is None:
            shape = f"{root}.{'<' + subject + '>.' if subject else ''}"
            known = " ".join(shape + f for f in fields)
            raise SLOSyntaxError(f"unknown resource metric {name!r}; known: {known}", start)
        return metric

    def _server(self, start: int) -> Metric:
        """`server.FAMILY` with an optional label selector: `server.x{model="flux"}`."""
        self.pos = start + len("server.")
        m = FAMILY_RE.match(self.text, self.pos)
        if m is None:
            raise SLOSyntaxError("expected a Prometheus metric name after 'server.', e.g. "
                                 "server.vllm:num_requests_waiting", self.pos)
        family, self.pos = m.group(), m.end()
        labels: dict[str, str] = {}
        if self.text.startswith("{", self.pos):
            close = self.text.find("}", self.pos)
            inner = self.text[self.pos + 1:close] if close > 0 else ""
            labels = parse_labels(inner)
            if close < 0 or _LABELS_RE.fullmatch(inner) is None:
                raise SLOSyntaxError('expected labels such as {model="flux"} and a closing }',
                                     self.pos)
            self.pos = close + 1
        metric = resource_metric("server." + sample_key(family, labels))
        assert metric is not None
        return metric

    def _stat(self) -> tuple[str | None, int]:
        if not self.text.startswith(".", self.pos):
            return None, self.pos
        start = self.pos + 1
        m = _STAT_TOKEN_RE.match(self.text, start)
        if m is None:
            raise SLOSyntaxError("expected a statistic after '.', e.g. p95", start)
        self.pos = m.end()
        return m.group(), start

    def _check_stat(self, metric: Metric, metric_col: int, stat: str | None,
                    stat_col: int) -> None:
        if metric.sampled:
            if stat is None:
                raise SLOSyntaxError(f"{metric.name} is sampled every second: add a statistic, "
                                     f"e.g. {metric.name}.max", metric_col)
            if metric.kind == "server" and stat == "increase":
                return
            if not SAMPLED_STAT_RE.match(stat):
                raise SLOSyntaxError(f"unknown statistic {stat!r} for {metric.name}; valid: "
                                     f"{stats_for(metric)}", stat_col)
            return
        histogram = metric.kind in HISTOGRAM_KINDS
        if histogram and stat is None:
            raise SLOSyntaxError(f"{metric.name} is a distribution: add a statistic, "
                                 f"e.g. {metric.name}.p95", metric_col)
        if not histogram and stat is not None:
            raise SLOSyntaxError(f"{metric.name} is a {metric.kind} over the scope and takes no "
                                 f"statistic; write e.g. '{metric.name} "
                                 f"{'<' if metric.kind == 'ratio' else '>'} "
                                 f"{_EXAMPLES[metric.kind].split(' or ')[0]}'", stat_col - 1)
        if stat is not None and not STAT_RE.match(stat):
            raise SLOSyntaxError(f"unknown statistic {stat!r} for {metric.name}; valid: "
                                 f"{stats_for(metric)}", stat_col)

    def _op(self) -> Op:
        for op in OPS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return cast(Op, op)
        rest = self.text[self.pos:]
        if rest.startswith("="):
            hint = "; use == for equality"
        elif rest.startswith(("!=", "<>")):
            hint = "; 'not equal' is not supported"
        else:
            hint = ""
        got = repr(rest[:10]) if rest else "the end of the SLO"
        raise SLOSyntaxError(f"expected a comparison (< <= > >= ==), got {got}{hint}", self.pos)

    def _value(self, metric: Metric, kind: str) -> float:
        start = self.pos
        m = _NUMBER_RE.match(self.text, start)
        if m is None:
            got = repr(self.text[start:start + 10]) if start < len(self.text) else "nothing"
            raise SLOSyntaxError(f"expected a threshold such as {_EXAMPLES[kind]}, got {got}",
                                 start)
        number = float(m.group())
        self.pos = m.end()
        self._skip_space()
        unit_col = self.pos
        u = _UNIT_RE.match(self.text, self.pos)
        unit = u.group() if u else ""
        factors = _UNITS[kind]
        if unit == "" and kind == "duration":
            raise SLOSyntaxError(f"{metric.name} is a duration and its threshold needs a "
                                 f"unit: write {_duration_hint(m.group(), number)}", start)
        if unit == "" and kind == "cpu":
            raise SLOSyntaxError(f"{metric.name} is CPU and its threshold needs %: write "
                                 f"{m.group()}% (100% = one core)", start)
        if unit not in factors:
            raise SLOSyntaxError(self._unit_message(metric, kind, unit), unit_col)
        if u is None:
            self.pos = m.end()   # leave the spaces for the trailing-text check
        else:
            self.pos = u.end()
        value = _to_base(number, kind, unit)
        if not math.isfinite(value):
            raise SLOSyntaxError(f"threshold {m.group()!r} is too large", start)
        if kind == "ratio" and unit == "" and 1 <= number <= 100:
            also = " or 100%" if number == 1 else ""
            raise SLOSyntaxError(f"{metric.name} is a fraction and {m.group()} means "
                                 f"{number * 100:g} %: write {m.group()}%{also}", start)
        if kind == "ratio" and value > 1.0:
            raise SLOSyntaxError(f"{metric.name} is a fraction between 0 and 1 "
                                 f"(0% to 100%)", start)
        return value

    @staticmethod
    def _unit_message(metric: Metric, kind: str, unit: str) -> str:
        allowed = [u for u in _UNITS[kind] if u]
        what = {"duration": "a duration", "amount": "a count", "rate": "a rate",
                "ratio": "a fraction", "cpu": "CPU", "size": "a size",
                "server": "a server metric"}[kind]
        subject = f"{metric.name}.count" if kind != metric.kind else metric.name
        if not allowed:
            return f"{subject} is {what} and takes no unit, got {unit!r}"
        if unit in {u for units in _UNITS.values() for u in units}:
            return (f"unit {unit!r} does not fit {subject}, which is {what}; "
                    f"use {' '.join(allowed)} (e.g. {_EXAMPLES[kind]})")
        return f"unknown unit {unit!r} for {subject}; use {' '.join(allowed)}"


def _duration_hint(written: str, number: float) -> str:
    """Both readings of a bare duration, the likelier first: k6 thresholds are in ms."""
    if number == 0:
        return "0s"
    as_ms, as_s = f"{written}ms or {number / 1000:.15g}s", f"{written}s or {number * 1000:.15g}ms"
    return as_ms if number >= 10 else as_s


def parse_metric(text: str) -> tuple[Metric, str | None]:
    """`METRIC[.STAT]` alone (a `fit:`), checked as in an SLO."""
    parser = _Parser(text)
    parser._skip_space()
    metric, metric_col = parser._metric()
    stat, stat_col = parser._stat()
    parser._check_stat(metric, metric_col, stat, stat_col)
    parser._skip_space()
    if parser.pos < len(text):
        raise SLOSyntaxError(f"unexpected {text[parser.pos:]!r} after the metric; `fit:` "
                             "takes METRIC.STAT, e.g. service.triton.rss.max", parser.pos)
    return metric, stat


def parse_bounds(text: str, metric: Metric, stat: str | None
                 ) -> tuple[float | None, float | None]:
    """`LOW..HIGH` in the metric's units (either side may be empty), to base units."""
    if not isinstance(text, str) or ".." not in text:
        raise SLOSyntaxError(f"expected LOW..HIGH such as 8MB..40MB, got {text!r}", 0)
    kind = "amount" if stat == "count" else metric.kind
    out: list[float | None] = []
    start = 0
    for side in text.split("..", 1):
        parser = _Parser(side)
        parser._skip_space()
        if parser.pos == len(side):
            out.append(None)
        else:
            try:
                out.append(parser._value(metric, kind))
                parser._skip_space()
                if parser.pos < len(side):
                    raise SLOSyntaxError(f"unexpected {side[parser.pos:]!r}", parser.pos)
            except SLOSyntaxError as exc:
                raise SLOSyntaxError(exc.message, start + exc.column) from None
        start += len(side) + 2
    low, high = out
    if low is None and high is None:
        raise SLOSyntaxError("give at least one bound: 8MB..40MB, 8MB.. or ..40MB", 0)
    if low is not None and high is not None and low > high:
        raise SLOSyntaxError(f"the low bound is above the high one in {text!r}", 0)
    return low, high


class Stepped(Protocol):
    """A sweep's step as the plan (PhasePlan) or saved results (PhaseInfo) have it."""

    @property
    def name(self) -> str: ...
    @property
    def sweep(self) -> str | None: ...
    @property
    def vars(self) -> dict[str, int | float | str]: ...


def sweep_points(phases: Iterable[Stepped]) -> dict[str, dict[str, list[tuple[str, Any]]]]:
    """sweep → parameter → [(step phase, value)], in the order the steps run."""
    out: dict[str, dict[str, list[tuple[str, Any]]]] = {}
    for phase in phases:
        if phase.sweep is None:
            continue
        for key, value in phase.vars.items():
            out.setdefault(phase.sweep, {}).setdefault(key, []).append((phase.name, value))
    return out


# -- the `slos:` list -------------------------------------------------------------------

_ITEM = TypeAdapter(str | SLOSpec)
MIN_FIT_POINTS = 3


def compile_slos(doc: Document, scopes: Mapping[str, set[str]],
                 known: str = "known", custom: set[str] | None = None,
                 services: set[str] | None = None,
                 sweeps: Mapping[str, Mapping[str, list[tuple[str, Any]]]] | None = None,
                 ) -> tuple[list[SLOPlan], list[Diagnostic]]:
    """The SLOs of `doc["slos"]`, and every problem with them.

    `scopes` holds the names each scope key (`phase`, `request`, `target`) may take;
    `known` introduces them in messages ("known", "these results have"); `custom` the
    custom metrics (`custom.NAME`) there are (None: any); `services` the services whose
    processes are measured (`service.NAME.rss`), None: any; `sweeps` the steps of each
    sweep by parameter (`sweep_points`), for `fit:` SLOs.
    """
    plans: list[SLOPlan] = []
    problems: list[Diagnostic] = []
    items = doc.data.get("slos") if isinstance(doc.data, dict) else None
    for index, raw in enumerate(items if isinstance(items, list) else []):
        loc: Loc = ("slos", index)
        if not doc.usable(loc):
            continue
        if isinstance(raw, dict) and "fit" in raw:
            fit, fit_problems = _compile_fit(doc, loc, raw, sweeps or {}, known)
            problems += fit_problems
            if fit is not None:
                plans.append(fit)
            continue
        try:
            item = raw if isinstance(raw, str) else _ITEM.validate_python(raw)
        except ValidationError as exc:
            problems += diagnostics_from(exc, doc, SLOSpec, prefix=loc)
            continue
        text = item if isinstance(item, str) else item.assert_
        text_loc = loc if isinstance(item, str) else (*loc, "assert")
        try:
            expr = parse_slo(text)
        except SLOSyntaxError as exc:
            problems.append(doc.diagnostic(text_loc, exc.message, offset=exc.column))
            continue
        if custom is not None and expr.metric.startswith(CUSTOM_PREFIX) and \
                expr.metric not in custom:
            problems.append(doc.diagnostic(text_loc, f"unknown metric {expr.metric!r}: no "
                                           f"request's `record:` declares it ({known}: "
                                           f"{one_of(custom) if custom else 'none'})"))
            continue
        sampled = _sampled_problem(expr.metric, text, services, known)
        if sampled is not None:
            problems.append(doc.diagnostic(text_loc, sampled[0], offset=sampled[1]))
            continue
        scope: dict[str, Any] = {}
        if isinstance(item, SLOSpec):
            if resource_metric(expr.metric) is not None:
                # a server's series belong to a target; the rest to the whole run
                for key in ("request",) if expr.metric.startswith("server.") else \
                        ("request", "target"):
                    if getattr(item, key) is not None:
                        problems.append(doc.diagnostic((*loc, key), (
                            f"{expr.metric} is sampled for the whole run, not per {key}: "
                            "only `phase:` scopes it"), key=True))
            for key, names in scopes.items():
                value = getattr(item, key)
                if value is not None and value not in names:
                    problems.append(doc.diagnostic(
                        (*loc, key), f"unknown {key} {value!r}{did_you_mean(value, names)} "
                                     f"({known}: {one_of(names)})"))
                scope[key] = value
            scope["window"] = item.window
            if item.window is not None:
                problems += _window_problems(doc, loc, expr.metric, item.window)
            scope["abort"] = item.abort
            if item.abort and item.window is None:
                problems.append(doc.diagnostic((*loc, "abort"), "`abort: true` needs a `window:` "
                                               "(e.g. window: 10s): a whole-run value is only "
                                               "known at the end"))
        where = doc.diagnostic(text_loc, "")
        plans.append(SLOPlan(text=text, metric=expr.metric, stat=expr.stat, op=expr.op,
                             threshold=expr.threshold,
                             where=f"{where.file}:{where.line}:{where.col}", **scope))
    return plans, problems


def _sampled_problem(metric: str, text: str, services: set[str] | None,
                     known: str) -> tuple[str, int] | None:
    """A `service.NAME.…` SLO naming a service whose processes the run does not measure:
    the message and its column."""
    if services is None or not metric.startswith("service."):
        return None
    name = metric.split(".")[1]
    if name in services:
        return None
    column = text.index(metric) + len("service.")
    if not services:
        return (f"unknown service {name!r}: this run starts no services (only services a "
                "target uses are started and measured)", column)
    return (f"unknown service {name!r}{did_you_mean(name, services)} ({known} services: "
            f"{one_of(services)}; only services a target uses are started and measured)",
            column)


def _window_problems(doc: Document, loc: Loc, metric: str, window: float) -> list[Diagnostic]:
    out = []
    if window < 1 or not float(window).is_integer():
        out.append(doc.diagnostic((*loc, "window"), f"a window is a whole number of seconds "
                                                    f"(1s or more), not {window:g}s"))
    if metric not in WINDOW_METRICS:
        out.append(doc.diagnostic((*loc, "assert"), f"{metric} is not kept per second, so it "
                                                    f"cannot have a window; windows take: "
                                                    f"{', '.join(sorted(WINDOW_METRICS))}"))
    return out


def _compile_fit(doc: Document, loc: Loc, raw: dict[str, Any],
                 sweeps: Mapping[str, Mapping[str, list[tuple[str, Any]]]],
                 known: str) -> tuple[SLOPlan | None, list[Diagnostic]]:
    """A `fit:` SLO: its metric, its sweep and parameter, its bounds."""
    try:
        spec = FitSpec.model_validate(raw)
    except ValidationError as exc:
        return None, diagnostics_from(exc, doc, FitSpec, prefix=loc)
    problems: list[Diagnostic] = []
    metric: Metric | None = None
    stat: str | None = None
    try:
        metric, stat = parse_metric(spec.fit)
        if metric.name == "capacity":
            raise SLOSyntaxError("`capacity` is one figure of a search, not one per step", 0)
    except SLOSyntaxError as exc:
        problems.append(doc.diagnostic((*loc, "fit"), exc.message, offset=exc.column))
    having = sorted(name for name, params in sweeps.items() if spec.over in params)
    sweep = spec.sweep
    if sweep is not None and sweep not in sweeps:
        problems.append(doc.diagnostic((*loc, "sweep"), f"unknown sweep {sweep!r}"
                                       f"{did_you_mean(sweep, sweeps)} ({known} sweeps: "
                                       f"{one_of(sweeps) if sweeps else 'none'})"))
        sweep = None
    elif sweep is not None and spec.over not in sweeps[sweep]:
        params = sorted(sweeps[sweep])
        problems.append(doc.diagnostic((*loc, "over"), f"sweep {sweep!r} varies "
                                       f"{one_of(params)}, not {spec.over!r}"
                                       f"{did_you_mean(spec.over, params)}"))
        sweep = None
    elif sweep is None and len(having) != 1:
        what = (f"{len(having)} sweeps vary {spec.over!r} ({', '.join(having)}): name one "
                "with `sweep:`") if having else (
            f"no sweep varies {spec.over!r} (sweeps vary: "
            f"{one_of({p for params in sweeps.values() for p in params}) or 'nothing'})")
        problems.append(doc.diagnostic((*loc, "over"), what))
    elif sweep is None:
        sweep = having[0]
    points: list[tuple[str, float]] = []
    if sweep is not None:
        steps = sweeps[sweep][spec.over]
        bad = [v for _, v in steps if isinstance(v, bool) or not isinstance(v, (int, float))]
        if bad:
            problems.append(doc.diagnostic((*loc, "over"), f"a fit needs numbers, and "
                                           f"{spec.over!r} of sweep {sweep!r} takes {bad[0]!r}"))
        elif len(steps) < MIN_FIT_POINTS:
            problems.append(doc.diagnostic((*loc, "sweep" if spec.sweep else "over"),
                                           f"sweep {sweep!r} has {len(steps)} step"
                                           f"{'' if len(steps) == 1 else 's'}; a fit needs "
                                           f"at least {MIN_FIT_POINTS} values of {spec.over!r}"))
        elif len({float(v) for _, v in steps}) < 2:
            problems.append(doc.diagnostic((*loc, "over"), "a fit needs at least two different "
                                           f"values of {spec.over!r}"))
        else:
            points = [(phase, float(v)) for phase, v in steps]
    slope: tuple[float | None, float | None] = (None, None)
    if metric is not None and spec.linear.slope is not None:
        try:
            slope = parse_bounds(spec.linear.slope, metric, stat)
        except SLOSyntaxError as exc:
            problems.append(doc.diagnostic((*loc, "linear", "slope"), exc.message,
                                           offset=exc.column))
    if problems or metric is None or sweep is None:
        return None, problems
    tests = ([f"r2 >= {spec.linear.r2:g}"] if spec.linear.r2 is not None else []) + (
        [f"slope {spec.linear.slope.strip()}"] if spec.linear.slope is not None else [])
    text = f"fit {spec.fit.strip()} over {spec.over}: linear, {', '.join(tests)}"
    where = doc.diagnostic((*loc, "fit"), "")
    plan = FitPlan(over=spec.over, sweep=sweep, points=tuple(points), r2=spec.linear.r2,
                   slope_min=slope[0], slope_max=slope[1])
    return SLOPlan(text=text, metric=metric.name, stat=stat, op=">=",
                   threshold=spec.linear.r2 or 0.0, phase=sweep,
                   where=f"{where.file}:{where.line}:{where.col}", fit=plan), []
