"""Naming the cause of a failed SLO: each rule on constructed results, the documented
thresholds, and through the CLI against the bundled simulator (queueing vs a calm server)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_report_samples import build_results, slo

from llmscen.assertions import cause
from llmscen.assertions.slo import evaluate
from llmscen.assertions.verdict import conclude
from llmscen.cli.main import cli
from llmscen.metrics.results import ResourceSeries, RunResults, ServerMetrics
from llmscen.report.junit import junit_tree
from llmscen.report.terminal import summary

ROOT = Path(__file__).resolve().parent.parent


def _series(name: str, phase: str, values: list[float], start: int = 6,
            target: str | None = None) -> ResourceSeries:
    return ResourceSeries(name=name, phase=phase, target=target,
                          points=[(start + i, v) for i, v in enumerate(values)])


def _judged(extra: list[ResourceSeries], server: list[ServerMetrics] | None = None,
            text: str = "latency.p95 < 1ms", **scope: object) -> RunResults:
    """A run whose SLO `text` fails in phase steady (seconds 6–12), with `extra` telemetry."""
    plan = slo(text, phase="steady", **scope)
    results = build_results(slos=(plan,))
    results.series.resources = extra
    results.server_metrics = server or []
    results.slos = evaluate([plan], results)
    conclude(results)
    return results


def _kinds(results: RunResults) -> list[str]:
    (failed,) = [s for s in results.slos if s.passed is False]
    assert failed.cause is not None
    return [f.kind for f in failed.cause.findings]


def _text(results: RunResults) -> str:
    (failed,) = [s for s in results.slos if s.passed is False]
    assert failed.cause is not None
    return failed.cause.text


def test_a_waiting_queue_on_the_server_is_named() -> None:
    results = _judged([_series("server.vllm:num_requests_waiting", "steady", [0, 4, 9, 12],
                               target="main"),
                       _series("server.vllm:num_requests_waiting", "ramp", [0, 0], 2, "main")])
    assert _kinds(results) == ["server_queue"]
    assert "vllm:num_requests_waiting averaged 6.25 requests waiting (max 12" in _text(results)
    assert _text(results).startswith("telemetry in phase steady: queueing on the server")


def test_a_short_queue_is_not_notable() -> None:
    results = _judged([_series("server.vllm:num_requests_waiting", "steady", [0, 1, 0, 0])])
    assert _kinds(results) == []
    assert "nothing notable (vllm:num_requests_waiting mean 0.25" in _text(results)


def test_the_queue_times_share_of_request_time_is_named() -> None:
    def entry(phase: str, queued: float, took: float) -> ServerMetrics:
        return ServerMetrics(phase=phase, target="main", delta={
            "vllm:request_queue_time_seconds_sum": queued,
            "vllm:e2e_request_latency_seconds_sum": took,
            "nv_inference_queue_duration_us": 1.0, "nv_inference_request_duration_us": 100.0},
            types={"vllm:request_queue_time_seconds_sum": "counter",
                   "vllm:e2e_request_latency_seconds_sum": "counter",
                   "nv_inference_queue_duration_us": "counter",
                   "nv_inference_request_duration_us": "counter"})
    results = _judged([], [entry("ramp", 0.0, 10.0), entry("steady", 30.0, 100.0)])
    assert _kinds(results) == ["server_queue"]
    assert "queue time was 30% of the server's request time" in _text(results)
    # Triton's pair was read too (1%), below the bound; a 20% share alone is not notable
    calm = _judged([], [entry("steady", 20.0, 100.0)])
    assert _kinds(calm) == [] and "queue time 20% of request time" in _text(calm)


@pytest.mark.parametrize("family", cause.KV_USAGE)
def test_a_full_kv_cache_is_named(family: str) -> None:
    results = _judged([_series(f"server.{family}", "steady", [0.5, 0.97, 0.9])])
    assert _kinds(results) == ["kv_cache"] and "reached 97%" in _text(results)
    assert _kinds(_judged([_series(f"server.{family}", "steady", [0.5, 0.94])])) == []


def test_preemptions_are_named() -> None:
    def entry(n: float) -> ServerMetrics:
        return ServerMetrics(phase="steady", target="main",
                             delta={"vllm:num_preemptions_total": n},
                             types={"vllm:num_preemptions_total": "counter"})
    assert _kinds(_judged([], [entry(3)])) == ["preemptions"]
    assert "vllm:num_preemptions_total rose by 3" in _text(_judged([], [entry(3)]))
    assert _kinds(_judged([], [entry(0)])) == []


def test_the_clients_own_cpu_is_named_per_worker() -> None:
    hot = [_series("worker.0.cpu", "steady", [0.3, 0.4, 0.3]),
           _series("worker.1.cpu", "steady", [0.95, 0.99, 0.5]),
           _series("client.cpu", "steady", [1.25, 1.39, 0.8])]
    results = _judged(hot)
    assert _kinds(results) == ["client_cpu"]
    assert "worker.1.cpu reached 99%" in _text(results)
    # one hot second is a spike; the sum over two workers is not "one full core"
    spike = [_series("worker.0.cpu", "steady", [0.3, 0.95, 0.3]),
             _series("worker.1.cpu", "steady", [0.6, 0.6, 0.6])]
    assert _kinds(_judged(spike)) == []


def test_schedule_lag_is_named() -> None:
    assert "schedule_lag" not in _kinds(_judged([]))     # the samples' lag is ≤ 2 ms
    lagging = build_results(slos=())
    for scope in lagging.scopes:        # the same histograms, read as if 200× later
        scope.histograms["schedule_lag"] = scope.histograms["ttft"]
    plan = slo("latency.p95 < 1ms", phase="steady")
    lagging.slos = evaluate([plan], lagging)
    conclude(lagging)
    assert _kinds(lagging) == ["schedule_lag"]
    assert "schedule_lag.p99 = " in _text(lagging)


def test_a_saturated_service_and_host_are_named() -> None:
    results = _judged([_series("service.sim.cpu", "steady", [0.92, 0.97, 0.4]),
                       _series("host.cpu", "steady", [0.95, 0.99, 0.91])])
    assert _kinds(results) == ["service_cpu", "host_cpu"]
    assert "service.sim.cpu used 92% in the median second" in _text(results)
    assert _kinds(_judged([_series("service.sim.cpu", "steady", [0.95, 0.3, 0.2])])) == []


def test_nothing_recorded_says_so_and_passing_slos_have_no_cause() -> None:
    results = _judged([], text="latency.p95 < 1ms")
    assert "nothing notable" in _text(results)
    passing = build_results(slos=(slo("latency.p95 < 10s"),))
    passing.slos = evaluate([slo("latency.p95 < 10s")], passing)
    conclude(passing)
    assert passing.slos[0].cause is None


def test_a_window_slo_reads_the_window_that_failed() -> None:
    # every window fails; the first is 6–8 s: a queue in seconds 8–9 is outside it
    later = [_series("server.vllm:num_requests_waiting", "steady", [0, 0, 8, 8, 0, 0])]
    results = _judged(later, text="latency.p95 < 1ms", window=2.0)
    (failed,) = results.slos
    assert failed.window_start == 6 and failed.cause is not None
    assert failed.cause.scope == "the window 6s–8s"
    assert _kinds(results) == []
    inside = [_series("server.vllm:num_requests_waiting", "steady", [8, 8, 0, 0, 0, 0])]
    assert _kinds(_judged(inside, text="latency.p95 < 1ms", window=2.0)) == ["server_queue"]


def test_the_cause_is_in_the_case_junit_and_terminal_and_survives_a_round_trip() -> None:
    results = _judged([_series("server.vllm:num_requests_waiting", "steady", [5, 5, 5])])
    again = RunResults.from_json(results.to_json())
    conclude(again, [])
    assert again.slos[0].cause == results.slos[0].cause
    failure = junit_tree(results).getroot().find(".//failure")
    assert failure is not None and "queueing on the server" in failure.get("message", "")
    assert "\n        telemetry in phase steady: queueing" in summary(results)


def test_the_docs_table_holds_the_rules_thresholds() -> None:
    doc = (ROOT / "docs" / "outcome.md").read_text(encoding="utf-8")
    section = doc.split("## Naming the cause", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(2) for m in
            re.finditer(r"^\| `(\w+)` \|[^|]*\|[^|]*\| (.+?) \|$", section, re.M)}
    expected = {"server_queue": [cause.QUEUE_WAITING, cause.QUEUE_SHARE],
                "kv_cache": [cause.KV_FULL], "preemptions": [cause.PREEMPTIONS],
                "service_cpu": [cause.SERVICE_CPU], "host_cpu": [cause.HOST_CPU],
                "client_cpu": [cause.CLIENT_CPU], "schedule_lag": [cause.SCHEDULE_LAG]}
    assert set(rows) == set(expected)
    for kind, values in expected.items():
        numbers = [float(n) for n in re.findall(r"([0-9.]+)", rows[kind].replace("ms", ""))]
        for value in values:
            assert value in numbers or value * 100 in numbers or value * 1000 in numbers, \
                (kind, value, rows[kind])
    for family in (*cause.WAITING, *cause.KV_USAGE, cause.PREEMPTED):
        assert family in section, family


# -- through the CLI against openai-sim ---------------------------------------------------

SCENARIO = """\
version: 1
name: cause
services:
  sim: {{builtin: openai-sim, options: {{ttft: 20ms, itl: 5ms, output_tokens: 8{extra}}}}}
targets:
  chat: {{plugin: vllm, service: sim, model: sim-model}}
requests:
  - name: chat
    target: chat
    stream: true
    body: {{messages: [{{role: user, content: hi}}], max_tokens: 8}}
phases:
  - {{name: load, arrival_rate: {rate}, duration: 3s}}
slos:
  - {{assert: latency.p95 < {bound}, phase: load}}
"""


def _run(tmp_path: Path, **values: object) -> tuple[RunResults, str]:
    (tmp_path / "s.yaml").write_text(SCENARIO.format(**values))
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "s.yaml"), "-q", "--out",
                                      str(tmp_path / "out"), "--junit",
                                      str(tmp_path / "junit.xml")])
    assert result.exit_code == 1, result.output
    run = RunResults.load(tmp_path / "out" / "results.json")
    failure = ET.parse(tmp_path / "junit.xml").getroot().find(".//failure")
    assert failure is not None
    return run, failure.get("message", "")


@pytest.mark.slow
def test_a_queueing_simulator_is_named_in_the_report_and_junit(tmp_path: Path) -> None:
    # two places, 60 ms per request, 60 arrivals a second: the queue grows all phase
    run, message = _run(tmp_path, extra=", max_concurrency: 2", rate=60, bound="100ms")
    (failed,) = run.slos
    assert failed.cause is not None
    assert failed.cause.findings[0].kind == "server_queue", failed.cause
    assert failed.cause.findings[0].metric == "server.vllm:num_requests_waiting"
    assert "queueing on the server" in message and "vllm:num_requests_waiting" in message
    html = next((tmp_path / "out").glob("**/report.html")).read_text()
    assert "queueing on the server" in html
    assert "<td title=\"requests queued for a place in the batch\">waiting requests (requests)" \
        in html      # the server-metrics table names known families
    # `llmscen report` on the saved file says the same
    again = CliRunner().invoke(cli, ["report", str(tmp_path / "out" / "results.json"),
                                     "--junit", str(tmp_path / "again.xml")])
    assert again.exit_code == 1
    assert failed.cause.text in (tmp_path / "again.xml").read_text().replace("&#10;", "\n")


@pytest.mark.slow
def test_a_calm_server_has_nothing_notable(tmp_path: Path) -> None:
    # 5 a second against a server without a queue: the SLO is just too tight
    run, message = _run(tmp_path, extra="", rate=5, bound="20ms")
    (failed,) = run.slos
    assert failed.cause is not None
    kinds = [f.kind for f in failed.cause.findings]
    # what the server said was read, and showed no queue
    assert "vllm:num_requests_waiting mean 0" in failed.cause.checked, failed.cause.checked
    assert "queue time 0% of request time" in failed.cause.checked
    assert not {"server_queue", "kv_cache", "preemptions", "client_cpu"} & set(kinds), kinds
    # a machine that other work keeps busy is notable (host_cpu): the client and the
    # server compete for its cores; otherwise nothing is
    assert set(kinds) <= {"host_cpu", "service_cpu"}, kinds
    if not kinds:
        assert "nothing notable" in message and "vllm:num_requests_waiting mean 0" in message
    else:
        assert "nothing notable" not in message and "CPU was saturated" in message


# -- known server families: one table in code, the same in docs/slo.md ---------------------

def test_the_known_families_table_in_the_docs_is_the_codes() -> None:
    from llmscen.spec.server_families import FAMILIES

    doc = (ROOT / "docs" / "slo.md").read_text(encoding="utf-8")
    section = doc.split("### Known server families", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| `")]
    assert [(r[0].strip("`"), r[1], r[2], r[3]) for r in rows] == \
        [(f.name, f.title, f.unit, f.meaning) for f in FAMILIES.values()]


def test_series_of_known_families_get_their_names() -> None:
    from llmscen.report.view import server_label
    from llmscen.spec.server_families import title_of

    assert server_label('vllm:num_requests_waiting{model_name="m"}')[0] == \
        "waiting requests (requests)"
    assert title_of("vllm:request_queue_time_seconds_sum") == "server queue time (sum)"
    assert title_of("nv_inference_queue_duration_us") == "queue time"
    assert server_label("vllm:num_preemptions_total")[1].startswith("requests preempted")
    assert server_label("my_own_gauge") == ("", "")
