"""openai-sim's server-side timings and the Prometheus text format of its `/metrics`.

The histograms carry vLLM's family names and (mostly) its bucket bounds, so a
scraper written for vLLM reads the simulator unchanged. They time what the
server sees: from the moment a request is taken in (after any stall) to the
first and last content chunk written, and the gaps between chunk writes.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

# vLLM's bounds (vllm/v1/metrics/loggers.py); ITL gets finer ones below 10 ms,
# where the simulator usually runs.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
               0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
REQUEST_BUCKETS = (0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0,
                   30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)


class Buckets:
    """A Prometheus histogram: counts per upper bound (`le`), their sum and total."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)   # the last one is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float, n: int = 1) -> None:
        self.counts[bisect_left(self.bounds, value)] += n
        self.count += n
        self.sum += value * n


@dataclass
class Timings:
    queue: Buckets = field(default_factory=lambda: Buckets(REQUEST_BUCKETS))
    ttft: Buckets = field(default_factory=lambda: Buckets(TTFT_BUCKETS))
    itl: Buckets = field(default_factory=lambda: Buckets(ITL_BUCKETS))
    e2e: Buckets = field(default_factory=lambda: Buckets(REQUEST_BUCKETS))


def label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Exposition:
    """Metric families in Prometheus' text format (version 0.0.4)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def _head(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def gauge(self, name: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        self._head(name, "gauge", help_text)
        self.lines += [f"{name}{{{labels}}} {float(value)!r}" for labels, value in samples]

    def counter(self, name: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        """`name` without `_total`; the samples get it."""
        self._head(name, "counter", help_text)
        self.lines += [f"{name}_total{{{labels}}} {float(value)!r}" for labels, value in samples]

    def histogram(self, name: str, help_text: str, labels: str, h: Buckets) -> None:
        self._head(name, "histogram", help_text)
        cumulative = 0
        for bound, n in zip((*map(repr, h.bounds), "+Inf"), h.counts, strict=True):
            cumulative += n
            self.lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {float(cumulative)!r}')
        self.lines.append(f"{name}_sum{{{labels}}} {h.sum!r}")
        self.lines.append(f"{name}_count{{{labels}}} {float(h.count)!r}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"
