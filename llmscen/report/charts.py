"""The report's charts, from saved results: load, latency and errors over time; distributions.

Time charts use `metrics.query.windows`, so a bin's rate divides by the time
the bin overlapped a phase, exactly as a `window` SLO does. Long runs are
binned coarser (at most `MAX_BINS` points per line) to keep the file small.
There is a set of time charts for the whole run and one per request (and per
target, when there are several), on one shared time axis, so a mix of short
and long requests does not hide behind one latency line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmscen.metrics.query import Aggregate, Window, aggregate, windows
from llmscen.metrics.results import Counters, InFlightSeries, PhaseInfo, RunResults
from llmscen.report.produced import produced
from llmscen.report.resources import resource_charts
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
MAX_SCOPES = 12            # chart sets beyond the whole run's: requests, then targets
_BIN_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
DISTRIBUTIONS: tuple[tuple[str, str, str], ...] = (
    ("latency", "Latency distribution", "intended start → last byte, per phase"),
    ("ttft", "Time to first token", "intended start → first content, per phase"),
    ("itl", "Inter-token latency", "gap between consecutive content chunks, per phase"),
    ("tpot", "Time per output token", "per request, per phase"),
    ("schedule_lag", "Schedule lag", "actual send − intended start; a long tail means the "
                                     "load generator fell behind"),
)
ASKED = "s6"               # the load asked for: grey and dashed, beside what was achieved

Value = Callable[[Aggregate], float | None]


@dataclass(frozen=True)
class ChartSet:
    """The time charts of one scope: the whole run, a request or a target."""

    key: str                   # "all", "request-3", ... (an id the page's script uses)
    label: str
    kind: str                  # all | request | target
    charts: list[Chart]


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


def percent_format(v: float) -> str:
    return f"{v * 100:.3g}%"


def run_end(results: RunResults) -> float:
    ends = [p.ended for p in results.phases]
    ends += [s.points[-1].t + 1 for s in results.series.scopes if s.points]
    ends += [f.points[-1][0] + 1 for f in results.series.in_flight if f.points]
    return max(ends, default=0.0)


def bin_seconds(end: float) -> int:
    return next((s for s in _BIN_STEPS if end / s <= MAX_BINS), _BIN_STEPS[-1])


def phase_bands(results: RunResults) -> list[Band]:
    """A band per phase; the groups of a parallel phase share its band (they overlap)."""
    parallel = {p.name for p in results.phases if p.kind == "parallel"}
    return [Band(p.started, p.ended, p.name, muted=p.warmup or p.kind == "pause")
            for p in results.phases if p.sweep not in parallel]


def _per_second(part: Callable[[Aggregate], int]) -> Value:
    def value(agg: Aggregate) -> float | None:
        return part(agg) / agg.wall_seconds if agg.wall_seconds > 0 else None
    return value


def _share(part: Callable[[Aggregate], int]) -> Value:
    def value(agg: Aggregate) -> float | None:
        return part(agg) / agg.counters.requests if agg.counters.requests else None
    return value


def _stat(metric: str, stat: str) -> Value:
    return lambda agg: agg.value(metric, stat)


def asked_at(phases: Sequence[PhaseInfo], t: float, kind: str) -> float | None:
    """The load asked for at `t` (run seconds) by a phase of `kind`: its planned curve,
    linearly between points; None outside such phases."""
    for p in phases:
        if p.kind != kind or not p.planned or not p.planned[0][0] <= t <= p.planned[-1][0]:
            continue
        for (t0, v0), (t1, v1) in zip(p.planned, p.planned[1:], strict=False):
            if t0 <= t <= t1:
                return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
        return p.planned[-1][1]
    return None


@dataclass(frozen=True)
class _Grid:
    """What every time chart of a report shares: bins, the time axis, the phase bands."""

    wins: list[Window]
    x: Axis
    bands: list[Band]
    step: int

    @property
    def per(self) -> str:
        return f"per {self.step}s interval" if self.step > 1 else "per second"


def _over_time(title: str, caption: str, grid: _Grid,
               series: Sequence[tuple[str, str, Value]], fmt: Format | None,
               extra: Sequence[tuple[str, list[float | None]]] = ()) -> Chart | None:
    """One chart of `series` (label, css class, value of a window) over the grid's windows;
    `extra` adds asked-for lines (label, a value per window) drawn dashed."""
    wins = grid.wins
    columns = [[value(w.aggregate) for w in wins] for _, _, value in series]
    if all(v is None for column in columns for v in column):
        return None
    asked = [(label, values) for label, values in extra if any(v is not None for v in values)]
    every = [*columns, *(values for _, values in asked)]
    if fmt is None:
        fmt = duration_format(max((v for c in every for v in c if v is not None), default=0))
    y = value_axis([v for c in every for v in c], fmt)
    mids = [(w.start + w.end) / 2 for w in wins]
    lines = [Line(label, list(zip(mids, values, strict=True)), ASKED, dash=True)
             for label, values in asked]
    lines += [Line(label, list(zip(mids, column, strict=True)), css)
              for (label, css, _), column in zip(series, columns, strict=True)]
    labels = [label for label, _ in asked] + [label for label, _, _ in series]
    values = [v for _, v in asked] + columns
    hovers = [Hover(w.start, w.end, f"{format_clock(w.start)}–{format_clock(w.end)}\n" + "\n".join(
        f"{label}: {'–' if column[i] is None else fmt(column[i])}"   # type: ignore[arg-type]
        for label, column in zip(labels, values, strict=True)))
        for i, w in enumerate(wins)]
    svg = line_chart(title, lines, grid.x, y, bands=grid.bands, hovers=hovers,
                     gap=grid.step * 1.5, zoom=True)
    legend = [(line.label, line.css + (" dash" if line.dash else "")) for line in lines] \
        if len(lines) > 1 else []
    return Chart(title, svg, legend, caption)


def _peaks(series: Sequence[InFlightSeries], step: int) -> dict[int, int]:
    peak: dict[int, int] = {}
    for s in series:
        for t, n in s.points:
            b = t - t % step
            peak[b] = max(peak.get(b, 0), n)
    return peak


def _concurrency(results: RunResults, grid: _Grid) -> Chart | None:
    """Users asked for and running (closed phases), and requests in flight."""
    step = grid.step
    flying, running = _peaks(results.series.in_flight, step), _peaks(results.series.users, step)
    if not flying and not running:
        return None
    closed = [p for p in results.phases if p.kind == "closed" and p.planned]
    asked = [(t, v) for p in closed for t, v in p.planned]
    lines: list[Line] = []
    if asked:
        lines.append(Line("users asked for", asked, ASKED, dash=True))
    for label, css, peak in (("users running", "s4", running), ("in flight", "s0", flying)):
        if peak:
            ts = sorted(peak)
            points: list[tuple[float, float | None]] = [(float(t), float(peak[t])) for t in ts]
            points.append((float(ts[-1] + step), float(peak[ts[-1]])))
            lines.append(Line(label, points, css, step=True))
    top = [float(v) for v in (*flying.values(), *running.values())] + [v for _, v in asked]
    y = value_axis(top, compact_number)
    hovers = []
    for t in sorted({*flying, *running}):
        parts = [f"{format_clock(t)}–{format_clock(t + step)}"]
        if t in running:
            parts.append(f"{running[t]} users running")
        want = asked_at(results.phases, t + step / 2, "closed")
        if want is not None:
            parts.append(f"{want:.0f} users asked for")
        if t in flying:
            parts.append(f"at most {flying[t]} in flight")
        hovers.append(Hover(t, t + step, "\n".join(parts)))
    title = "Users and requests in flight" if running or asked else "Requests in flight"
    svg = line_chart(title, lines, grid.x, y, bands=grid.bands, hovers=hovers, zoom=True)
    legend = [(line.label, line.css + (" dash" if line.dash else "")) for line in lines] \
        if len(lines) > 1 else []
    caption = ("virtual users of closed phases (asked for, and running), and the most "
               "requests open at once in each interval")
    return Chart(title, svg, legend, caption if running or asked else
                 "most requests open at once in each interval")


def _charts_of(results: RunResults, grid: _Grid, made: set[str], *, whole: bool) -> list[Chart]:
    wins = grid.wins
    total = Counters()
    for w in wins:
        total.add(w.aggregate.counters)
    per = grid.per
    rates: list[tuple[str, str, Value]] = [("ok", "s0", _per_second(lambda a: a.counters.ok))]
    if total.check_failures:
        rates.append(("failed checks", "s1", _per_second(lambda a: a.counters.check_failures)))
    if total.error_total:
        rates.append(("errors", "bad", _per_second(lambda a: a.counters.error_total)))
    if total.not_sent:
        rates.append(("not sent", "s7", _per_second(lambda a: a.counters.not_sent)))
    asked: list[tuple[str, list[float | None]]] = []
    if whole:
        asked = [("asked for", [asked_at(results.phases, (w.start + w.end) / 2, "open")
                                for w in wins])]
    percentiles = [(f"p{p}", color(i)) for i, p in enumerate((50, 95, 99))]
    charts = [
        _over_time("Requests per second", f"completed requests {per}"
                   + (", beside the arrival rate the open phases asked for" if whole and
                      any(v is not None for v in asked[0][1]) else ""),
                   grid, rates, rate_format, asked),
        _concurrency(results, grid) if whole else None,
        _over_time("Latency over time", f"latency percentiles of the requests completed {per}",
                   grid, [(n, c, _stat("latency", n)) for n, c in percentiles], None),
    ]
    if "ttft" in made:
        charts.append(_over_time("TTFT over time", f"time-to-first-token percentiles {per}",
                                 grid, [(n, c, _stat("ttft", n)) for n, c in percentiles], None))
    if "output_token_throughput" in made:
        charts.append(_over_time("Output tokens per second", f"generated tokens {per}", grid,
                                 [("tokens", "s2",
                                   _per_second(lambda a: a.counters.output_tokens))],
                                 rate_format))
    classes = sorted(total.errors)
    if classes:
        shares: list[tuple[str, str, Value]] = [
            (name, "bad" if len(classes) == 1 else color(i + 3),
             _share(lambda a, name=name: a.counters.errors.get(name, 0)))  # type: ignore[misc]
            for i, name in enumerate(classes)]
        charts.append(_over_time("Error rate over time",
                                 f"failed requests / requests, by error class, {per}", grid,
                                 shares, percent_format))
    return [c for c in charts if c is not None]


def time_chart_sets(results: RunResults) -> list[ChartSet]:
    """The whole run's time charts, then each request's and each target's (when several)."""
    end = run_end(results)
    if end <= 0:
        return []
    step = bin_seconds(end)
    made = produced(results)

    def grid(request: str | None = None, target: str | None = None) -> _Grid:
        wins = list(windows(results, step, include_warmup=True, request=request,
                            target=target))
        return _Grid(wins, x, phase_bands(results), step)

    x = time_axis(max([end] + [w.end for w in windows(results, step, include_warmup=True)]))
    whole = _charts_of(results, grid(), made, whole=True)
    if not whole:
        return []
    whole += resource_charts(results, x, phase_bands(results))
    sets = [ChartSet("all", "whole run", "all", whole)]
    names = list(dict.fromkeys(r.name for r in results.requests)) or \
        list(dict.fromkeys(s.request.split(".", 1)[0] for s in results.scopes))
    targets = list(dict.fromkeys(s.target for s in results.scopes))
    scoped: list[tuple[str, str, _Grid]] = []
    if len(names) > 1:
        scoped += [("request", n, grid(request=n)) for n in names]
    if len(targets) > 1:
        scoped += [("target", t, grid(target=t)) for t in targets]
    for i, (kind, name, g) in enumerate(scoped[:MAX_SCOPES]):
        charts = _charts_of(results, g, made, whole=False)
        if charts:
            sets.append(ChartSet(f"{kind}-{i}", name, kind, charts))
    return sets


def time_charts(results: RunResults) -> list[Chart]:
    """The whole run's time charts."""
    sets = time_chart_sets(results)
    return sets[0].charts if sets else []


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
