"""Two saved runs side by side: how far NEW moved from BASE, per metric and scope.

Direction-aware: for latencies and `error_rate` higher is worse, for
throughputs lower is worse. A change is a regression when it goes the worse
way by more than the bound, relative to BASE. A value that was 0 in BASE and
got worse (e.g. errors appeared) is a regression at any bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from llmscen.assertions.slo import show
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import Meta, RunResults

COMPARED: tuple[tuple[str, str | None], ...] = (
    *((m, s) for m in ("latency", "ttft", "itl", "tpot") for s in ("p50", "p95", "p99")),
    ("throughput", None), ("output_token_throughput", None), ("error_rate", None),
)
HIGHER_IS_BETTER = frozenset({"throughput", "output_token_throughput", "goodput", "success_rate"})


@dataclass(frozen=True)
class Delta:
    scope: str                 # overall | phase NAME | request NAME
    metric: str
    stat: str | None
    base: float | None
    new: float | None
    change: float | None       # (new - base) / base; ±inf when base is 0
    worse: bool                # moved the bad way
    regression: bool           # ... by more than the bound

    @property
    def name(self) -> str:
        return f"{self.metric}.{self.stat}" if self.stat else self.metric

    @property
    def improved(self) -> bool:
        return bool(self.change) and not self.worse


@dataclass
class Comparison:
    base: Meta
    new: Meta
    max_regression: float
    deltas: list[Delta] = field(default_factory=list)
    only_base: list[str] = field(default_factory=list)   # scopes missing from NEW
    only_new: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Delta]:
        return [d for d in self.deltas if d.regression]

    def scopes(self) -> list[str]:
        return list(dict.fromkeys(d.scope for d in self.deltas))


def relative_change(base: float | None, new: float | None) -> float | None:
    if base is None or new is None:
        return None
    if base == 0:
        return 0.0 if new == 0 else math.copysign(math.inf, new)
    return (new - base) / abs(base)


def delta(scope: str, metric: str, stat: str | None, base: float | None, new: float | None,
          bound: float) -> Delta:
    change = relative_change(base, new)
    worse = change is not None and (change < 0 if metric in HIGHER_IS_BETTER else change > 0)
    # a hair of slack so 1.0 → 1.1 is not "more than 10%" by float rounding
    regression = worse and change is not None and abs(change) > bound + 1e-9
    return Delta(scope, metric, stat, base, new, change, worse, regression)


def _names(results: RunResults) -> tuple[list[str], list[str]]:
    phases = [p.name for p in results.phases if p.kind != "pause"]
    requests = list(dict.fromkeys(s.request for s in results.scopes))
    return phases, requests


def compare(base: RunResults, new: RunResults, max_regression: float) -> Comparison:
    out = Comparison(base.meta, new.meta, max_regression)
    base_phases, base_requests = _names(base)
    new_phases, new_requests = _names(new)
    scopes: list[tuple[str, str | None, str | None]] = [("overall", None, None)]
    scopes += [(f"phase {n}", n, None) for n in base_phases if n in new_phases]
    scopes += [(f"request {n}", None, n) for n in base_requests if n in new_requests]
    for kind, mine, theirs in (("phase", base_phases, new_phases),
                               ("request", base_requests, new_requests)):
        out.only_base += [f"{kind} {n}" for n in mine if n not in theirs]
        out.only_new += [f"{kind} {n}" for n in theirs if n not in mine]
    for label, phase, request in scopes:
        a = aggregate(base, phase=phase, request=request)
        b = aggregate(new, phase=phase, request=request)
        for metric, stat in COMPARED:
            out.deltas.append(delta(label, metric, stat, a.value(metric, stat),
                                    b.value(metric, stat), max_regression))
    return out


def format_change(change: float | None) -> str:
    if change is None:
        return "n/a"
    if math.isinf(change):
        return "new" if change > 0 else "gone"
    if abs(change) < 0.0005:
        return "±0%"
    return f"{change * 100:+.1f}%".replace("-", "−")


def verdict_line(comparison: Comparison) -> str:
    bound = f"{comparison.max_regression * 100:g}%"
    found = comparison.regressions
    if found:
        worst = max(found, key=lambda d: abs(d.change or 0))
        return (f"REGRESSED: {len(found)} of {len(comparison.deltas)} values got worse by more "
                f"than {bound} (worst: {worst.name} [{worst.scope}] "
                f"{format_change(worst.change)})")
    return f"NO REGRESSION: {len(comparison.deltas)} values within {bound}"


def _label(meta: Meta) -> str:
    when = meta.started_at.strftime("%Y-%m-%d %H:%M UTC") if meta.started_at else "?"
    return f"{meta.scenario} @ {when}"


def terminal_table(comparison: Comparison) -> str:
    """One block per scope: metric, base, new, change and a mark on regressions."""
    lines = [f"base: {_label(comparison.base)}", f"new:  {_label(comparison.new)}"]
    header = ("metric", "base", "new", "change", "")
    for scope in comparison.scopes():
        rows = [header]
        for d in comparison.deltas:
            if d.scope != scope:
                continue
            mark = "REGRESSED" if d.regression else "worse" if d.worse and d.change else \
                "better" if d.improved else ""
            rows.append((d.name, show(d.metric, d.base), show(d.metric, d.new),
                         format_change(d.change), mark))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines += ["", scope]
        for r in rows:
            lines.append("  " + "  ".join(
                c.ljust(w) if i in (0, 4) else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
    for label, names in (("only in base", comparison.only_base),
                         ("only in new", comparison.only_new)):
        if names:
            lines += ["", f"{label} (not compared): {', '.join(names)}"]
    return "\n".join(lines)


def write_compare_html(comparison: Comparison, path: str | Path) -> None:
    from llmscen.report.html import environment, page_context

    env = environment()
    rows = []
    for d in comparison.deltas:
        change = d.change
        bar = 0.0 if change is None else min(abs(change), 1.0) * 100
        rows.append({"d": d, "base": show(d.metric, d.base), "new": show(d.metric, d.new),
                     "change": format_change(change), "bar": f"{bar:.0f}",
                     "tone": "bad" if d.regression else "worse" if d.worse else
                     "good" if d.improved else ""})
    html = env.get_template("compare.html.j2").render(
        **page_context(env), c=comparison, rows=rows, line=verdict_line(comparison),
        regressed=bool(comparison.regressions), base_label=_label(comparison.base),
        new_label=_label(comparison.new), bound=f"{comparison.max_regression * 100:g}%")
    Path(path).write_text(html, encoding="utf-8")
