"""A replay's fidelity, as the terminal, HTML and Markdown reports show it: how close the
arrivals came to the trace's times, and the server's prefix-cache hit rate."""

from __future__ import annotations

from dataclasses import dataclass

from llmscen.metrics.results import ReplayInfo, RunResults
from llmscen.spec.units import show


@dataclass(frozen=True)
class ReplayView:
    phase: str
    data: str
    speed: str               # "×2"
    sent: str                # "2,000"
    not_sent: str
    ks: str                  # "0.0015"
    lag_p50: str
    lag_p99: str
    lag_max: str
    hit_rate: str            # "76.0%", or "not reported"


def _not_sent(results: RunResults, phase: str) -> int:
    return sum(s.counters.not_sent for s in results.scopes if s.phase == phase)


def view(results: RunResults, info: ReplayInfo) -> ReplayView:
    return ReplayView(
        phase=info.phase, data=info.data, speed=f"×{info.speed:g}", sent=f"{info.sent:,}",
        not_sent=f"{_not_sent(results, info.phase):,}",
        ks="n/a" if info.ks is None else f"{info.ks:.4f}",
        lag_p50=show("schedule_lag", info.lag_p50), lag_p99=show("schedule_lag", info.lag_p99),
        lag_max=show("schedule_lag", info.lag_max),
        hit_rate="not reported" if info.prefix_cache_hit_rate is None
        else f"{info.prefix_cache_hit_rate:.1%}")


def replay_views(results: RunResults) -> list[ReplayView]:
    return [view(results, info) for info in results.replay]


def replay_line(v: ReplayView) -> str:
    """One line for the terminal and the notes-like summaries."""
    return (f"replay {v.phase!r} of {v.data} {v.speed}: {v.sent} arrivals sent "
            f"({v.not_sent} not sent), lag p50 {v.lag_p50}, p99 {v.lag_p99}, max {v.lag_max}, "
            f"KS {v.ks} (intended vs achieved arrival times), prefix-cache hit rate "
            f"{v.hit_rate}")
