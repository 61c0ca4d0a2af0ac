"""Name the cause: what the telemetry shows where a failed SLO failed.

`explain(results, slo)` reads only saved results — the server's Prometheus
readings (`series.resources` `server.*`, the per-phase `server_metrics`), the
resources sampled every second and the client's schedule lag — in the failed
SLO's scope: its phases (or, for a window SLO, the first window that failed)
and its target. Each rule below compares one figure with a threshold; the
findings, or "nothing notable in the telemetry" with what was read, are stored
on the SLO (`slos[].cause`) and shown by every report. The thresholds are
written down in docs/outcome.md ("Naming the cause"); a test keeps the table
and these constants the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from llmscen.metrics import resources
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import Cause, Finding, RunResults, SloResult
from llmscen.spec.server_families import FAMILIES
from llmscen.spec.units import show

QUEUE_WAITING = 1.0      # requests waiting on the server, on average over the scope
QUEUE_SHARE = 0.25       # the server's queue time / its request time
KV_FULL = 0.95           # KV-cache usage (fraction), at its highest
PREEMPTIONS = 1.0        # preempted requests in scope
CLIENT_CPU = 0.9         # cores one worker used, in at least two seconds
SCHEDULE_LAG = 0.05      # seconds: the client's schedule lag, p99
SERVICE_CPU = 0.9        # cores a started service's process tree used, median second
HOST_CPU = 0.9           # the machine's CPU (1 = every core), median second

# gauges of requests waiting for a place on the server
WAITING = ("vllm:num_requests_waiting", "llamacpp:requests_deferred",
           "nv_inference_pending_request_count")
# (queue time, request time) cumulative pairs: their increases' ratio is the queue's share
QUEUE_TIMES = (("vllm:request_queue_time_seconds_sum", "vllm:e2e_request_latency_seconds_sum"),
               ("nv_inference_queue_duration_us", "nv_inference_request_duration_us"))
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc",
            "llamacpp:kv_cache_usage_ratio")
PREEMPTED = "vllm:num_preemptions_total"
assert all(f in FAMILIES for f in (*WAITING, *KV_USAGE, PREEMPTED))


@dataclass
class _Scope:
    results: RunResults
    phase: str | None
    target: str | None
    request: str | None
    between: tuple[float, float] | None
    checked: list[str] = field(default_factory=list)

    def samples(self, name: str, *, server: bool = False) -> list[float]:
        return resources.samples(self.results, name, self.phase,
                                 self.target if server else None, self.between)

    def increase(self, sample: str) -> float | None:
        """A server counter's increase in scope: the phase deltas, or in a window its mean
        increase per second over the readings there times the window's length."""
        if self.between is None:
            value, _ = resources.server_increase(self.results, f"server.{sample}", self.phase,
                                                 self.target)
            return value
        values = self.samples(f"server.{sample}", server=True)
        start, end = self.between
        return sum(values) / len(values) * (end - start) if values else None

    def names(self, prefix: str, suffix: str) -> list[str]:
        return sorted({s.name for s in self.results.series.resources
                       if s.name.startswith(prefix) and s.name.endswith(suffix)})


def _server_queue(scope: _Scope) -> Finding | None:
    parts: list[str] = []
    metric = value = threshold = None
    for family in WAITING:
        values = scope.samples(f"server.{family}", server=True)
        if not values:
            continue
        mean = sum(values) / len(values)
        scope.checked.append(f"{family} mean {mean:.3g}")
        if mean >= QUEUE_WAITING:
            parts.append(f"{family} averaged {mean:.3g} requests waiting (max "
                         f"{max(values):.3g}; rule: mean ≥ {QUEUE_WAITING:g})")
            metric, value, threshold = f"server.{family}", mean, QUEUE_WAITING
    for queued, total in QUEUE_TIMES:
        waited, took = scope.increase(queued), scope.increase(total)
        if waited is None or not took:
            continue
        share = waited / took
        scope.checked.append(f"queue time {share:.0%} of request time")
        if share >= QUEUE_SHARE:
            parts.append(f"queue time was {share:.0%} of the server's request time "
                         f"({queued.split('_sum')[0]}; rule: ≥ {QUEUE_SHARE:.0%})")
            if metric is None:
                metric, value, threshold = f"server.{queued}", share, QUEUE_SHARE
    if not parts:
        return None
    return Finding(kind="server_queue", message="queueing on the server: " + ", ".join(parts),
                   metric=metric, value=value, threshold=threshold)


def _kv_cache(scope: _Scope) -> Finding | None:
    for family in KV_USAGE:
        values = scope.samples(f"server.{family}", server=True)
        if not values:
            continue
        peak = max(values)
        scope.checked.append(f"{family} max {peak:.0%}")
        if peak >= KV_FULL:
            return Finding(kind="kv_cache", message=f"KV cache saturated: {family} reached "
                           f"{peak:.0%} (rule: max ≥ {KV_FULL:.0%})",
                           metric=f"server.{family}", value=peak, threshold=KV_FULL)
    return None


def _preemptions(scope: _Scope) -> Finding | None:
    count = scope.increase(PREEMPTED)
    if count is None:
        return None
    scope.checked.append(f"{PREEMPTED} +{count:.0f}")
    if count < PREEMPTIONS:
        return None
    return Finding(kind="preemptions", message=f"the server preempted requests: {PREEMPTED} "
                   f"rose by {count:.0f} (rule: ≥ {PREEMPTIONS:g})",
                   metric=f"server.{PREEMPTED}", value=count, threshold=PREEMPTIONS)


def _service_cpu(scope: _Scope) -> Finding | None:
    busy = []
    for name in scope.names("service.", ".cpu"):
        median = resources.stat(scope.samples(name), "p50")
        if median is None:
            continue
        scope.checked.append(f"{name} median {show('client.cpu', median)}")
        if median >= SERVICE_CPU:
            busy.append((name, median))
    if not busy:
        return None
    name, median = max(busy, key=lambda b: b[1])
    return Finding(kind="service_cpu", message=f"the service's CPU was saturated: {name} used "
                   f"{show('client.cpu', median)} in the median second (rule: ≥ "
                   f"{SERVICE_CPU:.0%} of a core)", metric=name, value=median,
                   threshold=SERVICE_CPU)


def _host_cpu(scope: _Scope) -> Finding | None:
    median = resources.stat(scope.samples("host.cpu"), "p50")
    if median is None:
        return None
    scope.checked.append(f"host.cpu median {median:.0%}")
    if median < HOST_CPU:
        return None
    return Finding(kind="host_cpu", message=f"the machine's CPU was saturated: host.cpu "
                   f"{median:.0%} of every core in the median second (rule: ≥ {HOST_CPU:.0%})",
                   metric="host.cpu", value=median, threshold=HOST_CPU)


def _client_cpu(scope: _Scope) -> Finding | None:
    worst: tuple[str, float, int] | None = None
    for name in scope.names("worker.", ".cpu") or ["client.cpu"]:
        values = scope.samples(name)
        if not values:
            continue
        hot = sum(1 for v in values if v >= CLIENT_CPU)
        scope.checked.append(f"{name} max {show('client.cpu', max(values))}")
        if hot >= min(2, len(values)) and (worst is None or max(values) > worst[1]):
            worst = (name, max(values), hot)
    if worst is None:
        return None
    name, peak, hot = worst
    return Finding(kind="client_cpu", message=f"the client's own CPU was near a full core: "
                   f"{name} reached {show('client.cpu', peak)}, ≥ {CLIENT_CPU:.0%} in {hot} "
                   f"seconds (rule: ≥ {CLIENT_CPU:.0%} in 2 seconds)", metric=name,
                   value=peak, threshold=CLIENT_CPU)


def _schedule_lag(scope: _Scope) -> Finding | None:
    lag = aggregate(scope.results, scope.phase, scope.request, scope.target).value(
        "schedule_lag", "p99")
    if lag is None:
        return None
    scope.checked.append(f"schedule_lag.p99 {show('schedule_lag', lag)}")
    if lag < SCHEDULE_LAG:
        return None
    return Finding(kind="schedule_lag", message=f"the client fell behind its schedule: "
                   f"schedule_lag.p99 = {show('schedule_lag', lag)} (rule: ≥ "
                   f"{show('schedule_lag', SCHEDULE_LAG)})", metric="schedule_lag", value=lag,
                   threshold=SCHEDULE_LAG)


# in the order findings are told: the server's, the machines', the client's
RULES: tuple[Callable[[_Scope], Finding | None], ...] = (
    _server_queue, _kv_cache, _preemptions, _service_cpu, _host_cpu, _client_cpu, _schedule_lag)


def scope_words(results: RunResults, slo: SloResult) -> str:
    if slo.window_start is not None and slo.scope.get("window"):
        start, width = slo.window_start, float(slo.scope["window"])
        return f"the window {start:g}s–{start + width:g}s"
    phase = slo.scope.get("phase")
    if phase:
        return f"phase {phase}"
    return "the run (warmup excluded)"


def explain(results: RunResults, slo: SloResult) -> Cause:
    """What the telemetry shows where `slo` failed (call it for failed SLOs)."""
    window = slo.scope.get("window")
    between = (slo.window_start, slo.window_start + float(window)) \
        if window and slo.window_start is not None else None
    scope = _Scope(results, slo.scope.get("phase"), slo.scope.get("target"),
                   slo.scope.get("request"), between)
    findings = [f for rule in RULES if (f := rule(scope)) is not None]
    where = scope_words(results, slo)
    if findings:
        text = f"telemetry in {where}: " + "; ".join(f.message for f in findings)
    else:
        read = ", ".join(scope.checked) if scope.checked else "no telemetry was recorded there"
        text = f"telemetry in {where}: nothing notable ({read})"
    return Cause(scope=where, findings=findings, checked=list(scope.checked), text=text)
