"""A target's Prometheus series while a phase runs: gauges as they are, counters as rates.

Worker 0 reads each target's metrics every `metrics.server_interval` seconds of a
phase and feeds them here. A gauge's reading is kept as is; a counter's increase
since the previous reading, per second (a counter that went down was reset, and
its new value is the increase, as Prometheus' `rate` takes it). They become
`series.resources` named `server.<sample name>`, one per target and label set,
so SLOs and reports read them as every other sampled metric.
"""

from __future__ import annotations

from llmscen.engine.protocol import Exposed
from llmscen.metrics.results import ResourceSeries
from llmscen.spec.metrics import split_key

SeriesKey = tuple[str, str, str, str]     # (metric name, target, series key, phase)


class ServerSeries:
    def __init__(self) -> None:
        self._last: dict[tuple[str, str], tuple[float, float]] = {}   # (target, key) →
        #                                                                (when, value)
        self._points: dict[SeriesKey, tuple[dict[str, str], list[tuple[int, float]]]] = {}

    def add(self, now: float, phase: str, target: str, exposed: Exposed) -> None:
        """One reading, `now` seconds since the run started."""
        for key, value in exposed.values.items():
            name, labels = split_key(key)
            if exposed.types.get(name) == "counter":
                last = self._last.get((target, key))
                self._last[(target, key)] = (now, value)
                if last is None or now <= last[0]:
                    continue
                increase = value - last[1] if value >= last[1] else value
                point = increase / (now - last[0])
            else:
                point = value
            entry = self._points.setdefault((f"server.{name}", target, key, phase), (labels, []))
            entry[1].append((int(now), point))

    def series(self) -> list[ResourceSeries]:
        return [ResourceSeries(name=name, phase=phase, target=target, labels=labels,
                               points=points)
                for (name, target, _, phase), (labels, points) in self._points.items()]
