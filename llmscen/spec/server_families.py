"""Known Prometheus families of inference servers: a friendly name, a unit, a meaning.

One table for every reader: the report's server-metrics table names its rows
with it, the rules that name a failed SLO's cause (assertions/cause.py) read
the families it lists, and docs/slo.md ("Known server families") shows the same
rows (a test compares them). Keys are the name an SLO writes after `server.`:
a counter's sample name (`vllm:num_preemptions_total`; Triton's counters have no
`_total`), a histogram's family (its `_sum`, `_count` and `_bucket` samples
resolve to it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str          # as the server exposes it
    title: str         # what a reader calls it
    unit: str          # of its value: requests, seconds, µs (cumulative), fraction, bytes, tokens
    meaning: str


FAMILIES: dict[str, Family] = {f.name: f for f in (
    # vLLM (and openai-sim, which exports vLLM's names)
    Family("vllm:num_requests_running", "running requests", "requests",
           "requests in the model's execution batch now"),
    Family("vllm:num_requests_waiting", "waiting requests", "requests",
           "requests queued for a place in the batch"),
    Family("vllm:gpu_cache_usage_perc", "KV-cache usage", "fraction",
           "share of the KV-cache blocks in use, 1 = full (vLLM before 0.10)"),
    Family("vllm:kv_cache_usage_perc", "KV-cache usage", "fraction",
           "share of the KV-cache blocks in use, 1 = full"),
    Family("vllm:num_preemptions_total", "preemptions", "requests",
           "requests preempted (evicted from the batch, recomputed later) because the "
           "KV cache ran out"),
    Family("vllm:prompt_tokens_total", "prompt tokens", "tokens", "prefill tokens processed"),
    Family("vllm:generation_tokens_total", "generated tokens", "tokens",
           "generation tokens processed"),
    Family("vllm:request_success_total", "finished requests", "requests",
           "requests finished, by finished_reason"),
    Family("vllm:time_to_first_token_seconds", "server TTFT", "seconds",
           "histogram: from the request's arrival to its first token"),
    Family("vllm:inter_token_latency_seconds", "server ITL", "seconds",
           "histogram: time between consecutive output tokens"),
    Family("vllm:time_per_output_token_seconds", "server TPOT", "seconds",
           "histogram: time per output token after the first (older vLLM's ITL)"),
    Family("vllm:e2e_request_latency_seconds", "server E2E latency", "seconds",
           "histogram: from arrival to the last token"),
    Family("vllm:request_queue_time_seconds", "server queue time", "seconds",
           "histogram: time a request waited before it was scheduled"),
    Family("vllm:request_prefill_time_seconds", "server prefill time", "seconds",
           "histogram: time in the prefill phase"),
    Family("vllm:request_decode_time_seconds", "server decode time", "seconds",
           "histogram: time in the decode phase"),
    # Triton Inference Server
    Family("nv_inference_request_success", "successful requests", "requests",
           "inference requests that succeeded, per model"),
    Family("nv_inference_request_failure", "failed requests", "requests",
           "inference requests that failed, per model"),
    Family("nv_inference_count", "inferences", "items",
           "inferences performed (a batch of 8 counts 8)"),
    Family("nv_inference_exec_count", "executions", "batches",
           "model executions (a batch counts once)"),
    Family("nv_inference_pending_request_count", "pending requests", "requests",
           "requests waiting in the scheduler's queue now, per model"),
    Family("nv_inference_request_duration_us", "request time", "µs (cumulative)",
           "total end-to-end time of requests inside the server"),
    Family("nv_inference_queue_duration_us", "queue time", "µs (cumulative)",
           "total time requests waited in the scheduler's queue"),
    Family("nv_inference_compute_input_duration_us", "compute input time", "µs (cumulative)",
           "total time spent preparing inputs"),
    Family("nv_inference_compute_infer_duration_us", "compute infer time", "µs (cumulative)",
           "total time spent executing the model"),
    Family("nv_inference_compute_output_duration_us", "compute output time", "µs (cumulative)",
           "total time spent producing outputs"),
    Family("nv_gpu_utilization", "GPU utilization", "fraction", "GPU busy, 0 to 1"),
    Family("nv_gpu_memory_used_bytes", "GPU memory used", "bytes", "GPU memory in use"),
    Family("nv_gpu_memory_total_bytes", "GPU memory total", "bytes", "GPU memory there is"),
    Family("nv_cpu_utilization", "CPU utilization", "fraction", "the server's host CPU, 0 to 1"),
    Family("nv_cpu_memory_used_bytes", "CPU memory used", "bytes", "the server's host memory"),
    # llama.cpp's llama-server --metrics
    Family("llamacpp:requests_processing", "running requests", "requests",
           "requests being processed in a slot now"),
    Family("llamacpp:requests_deferred", "deferred requests", "requests",
           "requests waiting for a free slot"),
    Family("llamacpp:kv_cache_usage_ratio", "KV-cache usage", "fraction",
           "share of the KV cache in use, 1 = full (older builds)"),
    Family("llamacpp:kv_cache_tokens", "KV-cache tokens", "tokens",
           "tokens in the KV cache (older builds)"),
    Family("llamacpp:prompt_tokens_total", "prompt tokens", "tokens", "prompt tokens processed"),
    Family("llamacpp:tokens_predicted_total", "generated tokens", "tokens",
           "tokens generated"),
    Family("llamacpp:prompt_seconds_total", "prompt time", "seconds (cumulative)",
           "time spent on prompts"),
    Family("llamacpp:tokens_predicted_seconds_total", "generation time", "seconds (cumulative)",
           "time spent generating"),
    Family("llamacpp:prompt_tokens_seconds", "prompt throughput", "tokens/s",
           "average prompt tokens per second"),
    Family("llamacpp:predicted_tokens_seconds", "generation throughput", "tokens/s",
           "average generated tokens per second"),
    Family("llamacpp:n_busy_slots_per_decode", "busy slots per decode", "slots",
           "average slots busy per llama_decode() call"),
    Family("llamacpp:n_decode_total", "decode calls", "calls", "llama_decode() calls"),
    # openai-sim's own
    Family("openai_sim:decode_step_seconds", "decode step", "seconds",
           "one decode step at the current batch size (the simulator's engine model)"),
    Family("openai_sim:injected_faults_total", "injected faults", "responses",
           "faults the simulator injected, by kind"),
)}

# gauges of requests the server has not finished (running or waiting): the phase-end
# reading waits for them to reach 0, so a phase's histograms hold all its requests
IN_FLIGHT = ("vllm:num_requests_running", "vllm:num_requests_waiting",
             "llamacpp:requests_processing", "llamacpp:requests_deferred",
             "nv_inference_pending_request_count")

_PARTS = ("_bucket", "_sum", "_count")


def family_of(sample: str) -> Family | None:
    """The known family a sample name belongs to (`x_sum` → `x`), or None."""
    found = FAMILIES.get(sample)
    if found is not None:
        return found
    for part in (*_PARTS, "_total"):
        if sample.endswith(part):
            return FAMILIES.get(sample[:-len(part)]) or FAMILIES.get(sample[:-len(part)] +
                                                                       "_total")
    return None


def title_of(sample: str) -> str:
    """`server queue time (sum)` for `vllm:request_queue_time_seconds_sum`; '' if unknown."""
    family = family_of(sample)
    if family is None:
        return ""
    part = next((p for p in _PARTS if sample == family.name + p), "")
    return family.title + (f" ({part[1:]})" if part else "")
