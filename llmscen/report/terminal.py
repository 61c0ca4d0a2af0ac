"""The terminal summary printed after a run: per-phase table, SLO verdicts, checks, errors."""

from __future__ import annotations

from llmscen.assertions.slo import scope_text, show
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
    if results.slos:
        out += ["", "SLOs:"]
        for slo in results.slos:
            mark = "PASS" if slo.passed else "FAIL"
            out.append(f"  {mark}  {slo.message or slo.text}")
    if results.checks:
        out += ["", "expectations:"]
        for check in results.checks:
            mark = "PASS" if not check.failed else "FAIL"
            total = check.passed + check.failed
            line = f"  {mark}  {check.request}: {check.expectation} ({check.passed}/{total} passed)"
            if check.samples:
                line += f" — e.g. {check.samples[0].message}"
            out.append(line)
    if results.errors:
        out += ["", "errors:"]
        for err in results.errors:
            sample = f" — e.g. {err.samples[0].message}" if err.samples else ""
            out.append(f"  {err.request}: {err.error} ×{err.count}{sample}")
    for note in results.meta.notes:
        out.append(f"note: {note}")
    return "\n".join(out)


def verdict(results: RunResults) -> tuple[bool, str]:
    failed_slos = [s for s in results.slos if not s.passed]
    failed_checks = [c for c in results.checks if c.failed]
    if results.meta.interrupted:
        return False, "INTERRUPTED: partial results saved"
    if failed_slos or failed_checks:
        parts = []
        if failed_slos:
            parts.append(f"{len(failed_slos)} of {len(results.slos)} SLOs failed")
        if failed_checks:
            parts.append(f"{len(failed_checks)} expectations failed")
        return False, "FAILED: " + ", ".join(parts)
    return True, f"PASSED: {len(results.slos)} SLOs, {len(results.checks)} expectations"


__all__ = ["scope_text", "summary", "verdict"]
