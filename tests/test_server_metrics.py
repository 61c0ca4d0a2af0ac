"""Server metrics kept as what they are: the exposition's types and labels, counters as
per-phase deltas and rates, gauges as real values, `server.*` SLOs — against the bundled
simulator's /metrics and a real Triton server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmscen.cli.main import cli
from llmscen.compile.slo import SLOExpr, SLOSyntaxError, format_slo, parse_slo
from llmscen.engine.events import ServerScrape
from llmscen.engine.protocol import Exposed
from llmscen.metrics.query import aggregate
from llmscen.metrics.recorder import Recorder
from llmscen.metrics.results import Meta, RunResults
from llmscen.metrics.server import ServerSeries
from llmscen.report.reconcile import reconciliation
from llmscen.report.view import server_tables
from llmscen.runners.prometheus import parse_exposition, summed
from llmscen.spec.metrics import sample_key, split_key

sys.path.insert(0, str(Path(__file__).parent))
import realservers

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "slo.md"

EXPOSITION = """\
# HELP vllm:num_requests_waiting Requests waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 3
# TYPE vllm:request_success counter
vllm:request_success_total{finished_reason="stop",model_name="m"} 5
vllm:request_success_total{finished_reason="length",model_name="m"} 7
vllm:request_success_created{finished_reason="stop",model_name="m"} 1.7e9
# TYPE nv_inference_count counter
nv_inference_count{model="flux",version="1"} 280
nv_inference_count{model="clip",version="1"} 20
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="flux",version="1"} 0
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="0.1",model_name="m"} 1
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="m"} 2
vllm:e2e_request_latency_seconds_sum{model_name="m"} 0.3
vllm:e2e_request_latency_seconds_count{model_name="m"} 2
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} 0.2
rpc_seconds_sum 4
rpc_seconds_count 9
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 12
llamacpp:kv_cache_usage_ratio 0.25
odd{path="a\\"b}c"} 1
"""


def test_the_exposition_keeps_types_and_labels() -> None:
    got = parse_exposition(EXPOSITION)
    assert got.types == {
        "vllm:num_requests_waiting": "gauge",
        "vllm:request_success_total": "counter",     # OpenMetrics-style: `# TYPE x` + x_total
        "nv_inference_count": "counter",             # Triton: the sample is the family
        "nv_inference_pending_request_count": "gauge",
        "vllm:e2e_request_latency_seconds_sum": "counter",
        "vllm:e2e_request_latency_seconds_count": "counter",
        "rpc_seconds_sum": "counter", "rpc_seconds_count": "counter",
        "llamacpp:prompt_tokens_total": "counter",   # `# TYPE x_total counter`
        "llamacpp:kv_cache_usage_ratio": "untyped", "odd": "untyped"}
    assert got.values['nv_inference_count{model="flux",version="1"}'] == 280
    assert got.values['vllm:request_success_total{finished_reason="length",model_name="m"}'] == 7
    assert got.values['odd{path="a\\"b}c"}'] == 1
    # buckets, quantiles and _created stamps are not series to read
    assert not [k for k in got.values if "_bucket" in k or "quantile" in k or "created" in k]
    assert summed(got)["nv_inference_count"] == 300
    assert parse_exposition(EXPOSITION, "nv_").types.keys() == {
        "nv_inference_count", "nv_inference_pending_request_count"}


_LABEL_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])   # loaded CI
@given(st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,20}", fullmatch=True),
       st.dictionaries(st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True),
                       _LABEL_TEXT, max_size=4))
def test_series_keys_round_trip_and_parse_back(name: str, labels: dict[str, str]) -> None:
    key = sample_key(name, labels)
    assert split_key(key) == (name, labels)
    exposed = parse_exposition(f"# TYPE {name} gauge\n{key} 2.5\n")
    assert exposed.values == {key: 2.5} and exposed.types == {name: "gauge"}


def test_counters_become_rates_and_gauges_stay_values() -> None:
    series = ServerSeries()
    types = {"c_total": "counter", "g": "gauge"}
    for now, counter, gauge in ((0.5, 10.0, 4.0), (1.5, 30.0, 6.0), (3.5, 5.0, 1.0)):
        series.add(now, "p", "t", Exposed({'c_total{a="1"}': counter, "g": gauge}, types))
    got = {s.name: (s.labels, s.target, s.points) for s in series.series()}
    # 20 more in a second; then a reset: its new value (5) over two seconds
    assert got["server.c_total"] == ({"a": "1"}, "t", [(1, 20.0), (3, 2.5)])
    assert got["server.g"] == ({}, "t", [(0, 4.0), (1, 6.0), (3, 1.0)])


def test_a_phase_delta_is_kept_for_counters_only() -> None:
    recorder = Recorder(Meta(scenario="s"))
    recorder.handle(ServerScrape("p", "t", {"c_total": 10, "g": 5, "r_total": 50},
                                 {"c_total": 25, "g": 2, "r_total": 4},
                                 {"c_total": "counter", "g": "gauge", "r_total": "counter"}))
    (entry,) = recorder.results().server_metrics
    assert entry.delta == {"c_total": 15, "r_total": 4}     # a reset: what came after it
    assert entry.after["g"] == 2 and entry.types["g"] == "gauge"
    # a plugin that does not say types: every series' change, as before
    recorder.handle(ServerScrape("q", "t", {"x": 3}, {"x": 1}))
    assert recorder.results().server_metrics[1].delta == {"x": -2}


@pytest.mark.parametrize(("text", "expected"), [
    ("server.vllm:num_requests_waiting.max < 10",
     SLOExpr("server.vllm:num_requests_waiting", "max", "<", 10.0)),
    ('server.nv_inference_count{version="1", model="flux"}.increase >= 280',
     SLOExpr('server.nv_inference_count{model="flux",version="1"}', "increase", ">=", 280.0)),
    ("server.vllm:gpu_cache_usage_perc.p95 < 90%",
     SLOExpr("server.vllm:gpu_cache_usage_perc", "p95", "<", 0.9)),
    ("server.nv_gpu_memory_used_bytes.max < 2GiB",
     SLOExpr("server.nv_gpu_memory_used_bytes", "max", "<", 2.0 * 2**30)),
    ("server.vllm:request_queue_time_seconds_sum.increase < 500ms",
     SLOExpr("server.vllm:request_queue_time_seconds_sum", "increase", "<", 0.5)),
])
def test_server_slos_parse_with_labels_and_units(text: str, expected: SLOExpr) -> None:
    assert parse_slo(text) == expected
    assert parse_slo(format_slo(expected)) == expected


@pytest.mark.parametrize(("text", "column", "message"), [
    ("server.x < 1", 0, "server.x is sampled every second: add a statistic"),
    ("server..max < 1", 7, "expected a Prometheus metric name after 'server.'"),
    ("server.x{model=flux}.max < 1", 8, 'expected labels such as {model="flux"}'),
    ('server.x{model="flux".max < 1', 8, "a closing }"),
    ("server.x.stdev < 1", 9, "valid: min max mean increase pNN"),
    ("client.cpu.increase < 1%", 11, "unknown statistic 'increase' for client.cpu"),
])
def test_server_slo_errors_point_at_the_part(text: str, column: int, message: str) -> None:
    with pytest.raises(SLOSyntaxError) as info:
        parse_slo(text)
    assert message in info.value.message and info.value.column == column


# -- through the CLI, against the bundled simulator's /metrics --------------------------

SCENARIO = """\
version: 1
name: server-metrics
services:
  sim: {builtin: openai-sim, options: {ttft: 20ms, itl: 5ms, output_tokens: 8}}
targets:
  chat: {plugin: vllm, service: sim, model: sim-model}
requests:
  - name: chat
    target: chat
    stream: true
    body: {messages: [{role: user, content: hi}], max_tokens: 8}
phases:
  - {name: load, arrival_rate: 10, duration: 3s}
  - {name: peak, arrival_rate: 20, duration: 3s}
"""


def _doc_slos() -> str:
    section = DOC.read_text(encoding="utf-8").split("## Server metrics", 1)[1]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
def test_server_slos_and_tables_on_the_simulators_metrics(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SCENARIO + _doc_slos() + """\
  - server.vllm:num_requests_waiting.increase < 1
""")
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "s.yaml"), "--out",
                                      str(tmp_path / "out")])
    run = RunResults.load(tmp_path / "out" / "results.json")
    verdicts = {s.text: s for s in run.slos}
    for slo in run.slos[:-1]:      # the documented ones hold
        assert slo.passed is True, slo.message
    gauge = verdicts["server.vllm:num_requests_waiting.increase < 1"]
    assert gauge.passed is False and "is not a counter" in gauge.message
    assert result.exit_code == 1, result.output
    assert "vllm:num_requests_waiting" in run.meta.targets[0].metrics   # listed before traffic
    # re-judged offline, a name the server never exposed says what it did expose
    (tmp_path / "other.yaml").write_text("slos:\n  - server.vllm:no_such_family.max < 1\n")
    again = CliRunner().invoke(cli, ["report", str(tmp_path / "out" / "results.json"),
                                     "--slos", str(tmp_path / "other.yaml")])
    assert again.exit_code == 1
    assert "no target exposed vllm:no_such_family in scope; exposed: " in again.output
    # counters are per-phase deltas: the server finished exactly what the client saw finish
    for entry in run.server_metrics:
        ok = aggregate(run, phase=entry.phase).counters.ok
        assert entry.total("vllm:request_success_total") == ok, entry
        assert entry.types["vllm:num_requests_running"] == "gauge"
        assert not [k for k in entry.delta if k.startswith("vllm:num_requests")]   # gauges
    # gauges are real values read every second; counters there are rates
    running = [s for s in run.series.resources if s.name == "server.vllm:num_requests_running"]
    assert {s.phase for s in running} == {"load", "peak"}
    assert all(s.labels == {"model_name": "sim-model"} and s.target == "chat" for s in running)
    assert all(v >= 0 for s in running for _, v in s.points)
    rates = [v for s in run.series.resources if s.phase == "peak" and
             s.name == "server.vllm:request_success_total" for _, v in s.points]
    assert rates and 5 < max(rates) < 40      # 20 requests a second, give or take a second
    (table,) = server_tables(run)
    rows = dict(table[2])
    assert rows['vllm:request_success_total{finished_reason="length",model_name="sim-model"}'] \
        == [str(aggregate(run, phase=p).counters.ok) for p in ("load", "peak")]
    assert all(" · " in cell for cell in
               rows['vllm:num_requests_running{model_name="sim-model"}'])   # mean · max
    html = next((tmp_path / "out").glob("**/report.html")).read_text()
    assert "finished_reason=&#34;length&#34;" in html      # labels shown, escaped
    # the server's own timings beside the client's: the server sees less, never more
    rows = {(r.phase, r.server_metric): r for r in reconciliation(run)}
    for phase in ("load", "peak"):
        ttft = rows[(phase, "vllm:time_to_first_token_seconds")]
        assert ttft.client_metric == "ttft_sent" and ttft.client_mean is not None
        assert 0.015 < ttft.server_mean <= ttft.client_mean * 1.05, ttft   # ttft: 20 ms
        e2e = rows[(phase, "vllm:e2e_request_latency_seconds")]
        assert e2e.client_mean is not None and e2e.server_mean <= e2e.client_mean * 1.05
        assert rows[(phase, "vllm:request_queue_time_seconds")].client_metric is None
    assert "Server and client timings" in html


def test_a_server_metric_no_target_exposes_stops_the_run_before_traffic(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SCENARIO + """\
slos:
  - server.vllm:num_requests_waitin.max < 10
  - {assert: server.vllm:num_requests_running.max < 10, target: chat}
""")
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "s.yaml"), "-q", "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 3, result.output
    run = RunResults.load(tmp_path / "out" / "results.json")
    assert run.outcome is not None
    (reason,) = [r for r in run.outcome.reasons if r.kind == "unknown_server_metric"]
    assert reason.message.startswith(f"{tmp_path / 's.yaml'}:16:5: unknown server metric "
                                     "'vllm:num_requests_waitin'")
    assert "did you mean vllm:num_requests_waiting?" in reason.message
    assert "running" not in reason.message          # the one that exists is fine
    assert aggregate(run).counters.requests == 0     # nothing was sent


@pytest.mark.slow
def test_server_interval_zero_reads_only_at_phase_boundaries(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SCENARIO.replace("arrival_rate: 20, duration: 3s",
                                                      "arrival_rate: 20, duration: 1s")
                                     + "metrics: {server_interval: 0s}\n")
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "s.yaml"), "-q", "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    run = RunResults.load(tmp_path / "out" / "results.json")
    assert not [s for s in run.series.resources if s.name.startswith("server.")]
    assert [m.phase for m in run.server_metrics] == ["load", "peak"]      # the deltas remain
    assert run.server_metrics[1].total("vllm:request_success_total") == \
        aggregate(run, phase="peak").counters.ok


# -- a real Triton server ----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.triton
def test_triton_counters_are_phase_deltas_per_model(tmp_path: Path) -> None:
    pytest.importorskip("tritonclient")
    pytest.importorskip("pytriton")
    (tmp_path / "slos.yaml").write_text("""\
slos:
  - {assert: 'server.nv_inference_request_success{model="flux"}.increase >= 1', phase: load}
  - {assert: 'server.nv_inference_pending_request_count{model="flux"}.max < 1000', phase: load}
""")
    result = CliRunner().invoke(cli, [
        "run", str(ROOT / "scenarios/flux.yaml"), "--out", str(tmp_path / "out"), "--quiet",
        "--set", "phases.1.duration=3s", "--set", "phases.1.mix={cat-sign: 1}"])
    run = RunResults.load(tmp_path / "out" / "results.json")
    load = next(m for m in run.server_metrics if m.phase == "load")
    sent = aggregate(run, phase="load").counters.requests
    # what the load phase did, per model: not the running total since the server started
    assert load.delta['nv_inference_request_success{model="flux",version="1"}'] == sent
    assert load.after['nv_inference_request_success{model="flux",version="1"}'] > sent
    assert load.types["nv_inference_pending_request_count"] == "gauge"
    assert all(v >= 0 for k, v in load.after.items() if "pending" in k)   # a real value
    assert not [k for k in load.delta if "pending" in k]
    assert result.exit_code == 0, result.output
    again = CliRunner().invoke(cli, ["report", str(tmp_path / "out" / "results.json"),
                                     "--slos", str(tmp_path / "slos.yaml"), "--junit",
                                     str(tmp_path / "j.xml")])
    assert again.exit_code == 0, again.output
    assert f"increase = {sent}" in (tmp_path / "j.xml").read_text()
    # Triton's own request duration for the model the target names, per request
    (duration,) = [r for r in reconciliation(run) if r.phase == "load" and
                   r.server_metric == "nv_inference_request_duration_us"]
    assert duration.client_metric == "latency_sent" and duration.server_mean > 0


# -- llama.cpp's llama-server (llamacpp:*) --------------------------------------------------

LLAMA_SCENARIO = """\
version: 1
targets:
  llm: {plugin: vllm, url: "${LLAMA_URL}", model: smollm2, metrics_prefix: "llamacpp:",
        timeout: 120s}
phases:
  - {name: load, duration: 4s, arrival_rate: 1, seed: 5}
requests:
  - name: story
    target: llm
    body:
      messages: [{role: user, content: "Tell me a short story about a robot."}]
      max_tokens: 16
      temperature: 0
slos:
  - {assert: server.llamacpp:tokens_predicted_total.increase >= 1, phase: load}
  - server.llamacpp:requests_processing.max <= 8
  - server.llamacpp:prompt_tokens_seconds.min >= 0
"""


@pytest.mark.slow
@pytest.mark.realserver
def test_llama_server_counters_and_gauges(tmp_path: Path) -> None:
    try:
        found = realservers.real_server_paths(require=["llama_server", "gguf"])
    except realservers.RealServersMissing as exc:
        pytest.skip(str(exc))
    (tmp_path / "s.yaml").write_text(LLAMA_SCENARIO)
    with realservers.start_llama_server(paths=found) as url:
        result = CliRunner().invoke(cli, ["run", str(tmp_path / "s.yaml"), "-q", "--out",
                                          str(tmp_path / "out")], env={"LLAMA_URL": str(url)})
    run = RunResults.load(tmp_path / "out" / "results.json")
    assert result.exit_code == 0, result.output
    (load,) = run.server_metrics
    assert load.types["llamacpp:tokens_predicted_total"] == "counter"
    assert load.types["llamacpp:requests_processing"] == "gauge"
    counters = aggregate(run, phase="load").counters
    # the server generated the tokens the client received (usage), one per request at most
    # apart (the stop token)
    predicted = load.total("llamacpp:tokens_predicted_total")
    assert abs(predicted - counters.output_tokens) <= counters.requests, (predicted, counters)
    assert "llamacpp:requests_processing" in run.meta.targets[0].metrics
    assert all(s.passed for s in run.slos), [s.message for s in run.slos]
