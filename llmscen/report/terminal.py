"""The terminal summary printed after a run: per-phase table, SLO verdicts, checks, errors.

The table's columns follow the metrics the run produced (`report/produced.py`):
no TTFT for an HTTP run, images per second for FLUX. Error samples are one line.
"""

from __future__ import annotations

from llmscen.assertions.slo import scope_text, show
from llmscen.assertions.verdict import headline
from llmscen.metrics.query import Aggregate, aggregate
from llmscen.metrics.results import RunResults
from llmscen.report.errors import error_groups, summary_line
from llmscen.report.produced import produced
from llmscen.report.replay_view import replay_line, replay_views
from llmscen.report.resources import terminal_lines

# (metric, stat, header); optional ones show only when the run produced the metric
BASE_COLUMNS = (("requests", None, "requests"), ("ok", None, "ok"),
                ("throughput", None, "throughput"), ("latency", "p50", "latency.p50"),
                ("latency", "p95", "latency.p95"), ("latency", "p99", "latency.p99"))
OPTIONAL_COLUMNS = (("ttft", "p50", "ttft.p50"), ("ttft", "p99", "ttft.p99"),
                    ("itl", "p50", "itl.p50"), ("output_token_throughput", None, "tokens/s"),
                    ("images_per_second", None, "images/s"))
Column = tuple[str, str | None, str]


def columns(results: RunResults) -> list[Column]:
    """The table's columns: the base ones, those of the metrics the run produced, errors."""
    made = produced(results)
    return [*BASE_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c[0] in made),
            ("error_rate", None, "error_rate")]


def _row(name: str, agg: Aggregate, cols: list[Column]) -> list[str]:
    cells = [name]
    for metric, stat, _ in cols:
        if metric in ("requests", "ok"):
            cells.append(str(getattr(agg.counters, metric)))
        else:
            cells.append(show(metric, agg.value(metric, stat)))
    return cells


def summary(results: RunResults) -> str:
    cols = columns(results)
    header = ["phase"] + [title for *_, title in cols]
    rows = [header]
    for phase in results.phases:
        if phase.kind == "pause":
            continue
        label = phase.name + (" (warmup)" if phase.warmup else "")
        rows.append(_row(label, aggregate(results, phase=phase.name), cols))
    rows.append(_row("all (no warmup)", aggregate(results), cols))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    out = ["", *lines, *terminal_lines(results)]
    cases = results.outcome.cases if results.outcome else []
    marks = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP", "error": "ERROR"}
    # a case not judged for a reason the last line gives says so, instead of repeating it
    said = {f"not judged: {r.message}" for r in results.outcome.reasons} \
        if results.outcome else set()
    for kind, title in (("slo", "SLOs"), ("baseline", "baseline"), ("request", "requests"),
                        ("expectation", "expectations")):
        shown = [c for c in cases if c.kind == kind]
        skipped = {c.message for c in shown if c.status == "skipped"}
        if shown and len(skipped) == 1 and all(c.status == "skipped" for c in shown):
            out += ["", f"{title}: {len(shown)} {skipped.pop()}"]
        elif shown:
            out += ["", f"{title}:"]
            for c in shown:
                message = "not judged (why: see the last line)" if c.message in said \
                    else c.message
                line = (f"  {marks[c.status]:<5} {c.name}: {message}" if kind != "slo" or
                        message != c.message else f"  {marks[c.status]:<5} {c.message or c.name}")
                out.append(line.replace("\n", "\n" + " " * 8))   # a cause's line, indented
    replays = replay_views(results)
    if replays:
        out += ["", *(replay_line(v) for v in replays)]
    groups = error_groups(results)
    if groups:
        out += ["", "errors:"]
        out += [f"  {summary_line(g)}" for g in groups]
    for note in results.meta.notes:
        out.append(f"note: {note}")
    return "\n".join(out)


def verdict(results: RunResults) -> tuple[bool, str]:
    """(passed, the headline) of the saved outcome."""
    outcome = results.outcome
    if outcome is None:
        return False, "NOT JUDGED: these results carry no outcome"
    return outcome.status == "passed", headline(outcome)


__all__ = ["scope_text", "summary", "verdict"]
