"""A server's Prometheus histograms per phase: bucket increases, percentiles with their
bucket's precision, and the report's client-vs-server table — against openai-sim's
vLLM-named histograms through the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from test_report_samples import slo

from llmscen.assertions.slo import evaluate
from llmscen.cli.main import cli
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults, ServerHistogram
from llmscen.metrics.server_histograms import merged, phase_histograms, quantile
from llmscen.report.reconcile import reconciliation
from llmscen.runners.prometheus import parse_exposition
from llmscen.spec.metrics import sample_key

BOUNDS = (0.01, 0.02, 0.04, 0.08)


def _buckets(values: list[float], labels: dict[str, str] | None = None) -> dict[str, float]:
    out = {}
    for le in (*BOUNDS, math.inf):
        key = sample_key("x_bucket", {**(labels or {}), "le": "+Inf" if le == math.inf
                                      else repr(le)})
        out[key] = float(sum(1 for v in values if v <= le))
    return out


def test_the_parser_keeps_buckets_apart() -> None:
    exposed = parse_exposition("""\
# TYPE x histogram
x_bucket{le="0.1",m="a"} 1
x_bucket{le="+Inf",m="a"} 3
x_sum{m="a"} 0.9
x_count{m="a"} 3
# TYPE g gaugehistogram
g_bucket{le="1"} 4
""")
    assert exposed.buckets == {'x_bucket{le="0.1",m="a"}': 1.0, 'x_bucket{le="+Inf",m="a"}': 3.0}
    assert set(exposed.values) == {'x_sum{m="a"}', 'x_count{m="a"}'}   # the table's as before


def test_a_phase_histogram_is_what_the_phase_added() -> None:
    before = _buckets([0.005, 0.015], {"m": "a"})
    after = _buckets([0.005, 0.015, 0.03, 0.03, 0.05, 0.2], {"m": "a"})
    (key, h), = phase_histograms(before, after, {'x_sum{m="a"}': 0.31}).items()
    assert key == 'x{m="a"}'
    assert h.bounds == list(BOUNDS) and h.counts == [0, 0, 2, 1, 1] and h.count == 4
    assert h.sum == 0.31
    # p50: rank 2 of 4, the last of the two in (0.02, 0.04]
    assert quantile(h, 0.5) == (0.04, 0.02, 0.04)
    assert quantile(h, 0.25) == (0.03, 0.02, 0.04)
    assert quantile(h, 0.99) == (0.08, 0.08, math.inf)      # above the last bound
    # a reset server: the bucket's new value is the increase
    reset = phase_histograms(after, _buckets([0.005]), {})
    assert reset["x"].counts == [1, 0, 0, 0, 0]
    assert quantile(ServerHistogram(bounds=[1.0], counts=[0, 0]), 0.5) is None


@given(st.lists(st.floats(0.0, 0.1, allow_nan=False), min_size=1, max_size=60),
       st.sampled_from([0.5, 0.9, 0.99]))
def test_a_quantile_lies_in_the_bucket_of_the_true_one(values: list[float], q: float) -> None:
    (h,) = phase_histograms({}, _buckets(values), {}).values()
    found = quantile(h, q)
    assert found is not None
    estimate, lower, upper = found
    assert lower <= estimate <= upper or (upper == math.inf and estimate == lower)
    # the nearest-rank quantile of the values lies in that bucket (le is inclusive)
    true = sorted(values)[max(0, math.ceil(q * len(values)) - 1)]
    assert lower <= true <= upper or (lower == 0 and true == 0)


def test_label_sets_merge_when_their_bounds_agree() -> None:
    a = ServerHistogram(bounds=[1.0], counts=[1, 2], sum=3.0, count=3)
    b = ServerHistogram(bounds=[1.0], counts=[4, 0], sum=1.0, count=4)
    assert merged([a, b]) == ServerHistogram(bounds=[1.0], counts=[5, 2], sum=4.0, count=7)
    assert merged([a, ServerHistogram(bounds=[2.0], counts=[1, 0])]) is None


SCENARIO = """\
version: 1
name: server-histograms
services:
  sim: {builtin: openai-sim, options: {ttft: 30ms, itl: 5ms, output_tokens: 8}}
targets:
  chat: {plugin: vllm, service: sim, model: sim-model}
requests:
  - name: chat
    target: chat
    stream: true
    body: {messages: [{role: user, content: hi}], max_tokens: 8}
phases:
  - {name: load, arrival_rate: 10, duration: 3s}
"""


@pytest.mark.slow
def test_server_distributions_beside_the_clients(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SCENARIO)
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "s.yaml"), "-q", "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    run = RunResults.load(tmp_path / "out" / "results.json")
    (entry,) = run.server_metrics
    client = aggregate(run, phase="load")
    # the phase-end reading waited for the server: its histograms hold every request
    ttft_h = entry.histograms['vllm:time_to_first_token_seconds{model_name="sim-model"}']
    assert ttft_h.count == client.counters.ok
    rows = {r.server_metric: r for r in reconciliation(run)}
    ttft = rows["vllm:time_to_first_token_seconds"]
    estimate, lower, upper = ttft.server_quantiles["p50"]
    client_p50 = ttft.client_quantiles["p50"]
    assert client_p50 is not None
    # the simulator waits 30 ms before the first token: its p50 lies in the bucket
    # (0.02, 0.04]; the client, which also counts the network, sees no less than that
    assert (lower, upper) == (0.02, 0.04) and lower <= estimate <= upper
    assert lower <= client_p50 and 0.03 <= ttft.server_mean <= client_p50 * 1.05
    itl = rows["vllm:inter_token_latency_seconds"]
    _, lower, upper = itl.server_quantiles["p50"]
    client_itl = itl.client_quantiles["p50"]
    assert client_itl is not None
    # 5 ms between tokens as configured, timed when each write returned: the bucket reaches
    # 5 ms and starts no later than the gap the client saw (a loaded machine writes late)
    assert upper >= 0.005 and lower <= max(0.005, client_itl), (lower, upper, client_itl)
    e2e = rows["vllm:e2e_request_latency_seconds"]
    assert e2e.server_mean <= (e2e.client_mean or 0) * 1.05
    assert 0.03 + 7 * 0.005 <= e2e.server_mean < 0.5
    html = next((tmp_path / "out").glob("**/report.html")).read_text()
    assert "Server and client timings" in html and "20ms–40ms" in html
    assert "histogram_quantile" in html        # the precision is stated
    # SLOs on the server's histograms, judged offline from the saved buckets
    (tmp_path / "slos.yaml").write_text("""\
slos:
  - server.vllm:time_to_first_token_seconds.p50 < 40ms
  - {assert: 'server.vllm:time_to_first_token_seconds{model_name="sim-model"}.mean >= 30ms', phase: load}
  - server.vllm:time_to_first_token_seconds.p99 < 10ms
  - server.vllm:e2e_request_latency_seconds.max < 10s
""")
    again = CliRunner().invoke(cli, ["report", str(tmp_path / "out" / "results.json"),
                                     "--slos", str(tmp_path / "slos.yaml")])
    assert again.exit_code == 1, again.output
    assert "server.vllm:time_to_first_token_seconds.p99 = " in again.output
    judged = evaluate([slo(text, phase="load" if "mean" in text else None) for text in (
        "server.vllm:time_to_first_token_seconds.p50 < 40ms",
        'server.vllm:time_to_first_token_seconds{model_name="sim-model"}.mean >= 30ms',
        "server.vllm:time_to_first_token_seconds.p99 < 10ms",
        "server.vllm:e2e_request_latency_seconds.max < 10s")], run)
    assert [s.passed for s in judged] == [True, True, False, False], [s.message for s in judged]
    assert judged[0].measured == pytest.approx(estimate)
    assert f"{ttft_h.count:,.0f} observations" in judged[0].message
    assert "it lies in 0.02–0.04" in judged[2].message
    assert judged[1].measured == pytest.approx(ttft.server_mean)
    assert "use mean or pNN" in judged[3].message




DRAIN = """\
version: 1
name: drain
services:
  sim: {builtin: openai-sim, options: {ttft: 600ms, itl: 5ms, output_tokens: 4}}
targets:
  chat: {plugin: vllm, service: sim, model: sim-model, timeout: 100ms}
requests:
  - name: chat
    target: chat
    stream: true
    body: {messages: [{role: user, content: hi}], max_tokens: 4}
phases:
  - {name: load, arrival_rate: 5, duration: 2s}
metrics: {server_interval: 0s}
slos:
  - error_rate <= 100%
"""


@pytest.mark.slow
def test_the_phase_end_reading_waits_for_the_server_to_finish(tmp_path: Path) -> None:
    # the client gives up after 100 ms; the server notices only when it writes its first
    # token, 500 ms later: the reading at the phase's end must wait for that
    (tmp_path / "s.yaml").write_text(DRAIN)
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "s.yaml"), "-q", "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    run = RunResults.load(tmp_path / "out" / "results.json")
    (entry,) = run.server_metrics
    timeouts = aggregate(run, phase="load").counters.errors.get("timeout", 0)
    assert timeouts == aggregate(run).counters.requests >= 8
    assert entry.delta['vllm:request_success_total{finished_reason="abort",'
                       'model_name="sim-model"}'] == timeouts
    assert entry.after['vllm:num_requests_running{model_name="sim-model"}'] == 0
    assert not [n for n in run.meta.notes if "still had" in n], run.meta.notes
