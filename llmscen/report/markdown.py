"""A short Markdown summary for CI pages (GitHub's `$GITHUB_STEP_SUMMARY` and the like).

Model output and error messages are untrusted: in tables and prose they are
HTML-escaped (GitHub renders inline HTML) and kept to one line; outputs go in
fenced blocks whose fence is longer than any backtick run inside them.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from llmscen.assertions.slo import show
from llmscen.metrics.query import Aggregate, aggregate
from llmscen.metrics.results import RunResults
from llmscen.report.errors import error_groups
from llmscen.report.replay_view import replay_views
from llmscen.report.terminal import Column, columns, verdict
from llmscen.report.view import run_duration, slo_rows

ICONS = {"PASSED": "✅", "FAILED": "❌", "INTERRUPTED": "⚠️", "COULD NOT RUN": "❌",
         "INVALID MEASUREMENT": "⚠️"}
MAX_FAILED_CHECKS = 10     # a summary, not the report: the rest are in report.html


def cell(text: object) -> str:
    """Safe inside a table cell or a line of prose."""
    one_line = re.sub(r"\s+", " ", str(text)).strip()
    return html.escape(one_line, quote=False).replace("|", "\\|").replace("`", "&#96;")


def code(text: str) -> str:
    """An inline code span when `text` allows one (code spans show `<` as is)."""
    if "`" in text or "\n" in text or "|" in text:
        return cell(text)
    return f"`{text}`"


def fenced(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _table(header: list[str], rows: list[list[str]], right: range | tuple[int, ...] = ()
           ) -> list[str]:
    """A Markdown table; the columns at indexes `right` are right-aligned (numbers)."""
    align = ["--:" if i in right else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def summary_markdown(results: RunResults) -> str:
    meta = results.meta
    word, _, detail = verdict(results)[1].partition(": ")
    icon = ICONS.get(word, "")
    total = aggregate(results).counters
    title = f"{icon} {cell(word)}" if icon else cell(word)
    out = [f"## {title}: {cell(meta.scenario)}", ""]
    facts = [cell(detail)] if detail else []
    facts += [f"{total.requests:,} requests in {run_duration(results)}",
              f"llmscen {cell(meta.llmscen_version)}"]
    out += [" · ".join(facts), ""]
    for note in meta.notes:
        out += [f"> **Note:** {cell(note)}", ""]
    if results.slos:
        marks = {True: "✅", False: "❌", None: "➖"}
        rows = [[marks[s.passed], code(s.text), cell(s.scope), cell(s.measured),
                 cell(s.threshold)] for s in slo_rows(results)]
        out += ["### SLOs", "", *_table(["", "SLO", "scope", "measured", "threshold"], rows, (3, 4)),
                ""]
        out += [f"- {code(s.text)}: {cell(s.cause)}" for s in slo_rows(results) if s.cause]
        out += [""] if any(s.cause for s in slo_rows(results)) else []
    out += ["### Phases", ""]
    cols = [c for c in columns(results) if c[0] not in ("requests", "ok", "throughput",
                                                        "error_rate")]
    header = ["phase", "requests", "error rate", "throughput", *(title for *_, title in cols)]
    rows = []
    for phase in results.phases:
        if phase.kind == "pause":
            continue
        agg = aggregate(results, phase=phase.name)
        warmup = phase.warmup and "warmup" not in phase.name
        label = cell(phase.name) + (" (warmup)" if warmup else "")
        rows.append(_phase_row(label, agg, cols))
    rows.append(_phase_row("**whole run**", aggregate(results), cols))
    out += [*_table(header, rows, range(1, len(header))), ""]
    replays = replay_views(results)
    if replays:
        rows = [[cell(v.phase), cell(v.data), v.speed, v.sent, v.not_sent, v.lag_p50, v.lag_p99,
                 v.lag_max, v.ks, v.hit_rate] for v in replays]
        out += ["### Replay fidelity", "", *_table(
            ["phase", "trace", "speed", "sent", "not sent", "lag p50", "lag p99", "lag max",
             "KS", "prefix-cache hit rate"], rows, range(3, 10)), ""]
    failed = [c for c in results.checks if c.failed]
    if failed:
        out += ["### Failed expectations", ""]
        for check in failed[:MAX_FAILED_CHECKS]:
            out.append(f"**{cell(check.request)} · {cell(check.expectation)}**: "
                       f"{check.failed:,} of {check.passed + check.failed:,} responses failed")
            if check.samples:
                sample = check.samples[0]
                out += ["", f"- {cell(sample.message)}"]
                if sample.output:
                    out += ["", fenced(sample.output)]
            out.append("")
        if len(failed) > MAX_FAILED_CHECKS:
            out += [f"…and {len(failed) - MAX_FAILED_CHECKS} more in the HTML report.", ""]
    groups = error_groups(results)
    if groups:
        rows = [[cell(g.request), cell(g.label), f"{g.count:,}", cell(", ".join(g.phases)),
                 cell(g.url or ""), cell(g.samples[0]) if g.samples else ""] for g in groups]
        out += ["### Errors", "", *_table(["request", "class", "count", "phases", "URL",
                                           "example"], rows, (2,)), ""]
    return "\n".join(out)


def _phase_row(label: str, agg: Aggregate, cols: list[Column]) -> list[str]:
    return [label, f"{agg.counters.requests:,}", show("error_rate", agg.value("error_rate")),
            show("throughput", agg.value("throughput")),
            *(show(m, agg.value(m, s)) for m, s, _ in cols)]


def write_summary(results: RunResults, path: str | Path) -> None:
    """Append the summary: CI step-summary files collect what each command adds."""
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(summary_markdown(results) + "\n")
