"""CSV files of a run, for spreadsheets and pandas: per-second series and per-scope figures.

Read from the saved results only, like every report. Long format (one row per
second and scope, or per sample and metric), values in base units named in the
column (`_s` seconds, `_per_s`), so `pandas.read_csv` and a pivot give any view.
"""

from __future__ import annotations

import csv
from pathlib import Path

from llmscen.metrics.histogram import Histogram
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults

FILES = ("series.csv", "scopes.csv", "resources.csv", "resource_stats.csv")
SERIES_COLUMNS = ("t", "phase", "request", "target", "requests", "ok", "check_failures",
                  "errors", "not_sent", "output_tokens", "latency_p50_s", "latency_p95_s",
                  "latency_p99_s", "ttft_p50_s", "ttft_p95_s")
SCOPE_COLUMNS = ("phase", "request", "target", "requests", "not_sent", "ok", "errors",
                 "check_failures", "error_rate", "throughput_per_s", "output_tokens",
                 "output_token_throughput_per_s", "latency_p50_s", "latency_p95_s",
                 "latency_p99_s", "ttft_p50_s", "ttft_p99_s", "itl_p50_s")


def write_csv(results: RunResults, folder: str | Path) -> list[Path]:
    """Write the four files of FILES into `folder`; the paths written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tables = {"series.csv": (SERIES_COLUMNS, _series(results)),
              "scopes.csv": (SCOPE_COLUMNS, _scopes(results)),
              "resources.csv": (("t", "phase", "metric", "target", "labels", "value"),
                                _resources(results)),
              "resource_stats.csv": (("phase", "metric", "target", "labels", "min", "mean",
                                      "max", "samples"), _resource_stats(results))}
    written = []
    for name, (columns, rows) in tables.items():
        path = out / name
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(rows)
        written.append(path)
    return written


def _quantile(encoded: str | None, p: float) -> float | str:
    if not encoded:
        return ""
    value = Histogram.decode(encoded).percentile(p)
    return "" if value is None else value / 1e6


def _series(results: RunResults) -> list[list[object]]:
    rows = []
    for scope in results.series.scopes:
        for p in scope.points:
            rows.append([p.t, scope.phase, scope.request, scope.target, p.requests, p.ok,
                         p.check_failures, sum(p.errors.values()), p.not_sent, p.output_tokens,
                         _quantile(p.latency, 50), _quantile(p.latency, 95),
                         _quantile(p.latency, 99), _quantile(p.ttft, 50), _quantile(p.ttft, 95)])
    return sorted(rows, key=lambda r: (int(str(r[0])), str(r[1]), str(r[2]), str(r[3])))


def _scopes(results: RunResults) -> list[list[object]]:
    """Every (phase, request, target), then each phase whole (request and target `*`)."""
    keys: list[tuple[str, str | None, str | None]] = [
        (s.phase, s.request, s.target) for s in results.scopes]
    keys += [(p.name, None, None) for p in results.phases if p.kind != "pause"]
    rows: list[list[object]] = []
    for phase, request, target in keys:
        agg = aggregate(results, phase, request, target)
        c = agg.counters
        values = [agg.value(*m) for m in (("error_rate",), ("throughput",))]
        rates = [agg.value("output_token_throughput")]
        quantiles = [agg.value(metric, stat) for metric, stat in (
            ("latency", "p50"), ("latency", "p95"), ("latency", "p99"), ("ttft", "p50"),
            ("ttft", "p99"), ("itl", "p50"))]
        rows.append([phase, request or "*", target or "*", c.requests, c.not_sent, c.ok,
                     c.error_total, c.check_failures, *_cells(values), c.output_tokens,
                     *_cells(rates), *_cells(quantiles)])
    return rows


def _cells(values: list[float | None]) -> list[float | str]:
    return ["" if v is None else v for v in values]


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _resources(results: RunResults) -> list[list[object]]:
    rows = [[t, s.phase or "", s.name, s.target or "", _labels(s.labels), v]
            for s in results.series.resources for t, v in s.points]
    return sorted(rows, key=lambda r: (int(str(r[0])), str(r[2]), str(r[3]), str(r[4])))


def _resource_stats(results: RunResults) -> list[list[object]]:
    return [[s.phase, s.name, s.target or "", _labels(s.labels), s.min, s.mean, s.max,
             s.samples] for s in results.resources.stats]
