"""What the HTML and Markdown reports show, computed from saved results only.

Values are formatted here (with `assertions.slo.show`, so units match the
terminal and SLO messages); templates only lay them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmscen.assertions.slo import show
from llmscen.metrics.query import Aggregate, aggregate
from llmscen.metrics.results import PhaseInfo, RunResults, ServerMetrics, SloResult
from llmscen.report.fit_view import fit_summary
from llmscen.report.produced import produced
from llmscen.report.svg import format_clock
from llmscen.report.terminal import verdict
from llmscen.spec.metrics import CUSTOM_PREFIX, HISTOGRAM_METRICS, lookup, sample_key, split_key
from llmscen.spec.server_families import family_of, title_of
from llmscen.spec.units import format_duration

KEY_METRICS = ("latency", "ttft", "itl", "tpot")
STATS = ("p50", "p90", "p95", "p99", "p99.9", "max", "mean")
COUNTER_COLUMNS = ("Requests", "OK", "Errors", "Failed checks", "Error rate", "Throughput",
                   "Output tokens/s")
METRIC_TITLES = {
    "latency": "Latency", "latency_sent": "Latency from send", "ttft": "Time to first token",
    "ttft_sent": "TTFT from send", "itl": "Inter-token latency", "tpot": "Time per output token",
    "schedule_lag": "Schedule lag", "output_tokens": "Output tokens", "input_tokens":
    "Input tokens", "chunks": "Chunks", "bytes_received": "Bytes received",
    "ttft_answer": "Time to first answer token", "reasoning_tokens": "Reasoning tokens",
    "answer_tokens": "Answer tokens",
}
# Recorded for every stream, but telling only when something reasoned (else 0, or ttft).
REASONING_METRICS = frozenset({"ttft_answer", "reasoning_tokens", "answer_tokens"})
WORDS = {"passed": "PASSED", "failed": "FAILED", "interrupted": "INTERRUPTED",
         "could_not_run": "COULD NOT RUN", "invalid_measurement": "INVALID MEASUREMENT"}
CSS = {"passed": "passed", "failed": "failed", "interrupted": "interrupted",
       "could_not_run": "error", "invalid_measurement": "error"}


@dataclass(frozen=True)
class Verdict:
    status: str        # passed | failed | interrupted | error (a CSS class too)
    word: str          # PASSED, FAILED, INTERRUPTED, COULD NOT RUN, INVALID MEASUREMENT
    detail: str


def verdict_of(results: RunResults) -> Verdict:
    """The saved outcome, as the reports show it."""
    _, line = verdict(results)
    status = results.outcome.status if results.outcome else "failed"
    _, _, detail = line.partition(": ")
    return Verdict(CSS[status], WORDS[status], detail)


@dataclass(frozen=True)
class Scoped:
    """A row label and the aggregate behind it."""

    label: str
    group: str                 # phase | total | request | target
    agg: Aggregate
    phase: PhaseInfo | None = None
    note: str = ""             # e.g. warmup


def scopes(results: RunResults) -> list[Scoped]:
    """Each non-pause phase, the whole run (warmup excluded), each request, each target."""
    rows = [Scoped(p.name, "phase", aggregate(results, phase=p.name), p,
                   "warmup" if p.warmup else "")
            for p in results.phases if p.kind != "pause"]
    rows.append(Scoped("whole run", "total", aggregate(results),
                       note="warmup excluded" if any(p.warmup for p in results.phases) else ""))
    requests = list(dict.fromkeys(s.request for s in results.scopes))
    rows += [Scoped(r, "request", aggregate(results, request=r)) for r in requests]
    targets = list(dict.fromkeys(s.target for s in results.scopes))
    if len(targets) > 1:
        rows += [Scoped(t, "target", aggregate(results, target=t)) for t in targets]
    return rows


def counter_cells(agg: Aggregate) -> list[str]:
    c = agg.counters
    return [f"{c.requests:,}", f"{c.ok:,}", f"{c.error_total:,}", f"{c.check_failures:,}",
            show("error_rate", agg.value("error_rate")), show("throughput", agg.value("throughput")),
            show("output_token_throughput", agg.value("output_token_throughput"))]


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Scoped, list[str]]]
    description: str = ""
    notes: list[str] = field(default_factory=list)
    key: str = ""


def phase_timing(phase: PhaseInfo | None) -> list[str]:
    if phase is None:
        return ["", "", ""]
    planned = phase.planned_duration
    took = f"{phase.wall:.1f}s" if phase.wall < 60 else format_clock(phase.wall)
    if planned is not None and abs(planned - phase.wall) >= 0.5:
        took += f" (planned {format_duration(planned)})"
    return [phase.kind, format_clock(phase.started), took]


def counters_table(rows: list[Scoped]) -> Table:
    out = [(r, (phase_timing(r.phase) if r.group in ("phase", "total") else ["", "", ""])
            + counter_cells(r.agg)) for r in rows]
    estimated = max((r.agg.counters.tokens_estimated for r in rows if r.group == "total"),
                    default=0)
    notes = [f"token counts were estimated (no usage from the server) for {estimated} "
             f"requests"] if estimated else []
    return Table("Counters and rates", ("Kind", "Start", "Took", *COUNTER_COLUMNS), out,
                 notes=notes)


def _description(metric: str) -> str:
    info = lookup(metric)
    return info.description if info is not None else ""


def metric_tables(rows: list[Scoped]) -> list[Table]:
    """One table per histogram metric that has data, rows per scope."""
    tables = []
    custom = sorted({m for r in rows for m in r.agg.recorded() if m.startswith(CUSTOM_PREFIX)})
    reasoned = any((r.agg.value("reasoning_tokens", "max") or 0) > 0 for r in rows)
    for metric in (*HISTOGRAM_METRICS, *custom):
        if not any(r.agg.histogram(metric) for r in rows):
            continue
        if metric in REASONING_METRICS and not reasoned:
            continue
        out = []
        for r in rows:
            stats = r.agg.stats(metric)
            count = int(stats["count"] or 0)
            out.append((r, [show(metric, stats[s]) if count else "–" for s in STATS]
                        + [f"{count:,}"]))
        missed = max((r.agg.out_of_range.get(metric, 0) for r in rows), default=0)
        notes = [f"{missed} values were outside the histogram's range and not recorded"] \
            if missed else []
        tables.append(Table(METRIC_TITLES.get(metric, metric), (*STATS, "count"), out,
                            _description(metric), notes, metric))
    return tables


@dataclass(frozen=True)
class SloRow:
    passed: bool | None   # None: not judged
    text: str
    scope: str
    measured: str
    threshold: str
    message: str
    why: str           # the message, when it adds to the columns (windows, nothing measured)
    cause: str = ""    # a failed SLO: what the telemetry showed where it failed


def slo_scope(slo: SloResult) -> str:
    parts = [f"{k} {v}" for k, v in slo.scope.items() if v is not None and k != "window"]
    window = slo.scope.get("window")
    if window:
        parts.append(f"every {format_duration(float(window))} window")
    return ", ".join(parts) or "whole run"


def slo_rows(results: RunResults) -> list[SloRow]:
    rows = []
    for slo in results.slos:
        metric = slo.metric or ""
        stat = slo.stat
        unit_metric = "amount" if stat == "count" else metric
        written = ""
        for op in ("<=", ">=", "==", "<", ">"):
            if op in slo.text:
                written = f"{op} {slo.text.split(op, 1)[1].strip()}"
                break
        if slo.measured is not None:
            measured = show(unit_metric, slo.measured)
        else:   # a window SLO that held keeps no single value
            measured = "every window" if slo.passed and slo.scope.get("window") else "–"
        if slo.fit is not None:   # R² and slope against their bounds
            measured, written = fit_summary(slo)
        adds = not slo.passed and (slo.measured is None or bool(slo.scope.get("window")))
        rows.append(SloRow(slo.passed, slo.text, slo_scope(slo), measured,
                           written or show(unit_metric, slo.threshold), slo.message,
                           slo.message if adds else "",
                           slo.cause.text if slo.cause is not None else ""))
    return rows


TENSOR_CHECKS = ("outputs", "batch_consistent")


def key_figures(results: RunResults) -> list[tuple[str, str, str]]:
    """(label, value, detail) for the summary strip; the whole run, warmup excluded. Tiles
    follow what the run produced: tokens for LLMs, images and tensor checks for FLUX."""
    agg = aggregate(results)
    c = agg.counters
    made = produced(results)
    tokens = ("output_token_throughput" in made)
    figures = [
        ("Requests", f"{c.requests:,}", f"{c.ok:,} ok" + (f" · {c.not_sent:,} not sent"
                                                         if c.not_sent else "")),
        ("Success rate", show("success_rate", agg.value("success_rate")),
         f"{c.error_total:,} errors · {c.check_failures:,} failed checks"),
        ("Throughput", show("throughput", agg.value("throughput")),
         show("output_token_throughput", agg.value("output_token_throughput")) + " tokens"
         if tokens else "successful requests per second"),
        ("Latency p50", show("latency", agg.value("latency", "p50")),
         "p99 " + show("latency", agg.value("latency", "p99"))),
    ]
    if "ttft" in made:
        figures.append(("TTFT p50", show("ttft", agg.value("ttft", "p50")),
                        "p99 " + show("ttft", agg.value("ttft", "p99"))))
    if "itl" in made:
        figures.append(("ITL p50", show("itl", agg.value("itl", "p50")),
                        "p99 " + show("itl", agg.value("itl", "p99"))))
    if "images_per_second" in made:
        figures.append(("Images per second", show("images_per_second",
                                                  agg.value("images_per_second")),
                        f"{c.images:,} images"))
    tensors = [k for k in results.checks if k.expectation in TENSOR_CHECKS]
    if tensors:
        passed, total = sum(k.passed for k in tensors), sum(k.passed + k.failed for k in tensors)
        figures.append(("Tensor checks", f"{passed:,} of {total:,}",
                        ", ".join(sorted({k.expectation for k in tensors})) + " passed"))
    return figures


CASE_WORDS = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP", "error": "ERROR"}
CASE_KINDS = {"run": "Run", "slo": "SLO", "request": "Request", "expectation": "Expectation"}


@dataclass(frozen=True)
class CaseRow:
    status: str        # passed | failed | skipped | error (a CSS class too)
    word: str
    kind: str
    name: str
    message: str


def case_rows(results: RunResults) -> list[CaseRow]:
    """Every test case of the saved outcome (skipped ones too), in its order. A case skipped
    for a reason the banner shows says so instead of repeating it."""
    outcome = results.outcome
    cases = outcome.cases if outcome else []
    shown = {f"not judged: {r.message}" for r in outcome.reasons} if outcome else set()
    return [CaseRow(c.status, CASE_WORDS[c.status], CASE_KINDS.get(c.kind, c.kind), c.name,
                    "not judged: see why in the banner above" if c.message in shown
                    else c.message) for c in cases]


def case_counts(rows: list[CaseRow]) -> str:
    """`14 cases: 12 passed, 1 failed, 1 skipped`."""
    counts = {s: sum(1 for r in rows if r.status == s) for s in CASE_WORDS}
    parts = [f"{n} {s}" for s, n in counts.items() if n]
    return f"{len(rows)} case{'s' if len(rows) != 1 else ''}: " + ", ".join(parts)


def reasons(results: RunResults) -> list[tuple[str, str]]:
    """(kind, message) of why the outcome is what it is."""
    return [(r.kind, r.message) for r in (results.outcome.reasons if results.outcome else [])]


def verdict_detail(results: RunResults) -> str:
    """The headline's detail, unless it only repeats the reasons listed under it."""
    detail = verdict_of(results).detail
    listed = "; ".join(message for _, message in reasons(results))
    return "" if detail == listed else detail


def client_text(results: RunResults) -> str:
    c = results.meta.client
    if c is None:
        return "–"
    cores = f" · {c.cores} cores" if c.cores else ""
    memory = f" · {c.memory_gb:g} GiB" if c.memory_gb else ""
    return " · ".join(p for p in (c.host, c.os, c.python, c.cpu) if p) + cores + memory


def server_text(server: dict[str, str]) -> str:
    """`vLLM 0.6.3 · owned_by vllm · server header uvicorn`."""
    head = " ".join(v for k in ("name", "version") if (v := server.get(k)))
    rest = [f"{k} {v}" for k, v in server.items() if k not in ("name", "version")]
    return " · ".join([p for p in [head, *rest] if p])


def run_duration(results: RunResults) -> str:
    meta = results.meta
    if meta.started_at and meta.ended_at:
        return f"{(meta.ended_at - meta.started_at).total_seconds():.1f}s"
    return f"{max((p.ended for p in results.phases), default=0.0):.1f}s"


def is_counter(name: str) -> bool:
    """For results without types (older plugins and files): Prometheus counters end so."""
    return name.endswith(("_total", "_sum", "_count", "_created"))


def server_tables(results: RunResults) -> list[tuple[str, list[str], list[tuple[str, list[str]]]]]:
    """Per target: (target, phase columns, rows of (series, value per phase)). A counter
    shows what the phase did to it; a gauge its mean · max over the phase's readings (its
    value at the phase's end when it was read only then), as its `# TYPE` says."""
    out = []
    stats = {(s.target, sample_key(s.name.removeprefix("server."), s.labels), s.phase): s
             for s in results.resources.stats if s.name.startswith("server.")}
    targets = list(dict.fromkeys(m.target for m in results.server_metrics))
    for target in targets:
        entries = [m for m in results.server_metrics if m.target == target]
        phases = [m.phase for m in entries]

        def counter(key: str, entry: ServerMetrics) -> bool:
            name = split_key(key)[0]
            return entry.types.get(name) == "counter" if entry.types else is_counter(name)

        keys = sorted({k for m in entries for k in (*m.delta, *m.after)},
                      key=lambda k: (not counter(k, entries[0]), k))
        rows = []
        for key in keys:
            cells = []
            for m in entries:
                gauge = stats.get((target, key, m.phase))
                if counter(key, m):
                    cells.append(_number(m.delta.get(key)))
                elif gauge is not None:
                    cells.append(f"{_number(gauge.mean)} · {_number(gauge.max)}")
                else:
                    cells.append(_number(m.after.get(key)))
            rows.append((key, cells))
        out.append((target or "", phases, rows))
    return out


def server_label(key: str) -> tuple[str, str]:
    """(friendly name with unit, meaning) of a series of a known family; ('', '') else."""
    name = split_key(key)[0]
    family = family_of(name)
    if family is None:
        return "", ""
    return f"{title_of(name)} ({family.unit})", family.meaning


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.4g}"
