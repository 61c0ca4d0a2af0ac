"""The report's charts, from saved results: rates, latency and load over time; distributions.

Time charts use `metrics.query.windows`, so a bin's rate divides by the time
the bin overlapped a phase, exactly as a `window` SLO does. Long runs are
binned coarser (at most `MAX_BINS` points per line) to keep the file small.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from llmscen.metrics.query import Aggregate, Window, aggregate, windows
from llmscen.metrics.results import RunResults
from llmscen.report.svg import (
    Axis,
    Band,
    Chart,
    Format,
    Hover,
    Line,
    color,
    format_clock,
    line_chart,
    nines,
    nines_axis,
    time_axis,
    value_axis,
)

MAX_BINS = 240
_BIN_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
DISTRIBUTIONS: tuple[tuple[str, str, str], ...] = (
    ("latency", "Latency distribution", "intended start → last byte, per phase"),
    ("ttft", "Time to first token", "intended start → first content, per phase"),
    ("itl", "Inter-token latency", "gap between consecutive content chunks, per phase"),
    ("tpot", "Time per output token", "per request, per phase"),
    ("schedule_lag", "Schedule lag", "actual send − intended start; a long tail means the "
                                     "load generator fell behind"),
)

Value = Callable[[Aggregate], float | None]


def compact_number(value: float) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def duration_format(top: float) -> Format:
    """Tick labels in one unit chosen by the axis maximum (seconds in)."""
    unit, factor = ("s", 1.0) if top >= 1 else ("ms", 1e-3) if top >= 1e-3 else ("µs", 1e-6)
    return lambda v: "0" if v == 0 else f"{round(v / factor, 6):g}{unit}"


def rate_format(v: float) -> str:
    return f"{compact_number(v)}/s"


def run_end(results: RunResults) -> float:
    ends = [p.ended for p in results.phases]
    ends += [s.points[-1].t + 1 for s in results.series.scopes if s.points]
    ends += [f.points[-1][0] + 1 for f in results.series.in_flight if f.points]
    return max(ends, default=0.0)


def bin_seconds(end: float) -> int:
    return next((s for s in _BIN_STEPS if end / s <= MAX_BINS), _BIN_STEPS[-1])


def phase_bands(results: RunResults) -> list[Band]:
    return [Band(p.started, p.ended, p.name, muted=p.warmup or p.kind == "pause")
            for p in results.phases]


def _per_second(part: Callable[[Aggregate], int]) -> Value:
    def value(agg: Aggregate) -> float | None:
        return part(agg) / agg.wall_seconds if agg.wall_seconds > 0 else None
    return value


def _stat(metric: str, stat: str) -> Value:
    return lambda agg: agg.value(metric, stat)


def _over_time(title: str, caption: str, wins: Sequence[Window], x: Axis, bands: list[Band],
               series: Sequence[tuple[str, str, Value]], fmt: Format | None,
               step: int) -> Chart | None:
    """One chart of `series` (label, css class, value of a window) over the windows."""
    columns = [[value(w.aggregate) for w in wins] for _, _, value in series]
    if all(v is None for column in columns for v in column):
        return None
    if fmt is None:
        fmt = duration_format(max((v for c in columns for v in c if v is not None), default=0))
    y = value_axis([v for c in columns for v in c], fmt)
    lines = [Line(label, [((w.start + w.end) / 2, v) for w, v in zip(wins, column, strict=True)],
                  css) for (label, css, _), column in zip(series, columns, strict=True)]
    hovers = [Hover(w.start, w.end, f"{format_clock(w.start)}–{format_clock(w.end)}\n" + "\n".join(
        f"{label}: {'–' if column[i] is None else fmt(column[i])}"   # type: ignore[arg-type]
        for (label, _, _), column in zip(series, columns, strict=True)))
        for i, w in enumerate(wins)]
    svg = line_chart(title, lines, x, y, bands=bands, hovers=hovers, gap=step * 1.5)
    legend = [(label, css) for label, css, _ in series] if len(series) > 1 else []
    return Chart(title, svg, legend, caption)


def _in_flight(results: RunResults, x: Axis, bands: list[Band], step: int) -> Chart | None:
    peak: dict[int, int] = {}
    for s in results.series.in_flight:
        for t, n in s.points:
            b = t - t % step
            peak[b] = max(peak.get(b, 0), n)
    if not peak:
        return None
    ts = sorted(peak)
    points: list[tuple[float, float | None]] = [(float(t), float(peak[t])) for t in ts]
    points.append((float(ts[-1] + step), float(peak[ts[-1]])))
    y = value_axis([float(v) for v in peak.values()], compact_number)
    hovers = [Hover(t, t + step, f"{format_clock(t)}–{format_clock(t + step)}\n"
                    f"at most {peak[t]} in flight") for t in ts]
    svg = line_chart("Requests in flight", [Line("in flight", points, "s0", step=True)], x, y,
                     bands=bands, hovers=hovers)
    return Chart("Requests in flight", svg, [], "most requests open at once in each interval")


def time_charts(results: RunResults) -> list[Chart]:
    end = run_end(results)
    if end <= 0:
        return []
    step = bin_seconds(end)
    wins = list(windows(results, step, include_warmup=True))
    x = time_axis(max([end] + [w.end for w in wins]))
    bands = phase_bands(results)
    per = f"per {step}s interval" if step > 1 else "per second"
    total = aggregate(results, include_warmup=True).counters
    rates: list[tuple[str, str, Value]] = [("ok", "s0", _per_second(lambda a: a.counters.ok))]
    if total.check_failures:
        rates.append(("failed checks", "s1", _per_second(lambda a: a.counters.check_failures)))
    if total.error_total:
        rates.append(("errors", "bad", _per_second(lambda a: a.counters.error_total)))
    percentiles = [(f"p{p}", color(i)) for i, p in enumerate((50, 95, 99))]
    charts = [
        _over_time("Requests per second", f"completed requests {per}", wins, x, bands, rates,
                   rate_format, step),
        _over_time("Latency over time", f"latency percentiles of the requests completed {per}",
                   wins, x, bands, [(n, c, _stat("latency", n)) for n, c in percentiles],
                   None, step),
        _over_time("TTFT over time", f"time-to-first-token percentiles {per}", wins, x, bands,
                   [(n, c, _stat("ttft", n)) for n, c in percentiles], None, step),
        _over_time("Output tokens per second", f"generated tokens {per}", wins, x, bands,
                   [("tokens", "s2", _per_second(lambda a: a.counters.output_tokens))],
                   rate_format, step),
        _in_flight(results, x, bands, step),
    ]
    classes = sorted(total.errors)
    if classes:
        charts.append(_over_time(
            "Errors per second", f"failed requests by error class {per}", wins, x, bands,
            [(name, "bad" if len(classes) == 1 else color(i + 3),
              _per_second(lambda a, name=name: a.counters.errors.get(name, 0)))  # type: ignore[misc]
             for i, name in enumerate(classes)], rate_format, step))
    return [c for c in charts if c is not None]


MARKS = (50.0, 90.0, 95.0, 99.0, 99.9, 99.99, 99.999)   # percentiles the tooltips show


def _nines_points(most: float) -> list[float]:
    """x positions to sample: a fine grid plus the exact marks."""
    grid = {round(i * 0.05, 4) for i in range(round(most / 0.05) + 1)}
    return sorted(grid | {nines(q) for q in MARKS if nines(q) <= most + 1e-9})


def distribution_charts(results: RunResults) -> list[Chart]:
    """One percentile-spectrum chart per duration metric, a line per phase."""
    phases = [p for p in results.phases if p.kind != "pause"]
    aggregates = [(i, p, aggregate(results, phase=p.name)) for i, p in enumerate(phases)]
    charts = []
    for metric, title, caption in DISTRIBUTIONS:
        found = [(i, p, agg, h.count) for i, p, agg in aggregates
                 if (h := agg.histogram(metric)) is not None and h.count]
        if not found:
            continue
        most = min(5.0, max(2.0, math.ceil(math.log10(max(c for *_, c in found)))))
        xs = _nines_points(most)
        wanted = tuple(100 * (1 - 10 ** -x) for x in xs)
        lines = []
        for i, p, agg, _ in found:
            stats = agg.stats(metric, wanted)
            points = [(x, stats[f"p{q:g}"]) for x, q in zip(xs, wanted, strict=True)]
            label = f"{p.name} (warmup)" if p.warmup and "warmup" not in p.name else p.name
            lines.append(Line(label, points, color(i)))
        top = max((v for line in lines for _, v in line.points if v is not None), default=0.0)
        fmt = duration_format(top)
        y = value_axis([top], fmt)
        x = nines_axis(most)
        hovers = _nines_hovers(lines, fmt)
        svg = line_chart(title, lines, x, y, hovers=hovers)
        charts.append(Chart(title, svg, [(line.label, line.css) for line in lines], caption))
    return charts


def _nines_hovers(lines: list[Line], fmt: Format) -> list[Hover]:
    """Tooltips at the usual percentiles, each covering the x range nearest to it."""
    marks = [(q, nines(q)) for q in MARKS]
    most = max((x for line in lines for x, _ in line.points), default=0.0)
    marks = [(q, x) for q, x in marks if x <= most + 1e-9]
    hovers = []
    for k, (q, x) in enumerate(marks):
        lo = 0.0 if k == 0 else (marks[k - 1][1] + x) / 2
        hi = most if k == len(marks) - 1 else (x + marks[k + 1][1]) / 2
        values = []
        for line in lines:
            near = min(line.points, key=lambda pt: abs(pt[0] - x))
            values.append(f"{line.label}: {'–' if near[1] is None else fmt(near[1])}")
        hovers.append(Hover(lo, hi, f"p{q:g}\n" + "\n".join(values)))
    return hovers
