"""A comparison shown: the verdict line, the terminal table, Markdown for a PR, HTML."""

from __future__ import annotations

import math
from pathlib import Path

from llmscen.assertions.slo import show
from llmscen.metrics.results import Meta
from llmscen.report.compare import MIN_WINDOWS, Comparison, Delta
from llmscen.report.markdown import cell, code

ICONS = {"REGRESSED": "❌", "NO REGRESSION": "✅", "NOT ENOUGH DATA": "⚠️"}


def format_change(change: float | None) -> str:
    if change is None:
        return "n/a"
    if math.isinf(change):
        return "new" if change > 0 else "gone"
    if abs(change) < 0.0005:
        return "±0%"
    return f"{change * 100:+.1f}%".replace("-", "−")


def format_interval(d: Delta) -> str:
    if d.low is None or d.high is None:
        return ""
    return f"[{format_change(d.low)}, {format_change(d.high)}]"


def format_p(d: Delta) -> str:
    if d.p is None:
        return ""
    return "<0.001" if d.p < 0.001 else f"{d.p:.3f}"


def verdict_word(comparison: Comparison) -> str:
    if comparison.regressions:
        return "REGRESSED"
    return "NO REGRESSION" if comparison.judged else "NOT ENOUGH DATA"


def verdict_line(comparison: Comparison) -> str:
    bound = f"{comparison.max_regression * 100:g}%"
    word = verdict_word(comparison)
    judged, little = len(comparison.judged), len(comparison.too_little)
    tail = f"; {little} with too little data" if little else ""
    if word == "REGRESSED":
        found = comparison.regressions
        worst = max(found, key=lambda d: abs(d.change or 0))
        return (f"{word}: {len(found)} of {judged} values significantly worse by more than "
                f"{bound} (worst: {worst.name} [{worst.scope}] {format_change(worst.change)}, "
                f"p {format_p(worst)}){tail}")
    if word == "NO REGRESSION":
        return (f"{word}: none of {judged} values significantly worse by more than "
                f"{bound}{tail}")
    return (f"{word}: none of {len(comparison.deltas)} values has enough samples to judge "
            f"(at least {comparison.min_samples} requests and {MIN_WINDOWS} seconds per side; "
            f"p95 needs 100, p99 500)")


def run_label(metas: list[Meta]) -> str:
    first = metas[0]
    when = first.started_at.strftime("%Y-%m-%d %H:%M UTC") if first.started_at else "?"
    runs = f" ({len(metas)} runs)" if len(metas) > 1 else ""
    return f"{first.scenario} @ {when}{runs}"


def _samples(d: Delta) -> str:
    return f"{d.n_base}/{d.n_new}" if d.measured else ""


def terminal_table(comparison: Comparison) -> str:
    """One block per scope: metric, base, new, change, its 95% interval, p and the verdict."""
    lines = [f"base: {run_label(comparison.bases)}", f"new:  {run_label(comparison.news)}"]
    lines += [f"warning: {w}" for w in comparison.warnings]
    header = ("metric", "base", "new", "change", "95% interval", "p", "n", "")
    for scope in comparison.scopes():
        if scope in comparison.same_as:
            lines += ["", f"{scope}: the same requests as {comparison.same_as[scope]}"]
            continue
        rows = [header]
        for d in comparison.deltas:
            if d.scope == scope:
                rows.append((d.name, show(d.metric, d.base), show(d.metric, d.new),
                             format_change(d.change), format_interval(d), format_p(d),
                             _samples(d), d.verdict))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines += ["", scope]
        for r in rows:
            lines.append("  " + "  ".join(
                c.ljust(w) if i in (0, 7) else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
    for label, names in (("only in base", comparison.only_base),
                         ("only in new", comparison.only_new)):
        if names:
            lines += ["", f"{label} (not compared): {', '.join(names)}"]
    return "\n".join(lines)


def _row(d: Delta) -> list[str]:
    return [cell(d.scope), code(d.name), show(d.metric, d.base), show(d.metric, d.new),
            format_change(d.change), format_interval(d), format_p(d), _samples(d),
            f"**{d.verdict}**" if d.regression else d.verdict]


def markdown(comparison: Comparison) -> str:
    """A PR comment: the verdict, warnings, what moved; every value folded away."""
    word = verdict_word(comparison)
    line = verdict_line(comparison).partition(": ")[2]
    c = comparison
    out = [f"### {ICONS[word]} {word}: {cell(c.news[0].scenario)}", "", cell(line), "",
           f"Base: {cell(run_label(c.bases))} · new: {cell(run_label(c.news))} · "
           f"bound {c.max_regression * 100:g}% · significance {c.alpha * 100:g}% "
           f"(Holm-adjusted over {c.tests} tests)", ""]
    out += [f"> ⚠️ {cell(w)}" for w in c.warnings]
    if c.warnings:
        out.append("")
    header = ["scope", "metric", "base", "new", "change", "95% interval", "p", "n base/new",
              "result"]
    align = "|" + "|".join("--:" if 2 <= i <= 7 else "---" for i in range(len(header))) + "|"
    notable = [d for d in c.distinct if d.verdict and d.verdict != "not enough data"]
    if notable:
        out += ["| " + " | ".join(header) + " |", align]
        out += ["| " + " | ".join(_row(d)) + " |" for d in notable]
        out.append("")
    else:
        out += ["No value moved significantly.", ""]
    if c.too_little:
        names = sorted({f"{d.name} ({d.needs})" for d in c.too_little})
        out += [f"Not enough data for: {cell(', '.join(names))}.", ""]
    repeats = sorted({f"{scope} = {first}" for scope, first in c.same_as.items()})
    if repeats:
        out += [f"Scopes with the same requests, shown once: {cell('; '.join(repeats))}.", ""]
    out += ["<details><summary>All values</summary>", "",
            "| " + " | ".join(header) + " |", align]
    out += ["| " + " | ".join(_row(d)) + " |" for d in c.distinct]
    out += ["", "</details>", ""]
    for label, names in (("Only in base", c.only_base), ("Only in new", c.only_new)):
        if names:
            out += [f"{label} (not compared): {cell(', '.join(names))}", ""]
    return "\n".join(out)


def write_compare_markdown(comparison: Comparison, path: str | Path) -> None:
    Path(path).write_text(markdown(comparison), encoding="utf-8")


def write_compare_html(comparison: Comparison, path: str | Path) -> None:
    from llmscen.report.html import environment, page_context

    env = environment()
    rows = []
    for d in comparison.deltas:
        change = d.change
        bar = 0.0 if change is None else min(abs(change), 1.0) * 100
        rows.append({"d": d, "base": show(d.metric, d.base), "new": show(d.metric, d.new),
                     "change": format_change(change), "bar": f"{bar:.0f}",
                     "interval": format_interval(d), "p": format_p(d), "n": _samples(d),
                     "tone": "bad" if d.regression else "worse" if d.worse else
                     "good" if d.improved else ""})
    word = verdict_word(comparison)
    html = env.get_template("compare.html.j2").render(
        **page_context(env), c=comparison, rows=rows, word=word,
        line=verdict_line(comparison), regressed=bool(comparison.regressions),
        base_label=run_label(comparison.bases), new_label=run_label(comparison.news),
        bound=f"{comparison.max_regression * 100:g}%", alpha=f"{comparison.alpha * 100:g}%",
        same_as=comparison.same_as)
    Path(path).write_text(html, encoding="utf-8")
