"""The terminal summary printed after a run: per-phase table, SLO verdicts, checks, errors."""

from __future__ import annotations

from llmscen.assertions.slo import scope_text, show
from llmscen.assertions.verdict import headline
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults

COLUMNS = (("requests", None), ("ok", None), ("throughput", None), ("latency", "p50"),
           ("latency", "p95"), ("latency", "p99"), ("ttft", "p50"), ("ttft", "p99"),
           ("itl", "p50"), ("error_rate", None))


def _row(name: str, agg: object) -> list[str]:
    cells = [name]
    for metric, stat in COLUMNS:
        if metric in ("requests", "ok"):
            cells.append(str(getattr(agg.counters, metric)))  # type: ignore[attr-defined]
        else:
            cells.append(show(metric, agg.value(metric, stat)))  # type: ignore[attr-defined]
    return cells


def summary(results: RunResults) -> str:
    header = ["phase"] + [f"{m}.{s}" if s else m for m, s in COLUMNS]
    rows = [header]
    for phase in results.phases:
        if phase.kind == "pause":
            continue
        label = phase.name + (" (warmup)" if phase.warmup else "")
        rows.append(_row(label, aggregate(results, phase=phase.name)))
    rows.append(_row("all (no warmup)", aggregate(results)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    out = ["", *lines]
    cases = results.outcome.cases if results.outcome else []
    marks = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP", "error": "ERROR"}
    for kind, title in (("slo", "SLOs"), ("request", "requests"),
                        ("expectation", "expectations")):
        shown = [c for c in cases if c.kind == kind]
        skipped = {c.message for c in shown if c.status == "skipped"}
        if shown and len(skipped) == 1 and all(c.status == "skipped" for c in shown):
            out += ["", f"{title}: {len(shown)} {skipped.pop()}"]
        elif shown:
            out += ["", f"{title}:"]
            out += [f"  {marks[c.status]:<5} {c.name}: {c.message}" if kind != "slo" else
                    f"  {marks[c.status]:<5} {c.message or c.name}" for c in shown]
    if results.errors:
        out += ["", "errors:"]
        for err in results.errors:
            sample = f" — e.g. {err.samples[0].message}" if err.samples else ""
            out.append(f"  {err.request}: {err.error} ×{err.count}{sample}")
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
