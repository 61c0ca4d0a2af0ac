"""Synthetic saved results for the report tests (no tests here; imported by them).

Exchanges are recorded into a real `MetricStore`, so histograms, series and
counters are what a run would save.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from llmscen.assertions.slo import evaluate
from llmscen.assertions.verdict import conclude
from llmscen.compile.plan import SLOPlan
from llmscen.compile.slo import parse_slo
from llmscen.engine.protocol import Exchange
from llmscen.metrics import MetricStore
from llmscen.metrics.results import (
    CheckSummary,
    ErrorSummary,
    Meta,
    PluginInfo,
    Reason,
    RequestInfo,
    RunResults,
    Sample,
    ServerMetrics,
    StepInfo,
    TargetInfo,
)

MS = 1_000_000                      # ns
XSS_OUTPUT = ("Sure! <script>window.__xss=1</script> and "
              "<img src=x onerror=\"window.__xss=2\"> see https://evil.example/x.png")
XSS_MESSAGE = "expected 'Jay' in the output; got <script>alert(1)</script>"


def slo(text: str, **scope: Any) -> SLOPlan:
    expr = parse_slo(text)
    return SLOPlan(text=text, metric=expr.metric, stat=expr.stat, op=expr.op,
                   threshold=expr.threshold, **scope)


def build_results(*, itl_ms: float = 12.0, ttft_ms: float = 80.0, tokens: int = 40,
                  rate: float = 20.0, errors_every: int = 0, seed: int = 7,
                  phases: tuple[tuple[str, float, bool], ...] = (
                      ("warmup", 2.0, True), ("ramp", 4.0, False), ("steady", 6.0, False)),
                  requests: tuple[str, ...] = ("chat", "short"),
                  slos: tuple[SLOPlan, ...] = (), failing_check: bool = False,
                  interrupted: bool = False, notes: tuple[str, ...] = ()) -> RunResults:
    """A run of `phases` (name, seconds, warmup) at `rate` requests per second.

    Latency = TTFT + (tokens - 1) × ITL, with ±20 % deterministic jitter; every
    `errors_every`-th request fails with HTTP 503 (0: none).
    """
    rng = random.Random(seed)
    store = MetricStore()
    t0 = 1_000_000 * MS
    start = 0.0
    n = 0
    for name, seconds, warmup in phases:
        count = int(seconds * rate)
        for i in range(count):
            at = start + i / rate
            request = requests[n % len(requests)]
            n += 1
            intended = t0 + int(at * 1e9)
            sent = intended + int(rng.uniform(0.1, 2.0) * MS)
            ttft = int(ttft_ms * rng.uniform(0.8, 1.2) * MS)
            gaps = [int(itl_ms * rng.uniform(0.8, 1.2) * 1000) for _ in range(tokens - 1)]
            end = sent + ttft + sum(gaps) * 1000
            ex = Exchange(intended_ns=intended, sent_ns=sent, first_byte_ns=sent + ttft // 2,
                          first_content_ns=sent + ttft, end_ns=end, itl_us=gaps, status=200,
                          output_tokens=tokens, input_tokens=12, chunks=tokens,
                          bytes_received=tokens * 90, text="hello Jay")
            if errors_every and n % errors_every == 0:
                ex.fail("http", f"HTTP 503 from server: <b>overloaded</b> #{n}")
                ex.status = 503
            store.record(name, request, "main", ex, goodput_met=False,
                         now=at + (end - intended) / 1e9)
            store.note_in_flight(at, 1 + i % 7, phase=name)
        store.mark_phase(name, start, start + seconds, "open", warmup, planned_duration=seconds)
        start += seconds
    began = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    meta = Meta(scenario="synthetic", file="scenarios/synthetic.yaml",
                description="recorded by the report tests", seed=seed, started_at=began,
                ended_at=began + dt.timedelta(seconds=start),
                plugins=[PluginInfo(name="openai", distribution="llmscen", version="0.1.0")],
                targets=[TargetInfo(name="main", plugin="openai",
                                    url="http://user:pw@127.0.0.1:8000/v1?api_key=s3cret")],
                command_line=["llmscen", "run", "scenarios/synthetic.yaml"],
                interrupted=interrupted, notes=list(notes))
    checks = [CheckSummary(request="chat", expectation="status", passed=n // 2, failed=0)]
    if failing_check:
        checks.append(CheckSummary(
            request="chat", expectation="contains", passed=n // 2 - 3, failed=3,
            samples=[Sample(message=XSS_MESSAGE, output=XSS_OUTPUT)]))
    server = [ServerMetrics(phase=name, target="main",
                            before={"vllm:request_success_total": 0.0},
                            after={"vllm:request_success_total": 10.0 * (i + 1),
                                   "vllm:num_requests_running": 3.0},
                            delta={"vllm:request_success_total": 10.0,
                                   "vllm:num_requests_running": 1.0})
              for i, (name, _, _) in enumerate(phases)]
    results = store.to_results(meta, checks=checks, server_metrics=server)
    if errors_every:   # the XSS payload in an error sample too
        results.errors.append(ErrorSummary(request="chat", error="protocol", count=1, samples=[
            Sample(message="bad SSE line: <script>window.__xss=3</script>")]))
    results.requests = [RequestInfo(name=r, target="main", steps=[
        StepInfo(name=r, expectations=["status", "contains"] if r == "chat" and failing_check
                 else ["status"] if r == "chat" else [])]) for r in requests]
    results.slos = evaluate(slos, results)
    reasons = [Reason(kind="interrupted", message="the run was interrupted")] if interrupted \
        else []
    conclude(results, reasons)
    return results


def three_slos() -> tuple[SLOPlan, ...]:
    """Two that pass and one that fails on `build_results()` defaults."""
    return (slo("latency.p95 < 5s"), slo("error_rate < 1%"),
            slo("ttft.p99 < 10ms", phase="steady", request="chat"))
