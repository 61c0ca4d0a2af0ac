"""Small server-side SVG line charts, so a report needs no network and reads without script.

Colours come from CSS classes (`s0`..`s7`, `bad`) that the page styles for its
light and dark themes. Every text is escaped here: phase, request and error
names come from the user's scenario or the server.

The page's own small script (templates/report.js) adds what needs a browser:
each line carries `data-series` so the legend can hide it, and a time chart
(`zoom=True`) keeps its plot in a clipped inner `<svg class="plot">` and its
x range in `data-*` attributes, so a dragged range zooms every time chart of
the page at once and the x ticks are redrawn for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

WIDTH, HEIGHT = 540, 230
LEFT, RIGHT, TOP, BOTTOM = 54, 14, 24, 28
PALETTE_SIZE = 8
_CHAR_WIDTH = 6.2          # rough width of one 11px label character, to skip labels that won't fit

Format = Callable[[float], str]


@dataclass(frozen=True)
class Line:
    label: str
    points: Sequence[tuple[float, float | None]]   # (x, y); a None y breaks the line
    css: str = "s0"
    step: bool = False      # hold each value until the next x (counts per interval)
    dash: bool = False      # e.g. the load asked for, beside the load achieved


@dataclass(frozen=True)
class Band:
    """A shaded x range, e.g. a phase."""

    start: float
    end: float
    label: str
    muted: bool = False     # e.g. a warmup phase


@dataclass(frozen=True)
class Axis:
    lo: float
    hi: float
    ticks: Sequence[tuple[float, str]]


@dataclass(frozen=True)
class Hover:
    """An x range that shows `text` as a tooltip."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Chart:
    title: str
    svg: Markup
    legend: list[tuple[str, str]] = field(default_factory=list)   # (label, css class)
    caption: str = ""


def color(index: int) -> str:
    return f"s{index % PALETTE_SIZE}"


def nice_step(span: float, count: int = 5) -> float:
    """A 1-2-5 step that cuts `span` into about `count` parts."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * power >= raw:
            return m * power
    return 10 * power


def value_axis(values: Sequence[float | None], fmt: Format, count: int = 4) -> Axis:
    """A linear axis from 0 to a round number above the largest value."""
    top = max((v for v in values if v is not None), default=0.0)
    if top <= 0:
        top = 1.0
    step = nice_step(top, count)
    hi = step * math.ceil(top / step - 1e-9)
    n = round(hi / step)
    return Axis(0.0, hi, [(i * step, fmt(i * step)) for i in range(n + 1)])


_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
               43200, 86400)


def format_clock(seconds: float) -> str:
    """`45s`, `2m30s`, `1h05m`: a time offset for axis labels and tooltips."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m" + (f"{s % 60:02d}s" if s % 60 else "")
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def time_axis(end: float, count: int = 8) -> Axis:
    end = max(end, 1.0)
    step = next((s for s in _TIME_STEPS if end / s <= count), _TIME_STEPS[-1])
    ticks = [(float(t), format_clock(t)) for t in range(0, int(end) + 1, step)]
    return Axis(0.0, end, ticks)


def nines_axis(most: float) -> Axis:
    """x = log10(1 / (1 - p)): p50 .. p99.99 spread evenly, as HdrHistogram plots do."""
    labels = ((0.0, "min"), (nines(50), "p50"), (1.0, "p90"), (2.0, "p99"), (3.0, "p99.9"),
              (4.0, "p99.99"), (5.0, "p99.999"))
    return Axis(0.0, most, [(x, text) for x, text in labels if x <= most + 1e-9])


def nines(percentile: float) -> float:
    return -math.log10(1 - percentile / 100)


class _Frame:
    """Maps data coordinates to the plot area."""

    def __init__(self, x: Axis, y: Axis, width: int, height: int) -> None:
        self.x, self.y = x, y
        self.left, self.right = LEFT, width - RIGHT
        self.top, self.bottom = TOP, height - BOTTOM

    def px(self, x: float) -> float:
        span = (self.x.hi - self.x.lo) or 1.0
        return self.left + (x - self.x.lo) / span * (self.right - self.left)

    def py(self, y: float) -> float:
        span = (self.y.hi - self.y.lo) or 1.0
        clamped = min(max(y, self.y.lo), self.y.hi)
        return self.bottom - (clamped - self.y.lo) / span * (self.bottom - self.top)


def _path(frame: _Frame, line: Line, gap: float | None) -> str:
    parts: list[str] = []
    pen_up = True
    last_x: float | None = None
    for x, y in line.points:
        if y is None or (gap is not None and last_x is not None and x - last_x > gap):
            pen_up = True
        if y is None:
            last_x = None
            continue
        px, py = frame.px(x), frame.py(y)
        if pen_up:
            parts.append(f"M{px:.1f} {py:.1f}h0")   # h0: a lone point still shows as a dot
            pen_up = False
        elif line.step:
            parts.append(f"H{px:.1f}V{py:.1f}")
        else:
            parts.append(f"L{px:.1f} {py:.1f}")
        last_x = x
    return "".join(parts)


def line_chart(title: str, lines: Sequence[Line], x: Axis, y: Axis, *,
               bands: Sequence[Band] = (), hovers: Sequence[Hover] = (),
               gap: float | None = None, width: int = WIDTH, height: int = HEIGHT,
               zoom: bool = False) -> Markup:
    """An SVG line chart; `gap` breaks a line where consecutive x differ by more; `zoom`
    makes its x range zoomable by the page's script (time charts)."""
    frame = _Frame(x, y, width, height)
    zoomable = (f' data-zoom="x" data-lo="{x.lo:g}" data-hi="{x.hi:g}" '
                f'data-left="{frame.left}" data-right="{frame.right}" '
                f'data-top="{frame.top}" data-bottom="{frame.bottom}"') if zoom else ""
    out: list[str] = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}"{zoomable}>'
    ]
    labels: list[str] = []
    plot: list[str] = []    # what a zoom stretches: bands, lines, hover areas
    for i, band in enumerate(bands):
        x0, x1 = frame.px(max(band.start, x.lo)), frame.px(min(band.end, x.hi))
        if x1 <= x0:
            continue
        kind = "band muted" if band.muted else f"band b{i % 2}"
        plot.append(f'<g class="{kind}"><title>{escape(band.label)}</title>'
                    f'<rect x="{x0:.1f}" y="{frame.top}" width="{x1 - x0:.1f}" '
                    f'height="{frame.bottom - frame.top}"/>')
        if i:
            plot.append(f'<line class="edge" x1="{x0:.1f}" x2="{x0:.1f}" y1="{frame.top}" '
                        f'y2="{frame.bottom}"/>')
        plot.append("</g>")
        if len(band.label) * _CHAR_WIDTH + 8 <= x1 - x0:
            labels.append(f'<text class="band-label" x="{x0 + 4:.1f}" y="{frame.top - 7}">'
                          f'{escape(band.label)}</text>')
    if labels:
        out.append('<g class="band-labels">' + "".join(labels) + "</g>")
    if not zoom:
        out += plot
        plot = []
    for value, text in y.ticks:
        py = frame.py(value)
        out.append(f'<line class="grid" x1="{frame.left}" x2="{frame.right}" y1="{py:.1f}" '
                   f'y2="{py:.1f}"/><text class="tick" x="{frame.left - 6}" y="{py + 4:.1f}" '
                   f'text-anchor="end">{escape(text)}</text>')
    out.append('<g class="xticks">')
    for value, text in x.ticks:
        px = frame.px(value)
        out.append(f'<line class="tick-mark" x1="{px:.1f}" x2="{px:.1f}" y1="{frame.bottom}" '
                   f'y2="{frame.bottom + 4}"/><text class="tick" x="{px:.1f}" '
                   f'y="{frame.bottom + 17}" text-anchor="middle">{escape(text)}</text>')
    out.append("</g>")
    out.append(f'<line class="axis" x1="{frame.left}" x2="{frame.right}" y1="{frame.bottom}" '
               f'y2="{frame.bottom}"/>')
    target = plot if zoom else out
    for index, line in enumerate(lines):
        d = _path(frame, line, gap)
        if d:
            dash = " dash" if line.dash else ""
            target.append(f'<path class="line {line.css}{dash}" data-series="{index}" d="{d}">'
                          f'<title>{escape(line.label)}</title></path>')
    if hovers:
        target.append('<g class="hover">')
        for h in hovers:
            x0, x1 = frame.px(max(h.start, x.lo)), frame.px(min(h.end, x.hi))
            if x1 > x0:
                target.append(f'<rect x="{x0:.1f}" y="{frame.top}" width="{x1 - x0:.1f}" '
                              f'height="{frame.bottom - frame.top}"><title>{escape(h.text)}'
                              f'</title></rect>')
        target.append("</g>")
    if zoom:   # an inner viewport clips what a zoom pushes past the axes
        wide, tall = frame.right - frame.left, frame.bottom - frame.top
        out.append(f'<svg class="plot" x="{frame.left}" y="{frame.top}" width="{wide}" '
                   f'height="{tall}"><g class="zoom" transform="translate({-frame.left} '
                   f'{-frame.top})">' + "".join(plot) + "</g></svg>")
    out.append("</svg>")
    return Markup("".join(out))
