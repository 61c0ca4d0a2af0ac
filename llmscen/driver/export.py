"""The run's live metrics for Prometheus (`llmscen run --prometheus HOST:PORT`).

Fed by what the driver already receives — each worker's per-second `Progress`
(its sealed seconds of every scope, in flight, schedule lag, phase) and the
resource samples — and served by prometheus_client from its own registry (no
global state) as a custom collector: each scrape reads the totals so far under
a lock, since prometheus_client answers from its own thread. A second's
requests appear once it is sealed (about two seconds after), and the last ones
when the run ends; docs/running.md lists the names.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from llmscen.driver import messages as m
from llmscen.errors import InputError
from llmscen.metrics.histogram import Histogram
from llmscen.metrics.results import SeriesPoint
from llmscen.spec.metrics import split_key
from llmscen.spec.server_families import FAMILIES

BUCKETS = m.LIVE_BUCKETS


class ExportError(InputError):
    """`--prometheus` names an address llmscen cannot listen on."""


@dataclass
class Buckets:
    """A Prometheus histogram's counts, filled from the series' HDR histograms (µs)."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0        # seconds

    def add(self, encoded: str) -> None:
        for value_us, count in Histogram.decode(encoded).recorded():
            seconds = value_us / 1e6
            self.counts[bisect.bisect_left(BUCKETS, seconds)] += count
            self.total += seconds * count

    def add_counts(self, counts: list[int], total_us: int) -> None:
        """Counts a worker already put into BUCKETS (one per bound, then +Inf)."""
        for i, n in enumerate(counts):
            self.counts[i] += n
        self.total += total_us / 1e6

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, n in zip((*map(repr, BUCKETS), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, float(running)))
        return out


@dataclass
class _Worker:
    in_flight: int = 0
    lag: float = 0.0
    users: int = 0


class LiveExport(Collector):
    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}   # (request, target, class)
        self._not_sent: dict[tuple[str, str], int] = {}
        self._tokens: dict[tuple[str, str], int] = {}
        self._latency: dict[tuple[str, str], Buckets] = {}
        self._ttft: dict[tuple[str, str], Buckets] = {}
        self._workers: dict[int, _Worker] = {}
        self._phase = ""
        self._itl: dict[tuple[str, str], Buckets] = {}
        self._resources: dict[str, float] = {}
        self._readings: dict[tuple[str, str], float] = {}   # (target, series) → server gauge
        self._server: Any = None

    # -- fed by the driver ----------------------------------------------------------------
    def progress(self, report: m.Progress) -> None:
        with self._lock:
            worker = self._workers.setdefault(report.worker, _Worker())
            worker.in_flight, worker.lag, worker.users = report.in_flight, report.max_lag, \
                report.users
            for scope in report.points:
                for point in scope.points:
                    self._add(scope.request, scope.target, point)
            for key, (counts, total_us) in report.itl.items():
                self._itl.setdefault(key, Buckets()).add_counts(counts, total_us)
            self._readings.update(report.server)

    def _add(self, request: str, target: str, p: SeriesPoint) -> None:
        key = (request, target)
        for cls, n in [("ok", p.ok), ("check", p.check_failures), *p.errors.items()]:
            if n:
                full = (request, target, cls)
                self._requests[full] = self._requests.get(full, 0) + n
        if p.not_sent:
            self._not_sent[key] = self._not_sent.get(key, 0) + p.not_sent
        if p.output_tokens:
            self._tokens[key] = self._tokens.get(key, 0) + p.output_tokens
        if p.latency:
            self._latency.setdefault(key, Buckets()).add(p.latency)
        if p.ttft:
            self._ttft.setdefault(key, Buckets()).add(p.ttft)

    def resources(self, values: Mapping[str, float]) -> None:
        with self._lock:
            self._resources.update(values)

    def phase_started(self, name: str) -> None:
        with self._lock:
            self._phase = name

    def phase_ended(self) -> None:
        with self._lock:
            self._phase = ""

    # -- read by prometheus_client ----------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        with self._lock:
            yield from self._counters()
            for name, what, data in (("llmscen_latency_seconds", "intended start to last byte",
                                      self._latency),
                                     ("llmscen_ttft_seconds", "intended start to first "
                                      "content", self._ttft),
                                     ("llmscen_itl_seconds", "gaps between consecutive token "
                                      "chunks (as the itl metric)", self._itl)):
                family = HistogramMetricFamily(name, what, labels=["request", "target"])
                for (request, target), b in sorted(data.items()):
                    family.add_metric([request, target], b.cumulative(), b.total)
                yield family
            yield from self._gauges()

    def _counters(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "llmscen_requests", "Requests completed, by class: ok, check (failed an "
            "expectation) or the error class", labels=["request", "target", "class"])
        for labels, n in sorted(self._requests.items()):
            requests.add_metric(list(labels), n)
        yield requests
        for name, what, data in (("llmscen_not_sent", "Requests due but never sent",
                                  self._not_sent),
                                 ("llmscen_output_tokens", "Output tokens received",
                                  self._tokens)):
            family = CounterMetricFamily(name, what, labels=["request", "target"])
            for labels2, n in sorted(data.items()):
                family.add_metric(list(labels2), n)
            yield family

    def _gauges(self) -> Iterator[Metric]:
        workers = self._workers.values()
        for name, what, value in (
                ("llmscen_in_flight", "Requests in flight now", sum(w.in_flight for w in workers)),
                ("llmscen_schedule_lag_seconds", "Worst schedule lag in the last second",
                 max((w.lag for w in workers), default=0.0)),
                ("llmscen_users", "Virtual users running (closed phases)",
                 sum(w.users for w in workers))):
            yield GaugeMetricFamily(name, what, value=value)
        phase = GaugeMetricFamily("llmscen_phase", "1 for the phase running now",
                                  labels=["scenario", "phase"])
        if self._phase:
            phase.add_metric([self.scenario, self._phase], 1.0)
        yield phase
        resource = GaugeMetricFamily(
            "llmscen_resource", "Resource metrics sampled every second, in base units "
            "(cores, bytes, fraction, count); metric as in results.json", labels=["metric"])
        for name, value in sorted(self._resources.items()):
            resource.add_metric([name], value)
        yield resource
        yield from self._server_gauges()

    def _server_gauges(self) -> Iterator[Metric]:
        """The targets' own gauges of known families, as last read (once a second), one
        family each: `llmscen_server_<family>` with `target` and the server's labels."""
        by_family: dict[str, list[tuple[str, dict[str, str], float]]] = {}
        for (target, key), value in sorted(self._readings.items()):
            family, labels = split_key(key)
            by_family.setdefault(family, []).append((target, labels, value))
        for family, rows in by_family.items():
            names = sorted({k for _, labels, _ in rows for k in labels} - {"target"})
            known = FAMILIES.get(family)
            gauge = GaugeMetricFamily(
                "llmscen_server_" + family.replace(":", "_"),
                f"{family} as the target exposes it" + (f": {known.meaning}" if known else ""),
                labels=["target", *names])
            for target, labels, value in rows:
                gauge.add_metric([target, *(labels.get(n, "") for n in names)], value)
            yield gauge

    # -- serving ------------------------------------------------------------------------
    def serve(self, address: str) -> str:
        """Listen on `HOST:PORT` (port 0: any free one); the address listened on."""
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ExportError(f"--prometheus {address}: give HOST:PORT, e.g. 127.0.0.1:9464")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        try:
            self._server, _ = start_http_server(int(port), host.strip("[]"), registry=registry)
        except OSError as exc:
            raise ExportError(f"--prometheus {address}: cannot listen there: "
                              f"{exc.strerror or exc}") from None
        bound = self._server.server_address
        return f"{host}:{bound[1]}"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
