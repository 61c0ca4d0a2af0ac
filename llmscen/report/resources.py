"""The resources a run used, as the reports show them: per phase, from the saved stats.

Every report reads `results.resources` (per-phase min/mean/max of each sampled
metric) and says plainly what could not be measured (a GPU without NVML).
"""

from __future__ import annotations

from llmscen.metrics.results import RunResults
from llmscen.spec.units import show

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
    for source, why in results.resources.unavailable.items():
        out.append(f"{source}: {why}")
    return out
