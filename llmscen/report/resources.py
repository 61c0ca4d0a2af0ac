"""The resources a run used, as the reports show them: per phase, from the saved stats.

Every report reads `results.resources` (per-phase min/mean/max of each sampled
metric) and says plainly what could not be measured (a GPU without NVML).
"""

from __future__ import annotations

from llmscen.metrics.results import RunResults
from llmscen.report.svg import Axis, Band, Chart, Line, line_chart, value_axis
from llmscen.spec.units import format_size, show, show_value

# what the terminal shows: the totals, not each worker or thread count
TERMINAL = ("client.cpu", "client.memory", "host.cpu", "host.memory")
TERMINAL_SUFFIXES = (".cpu", ".rss", ".utilization", ".memory_used")


def resource_table(results: RunResults, names: list[str] | None = None
                   ) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(phase columns, rows of (metric, "mean · max" per phase)) of the saved stats."""
    stats = {(s.name, s.phase): s for s in results.resources.stats
             if not s.name.startswith("server.")}   # those are in the server table
    phases = [p.name for p in results.phases if any(k[1] == p.name for k in stats)]
    chosen = names if names is not None else list(dict.fromkeys(
        s.name for s in results.resources.stats if not s.name.startswith("server.")))
    rows = []
    for name in chosen:
        cells = []
        for phase in phases:
            s = stats.get((name, phase))
            cells.append("–" if s is None else
                         f"{show(name, s.mean, 'mean')} · {show(name, s.max, 'max')}")
        rows.append((name, cells))
    return phases, rows


def terminal_names(results: RunResults) -> list[str]:
    names = dict.fromkeys(s.name for s in results.resources.stats)
    return [n for n in names if n in TERMINAL or
            (n.startswith(("service.", "gpu.")) and n.endswith(TERMINAL_SUFFIXES))]


def terminal_lines(results: RunResults) -> list[str]:
    """A short table: each phase's mean · max of the totals, and what was not available."""
    names = terminal_names(results)
    out: list[str] = []
    if names:
        phases, rows = resource_table(results, names)
        table = [["resource (mean · max)", *phases], *([n, *cells] for n, cells in rows)]
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        out += ["", *("  ".join(c.rjust(w) if i else c.ljust(w)
                                for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                      for r in table)]
    # what could not be measured, where an SLO asked for it (results.json always says)
    asked = {(s.metric or "").split(".", 1)[0] for s in results.slos}
    for source, why in results.resources.unavailable.items():
        if source in asked:
            out.append(f"{source}: {why}")
    return out


# (title, caption, which metrics, value format)
CHARTS = (
    ("CPU", "cores busy, sampled every second (100% = one core; host: the whole machine)",
     lambda n: n in ("client.cpu", "host.cpu") or (n.startswith("service.") and
                                                   n.endswith(".cpu")), "cpu"),
    ("Memory", "resident memory (RSS) of the client and of each started service's processes",
     lambda n: n == "client.memory" or (n.startswith("service.") and n.endswith(".rss")) or
     (n.startswith("gpu.") and n.endswith(".memory_used")), "size"),
)


def resource_charts(results: RunResults, x: Axis, bands: list[Band]) -> list[Chart]:
    """CPU and memory over the run, one line per metric (every phase's samples)."""
    out = []
    by_name: dict[str, list[tuple[float, float | None]]] = {}
    for s in results.series.resources:
        by_name.setdefault(s.name, []).extend((t + 0.5, v) for t, v in s.points)
    for title, caption, wanted, kind in CHARTS:
        chosen = [(n, sorted(p)) for n, p in by_name.items() if wanted(n)]
        if not chosen:
            continue
        fmt = (lambda v: show_value("cpu", v)) if kind == "cpu" else format_size
        lines = [Line(name, points, f"s{i % 8}") for i, (name, points) in enumerate(chosen)]
        y = value_axis([v for _, points in chosen for _, v in points], fmt)
        svg = line_chart(title, lines, x, y, bands=bands, gap=1.5, zoom=True)
        out.append(Chart(title, svg, [(line.label, line.css) for line in lines], caption))
    return out
