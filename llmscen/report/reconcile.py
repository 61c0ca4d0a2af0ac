"""The server's own timings beside the client's, per phase: the reconciliation a reader wants.

From the per-phase deltas of a server's cumulative timings (`_sum` over `_count` of
vLLM's histograms; Triton's `*_duration_us` over its successful requests, for the
model the target names), set beside the client's mean of the matching metric for
the same phase and target. The difference is what lies between them: the network,
the client's parsing, and for a queue the wait the client cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults, ServerMetrics
from llmscen.spec.metrics import split_key

# server timing → (what it is, the client metric it matches, or None: server-only)
VLLM = {
    "vllm:time_to_first_token_seconds": ("time to first token", "ttft_sent"),
    "vllm:e2e_request_latency_seconds": ("end-to-end latency", "latency_sent"),
    "vllm:inter_token_latency_seconds": ("inter-token latency", "itl"),
    "vllm:time_per_output_token_seconds": ("time per output token", "tpot"),
    "vllm:request_queue_time_seconds": ("queue wait", None),
}
TRITON = {   # cumulative microseconds, per successful request
    "nv_inference_request_duration_us": ("request duration", "latency_sent"),
    "nv_inference_queue_duration_us": ("queue wait", None),
    "nv_inference_compute_infer_duration_us": ("compute (infer)", None),
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


def reconciliation(results: RunResults) -> list[Row]:
    models = {t.name: t.model for t in results.meta.targets}
    rows = []
    for entry in results.server_metrics:
        target = entry.target or ""
        found = [(name, what, client, _vllm_mean(entry, name)) for name, (what, client)
                 in VLLM.items()]
        found += [(name, what, client, _triton_mean(entry, name, models.get(target)))
                  for name, (what, client) in TRITON.items()]
        for name, what, client, mean in found:
            if mean is None:
                continue
            client_mean = aggregate(results, entry.phase, target=target or None).value(
                client, "mean") if client else None
            rows.append(Row(entry.phase, target, name, what, mean, client, client_mean))
    return rows


def _vllm_mean(entry: ServerMetrics, family: str) -> float | None:
    count = entry.total(family + "_count")
    return entry.total(family + "_sum") / count if count else None


def _triton_mean(entry: ServerMetrics, name: str, model: str | None) -> float | None:
    def total(sample: str) -> float:
        return sum(v for k, v in entry.delta.items()
                   if split_key(k)[0] == sample and model in (None, split_key(k)[1].get("model")))

    requests = total("nv_inference_request_success")
    if not requests or not any(split_key(k)[0] == name for k in entry.delta):
        return None
    return total(name) / requests / 1e6
