"""The server's own timings beside the client's, per phase: the reconciliation a reader wants.

For vLLM-style histograms (vLLM, openai-sim) the phase's own distribution — its
buckets' increases (metrics/server_histograms.py) — gives the server's mean and
p50/p90/p99, each percentile with the bucket it lies in (its precision); results
without buckets (schema 4) keep the mean from `_sum` over `_count`. Triton's
cumulative `*_duration_us` give a mean per successful request, for the model the
target names. Beside them: the client's figures of the matching metric for the
same phase and target. The difference is what lies between them: the network,
the client's parsing, and for a queue the wait the client cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults, ServerMetrics
from llmscen.metrics.server_histograms import merged, quantile
from llmscen.spec.metrics import split_key
from llmscen.spec.server_families import FAMILIES
from llmscen.spec.units import show

QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
# server timing → the client metric it matches (None: only the server sees it)
VLLM = {
    "vllm:time_to_first_token_seconds": "ttft_sent",
    "vllm:e2e_request_latency_seconds": "latency_sent",
    "vllm:inter_token_latency_seconds": "itl",
    "vllm:time_per_output_token_seconds": "tpot",
    "vllm:request_queue_time_seconds": None,
}
TRITON = {   # cumulative microseconds, per successful request
    "nv_inference_request_duration_us": "latency_sent",
    "nv_inference_queue_duration_us": None,
    "nv_inference_compute_infer_duration_us": None,
}


@dataclass(frozen=True)
class Row:
    phase: str
    target: str
    server_metric: str
    what: str
    server_mean: float            # seconds
    client_metric: str | None
    client_mean: float | None     # seconds
    # p50/p90/p99 → (estimate, bucket's lower bound, upper bound), seconds; {} without buckets
    server_quantiles: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    client_quantiles: dict[str, float | None] = field(default_factory=dict)


def reconciliation(results: RunResults) -> list[Row]:
    models = {t.name: t.model for t in results.meta.targets}
    rows = []
    for entry in results.server_metrics:
        target = entry.target or ""
        client = aggregate(results, entry.phase, target=target or None)
        found = [(name, metric, *_vllm(entry, name)) for name, metric in VLLM.items()]
        found += [(name, metric, _triton_mean(entry, name, models.get(target)), {})
                  for name, metric in TRITON.items()]
        for name, metric, mean, quantiles in found:
            if mean is None:
                continue
            rows.append(Row(
                entry.phase, target, name, FAMILIES[name].title, mean, metric,
                client.value(metric, "mean") if metric else None, quantiles,
                {p: client.value(metric, p) for p, _ in QUANTILES} if metric else {}))
    return rows


def _vllm(entry: ServerMetrics, family: str
          ) -> tuple[float | None, dict[str, tuple[float, float, float]]]:
    """The phase's mean and quantiles of a histogram family over its label sets."""
    h = merged([h for key, h in entry.histograms.items() if split_key(key)[0] == family])
    if h is not None and h.count:
        out = {}
        for p, q in QUANTILES:
            found = quantile(h, q)
            if found is not None:
                out[p] = found
        return h.sum / h.count, out
    count = entry.total(family + "_count")
    return (entry.total(family + "_sum") / count if count else None), {}


def _triton_mean(entry: ServerMetrics, name: str, model: str | None) -> float | None:
    def total(sample: str) -> float:
        return sum(v for k, v in entry.delta.items()
                   if split_key(k)[0] == sample and model in (None, split_key(k)[1].get("model")))

    requests = total("nv_inference_request_success")
    if not requests or not any(split_key(k)[0] == name for k in entry.delta):
        return None
    return total(name) / requests / 1e6


def bucket_text(bucket: tuple[float, float, float]) -> str:
    """`20ms–40ms`: the bucket an estimated percentile lies in."""
    _, lower, upper = bucket
    return f"{show('latency', lower)}–{show('latency', upper)}" if upper != float("inf") \
        else f"> {show('latency', lower)}"


@dataclass(frozen=True)
class Cells:
    """A row as the report shows it: (value, detail) per column."""

    row: Row
    server: list[tuple[str, str]]     # mean, p50, p90, p99: value and bucket (precision)
    client: list[str]                 # mean, p50, p90, p99


def cells(rows: list[Row]) -> list[Cells]:
    out = []
    for r in rows:
        server = [(show("latency", r.server_mean), "exact")]
        for p, _ in QUANTILES:
            found = r.server_quantiles.get(p)
            server.append((show("latency", found[0]), bucket_text(found)) if found else
                          ("–", ""))
        client = [show("latency", v) if v is not None else "–"
                  for v in (r.client_mean, *(r.client_quantiles.get(p) for p, _ in QUANTILES))]
        out.append(Cells(r, server, client if r.client_metric else ["–"] * 4))
    return out
