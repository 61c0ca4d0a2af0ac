"""Live metrics for Prometheus (`--prometheus`) and CSV files (`--csv`): the collector on
typed Progress messages, the CLI, and a real Prometheus scraping a running llmscen."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from llmscen.cli.main import cli
from llmscen.driver import messages as m
from llmscen.driver.export import BUCKETS, ExportError, LiveExport
from llmscen.metrics.histogram import SERIES_DIGITS, Histogram
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults, ScopeSeries, SeriesPoint

ROOT = Path(__file__).resolve().parent.parent


def _hist(values_us: list[int]) -> str:
    h = Histogram("duration", SERIES_DIGITS)
    h.record_many(values_us)
    return h.encode()


def _progress(worker: int, points: list[SeriesPoint], in_flight: int = 0) -> m.Progress:
    return m.Progress(worker=worker, now=3.0, phase="p", counts=m.Counts(), tick=True,
                      in_flight=in_flight, max_lag=0.01 * (worker + 1), loop_lag=0.0, cpu=0.1,
                      points=[ScopeSeries(phase="p", request="chat", target="llm",
                                          points=points)])


def _scrape(export: LiveExport) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(export)
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_the_collector_counts_what_the_workers_reported() -> None:
    export = LiveExport("s")
    export.phase_started("p")
    export.progress(_progress(0, [SeriesPoint(t=1, requests=3, ok=2, errors={"http": 1},
                                              latency=_hist([40_000, 60_000]))], in_flight=4))
    export.progress(_progress(1, [SeriesPoint(t=1, requests=2, ok=1, check_failures=1,
                                              not_sent=5, output_tokens=7,
                                              latency=_hist([2_000_000, 40_000]),
                                              ttft=_hist([10_000]))], in_flight=3))
    export.resources({"client.cpu": 0.25, "service.sim.rss": 5e7})
    got = _scrape(export)
    key = (("request", "chat"), ("target", "llm"))
    total = got["llmscen_requests_total"]
    assert total[(("class", "ok"), *key)] == 3
    assert total[(("class", "http"), *key)] == 1 and total[(("class", "check"), *key)] == 1
    assert got["llmscen_not_sent_total"][key] == 5
    assert got["llmscen_output_tokens_total"][key] == 7
    buckets = {dict(k)["le"]: v for k, v in got["llmscen_latency_seconds_bucket"].items()}
    assert buckets["0.025"] == 0 and buckets["0.05"] == 2 and buckets["0.075"] == 3
    assert buckets["1.5"] == 3 and buckets["2.0"] == 3 and buckets["3.0"] == 4   # 2 s: 1 %
    assert buckets["+Inf"] == got["llmscen_latency_seconds_count"][key] == 4
    assert got["llmscen_latency_seconds_sum"][key] == pytest.approx(2.14, rel=0.01)
    assert got["llmscen_ttft_seconds_count"][key] == 1
    assert got["llmscen_in_flight"][()] == 7 and got["llmscen_schedule_lag_seconds"][()] == 0.02
    assert got["llmscen_phase"][(("phase", "p"), ("scenario", "s"))] == 1
    assert got["llmscen_resource"][(("metric", "client.cpu"),)] == 0.25
    export.phase_ended()
    assert "llmscen_phase" not in _scrape(export)
    assert list(BUCKETS) == sorted(BUCKETS)


def test_a_bad_address_is_refused_clearly() -> None:
    with pytest.raises(ExportError, match="give HOST:PORT"):
        LiveExport("s").serve("9464")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        with pytest.raises(ExportError, match="cannot listen there"):
            LiveExport("s").serve(f"127.0.0.1:{port}")
    finally:
        taken.close()


def test_the_cli_refuses_a_bad_address_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SCENARIO)
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "s.yaml"), "--prometheus", "9464",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "--prometheus 9464: give HOST:PORT, e.g. 127.0.0.1:9464" in result.output
    assert not (tmp_path / "out").exists()      # nothing ran


SCENARIO = """\
version: 1
name: live
services:
  sim: {builtin: openai-sim, options: {ttft: 5ms, itl: 2ms, output_tokens: 6, error_rate: 10%,
                                      error_status: 503, seed: 7}}
targets:
  chat: {plugin: openai, service: sim, model: sim-model}
phases:
  - {name: steady, duration: 4s, arrival_rate: 20}
requests:
  - name: chat
    target: chat
    stream: true
    body: {messages: [{role: user, content: hi}], max_tokens: 6}
slos:
  - error_rate < 50%
"""


@pytest.mark.slow
def test_csv_files_hold_the_series_and_the_scopes(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SCENARIO)
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "s.yaml"), "--out",
                                      str(tmp_path / "out"), "-q", "--csv", str(tmp_path / "csv")])
    assert result.exit_code == 0, result.output
    run = RunResults.load(tmp_path / "out" / "results.json")
    counters = aggregate(run).counters

    def rows(name: str) -> list[dict[str, str]]:
        with (tmp_path / "csv" / name).open(newline="") as f:
            return list(csv.DictReader(f))

    series = rows("series.csv")
    assert sum(int(r["requests"]) for r in series) == counters.requests
    assert sum(int(r["errors"]) for r in series) == counters.error_total > 0
    assert all(float(r["latency_p50_s"]) > 0 for r in series if int(r["ok"]))
    scopes = {(r["phase"], r["request"], r["target"]): r for r in rows("scopes.csv")}
    whole = scopes[("steady", "*", "*")]
    assert int(whole["requests"]) == counters.requests
    assert float(whole["latency_p95_s"]) == aggregate(run, "steady").value("latency", "p95")
    assert scopes[("steady", "chat", "chat")]["ok"] == str(counters.ok)
    resources = rows("resources.csv")
    assert {"client.cpu", "host.memory", "service.sim.rss"} <= {r["metric"] for r in resources}
    stats = rows("resource_stats.csv")
    assert any(r["metric"] == "service.sim.rss" and float(r["max"]) > 1e6 for r in stats)
    # the same files from the saved results, offline
    again = CliRunner().invoke(cli, ["report", str(tmp_path / "out" / "results.json"), "--csv",
                                     str(tmp_path / "csv2")])
    assert again.exit_code == 0, again.output
    for name in ("series.csv", "scopes.csv", "resources.csv", "resource_stats.csv"):
        assert (tmp_path / "csv" / name).read_text() == (tmp_path / "csv2" / name).read_text()


# -- a real Prometheus ---------------------------------------------------------------------

PROMETHEUS = shutil.which("prometheus")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _query(port: int, promql: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@pytest.mark.slow
@pytest.mark.prometheus
@pytest.mark.skipif(PROMETHEUS is None, reason="Debian's prometheus is not installed "
                    "(scripts/install-test-deps.sh installs it)")
def test_a_real_prometheus_scrapes_the_run_and_agrees_with_results(tmp_path: Path) -> None:
    assert PROMETHEUS is not None
    export_port, prom_port = _free_port(), _free_port()
    (tmp_path / "prometheus.yml").write_text(f"""\
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: llmscen
    static_configs: [{{targets: ["127.0.0.1:{export_port}"]}}]
""")
    (tmp_path / "s.yaml").write_text(SCENARIO)
    prom = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "prom.log").open("w"))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/-/ready", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "prom.log").read_text()[-2000:]
                time.sleep(0.2)
        # ready is not scraping: Prometheus hands new targets to its scrape loop up to ~5 s
        # later; once it tried one (up == 0, nothing listens yet), it scrapes every second
        while not _query(prom_port, 'up{job="llmscen"}'):
            assert time.monotonic() < deadline, (tmp_path / "prom.log").read_text()[-2000:]
            time.sleep(0.2)
        run = subprocess.Popen(
            [sys.executable, "-m", "llmscen.cli.main", "run", str(tmp_path / "s.yaml"), "-q",
             "--out", str(tmp_path / "out"), "--prometheus", f"127.0.0.1:{export_port}",
             "--prometheus-hold", "4s"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        output = run.communicate(timeout=90)[0]
        assert run.returncode == 0, output
        assert f"serving live metrics at http://127.0.0.1:{export_port}/metrics" in output
        results = RunResults.load(tmp_path / "out" / "results.json")
        # while it ran, Prometheus saw the phase that was running: the samples of its
        # phase gauge (a range, read afterwards, so the test's own polling cannot miss it)
        # lie within the run's wall time
        assert results.meta.started_at is not None and results.meta.ended_at is not None
        series = _query(prom_port, 'llmscen_phase{phase="steady"}[5m]')
        samples = [(float(t), float(v)) for r in series
                   for t, v in r["values"]]   # type: ignore[attr-defined]
        assert samples, "Prometheus never saw the phase running: " + \
            (tmp_path / "prom.log").read_text()[-2000:]
        assert all(v == 1 for _, v in samples)
        begin, end = results.meta.started_at.timestamp(), results.meta.ended_at.timestamp()
        assert all(begin - 1 <= t <= end + 1 for t, _ in samples), (samples, begin, end)
        counters = aggregate(results).counters
        # the last value scraped of every series, with the target gone since
        last = "last_over_time({}[5m])"
        by_class = {str(r["metric"]["class"]): float(r["value"][1])   # type: ignore[index]
                    for r in _query(prom_port, "sum by (class) (" +
                                    last.format("llmscen_requests_total") + ")")}
        assert sum(by_class.values()) == counters.requests
        assert by_class["ok"] == counters.ok and by_class["http"] == counters.errors["http"]
        (p95,) = _query(prom_port, "histogram_quantile(0.95, sum by (le) (" +
                        last.format("llmscen_latency_seconds_bucket") + "))")
        promql = float(p95["value"][1])   # type: ignore[index]
        measured = aggregate(results).value("latency", "p95")
        assert measured is not None
        # within the buckets' precision: PromQL interpolates inside the bucket that holds
        # the 95th value (the series' 2-digit histograms may shift it by 1 % across a bound)
        low = max([0.0, *(b for b in BUCKETS if b < measured * 0.99)])
        high = min(b for b in (*BUCKETS, float("inf")) if b >= measured * 1.01)
        assert low <= promql <= high, (promql, measured, low, high)
        (cpu,) = _query(prom_port, last.format('llmscen_resource{metric="client.cpu"}'))
        assert 0 < float(cpu["value"][1]) < 2   # type: ignore[index]
        # the Grafana dashboard's queries are PromQL this Prometheus accepts
        for expr in _dashboard_exprs():
            _query(prom_port, expr.replace("$job", ".*").replace("$__rate_interval", "30s"))
    finally:
        prom.terminate()
        prom.wait(timeout=30)


# -- the Grafana dashboard -------------------------------------------------------------------

DASHBOARD = ROOT / "dashboards" / "llmscen.json"


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def test_the_dashboard_is_grafana_json_over_the_exported_names() -> None:
    """No grafana-server can be installed here (notes/RAY-AND-PROMETHEUS.md): check the
    structure Grafana's import reads, and that every query names exported metrics."""
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "job"} <= variables
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) >= 8
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        assert all(isinstance(pos[k], int) for k in ("x", "y", "w", "h"))
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0
        assert panel["type"] == "timeseries" and panel["datasource"]["type"] == "prometheus"
        assert panel["targets"] and all(t["refId"] and t["expr"] for t in panel["targets"])
    export = LiveExport("s")
    export.phase_started("p")
    itl = [0] * (len(BUCKETS) + 1)
    itl[0] = 1
    servers = ("vllm:num_requests_waiting", "vllm:num_requests_running",
               "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc",
               "llamacpp:requests_deferred", "llamacpp:requests_processing",
               "llamacpp:kv_cache_usage_ratio", "nv_inference_pending_request_count")
    export.progress(dataclasses.replace(
        _progress(0, [SeriesPoint(t=1, requests=2, ok=1, errors={"http": 1}, not_sent=1,
                                  output_tokens=3, latency=_hist([40_000]),
                                  ttft=_hist([9_000]))]),
        itl={("chat", "llm"): (itl, 1_000)},
        server={("llm", f'{family}{{model="m"}}'): 1.0 for family in servers}))
    export.resources({"client.cpu": 0.1})
    exported = set(_scrape(export))
    for expr in _dashboard_exprs():
        for name in re.findall(r"\bllmscen_[a-z_]+", expr):
            assert name in exported, (name, expr)
        assert "$job" in expr    # every panel follows the job picker


# -- ITL and the server's own gauges --------------------------------------------------------

def test_the_collector_serves_itl_and_server_gauges() -> None:
    export = LiveExport("s")
    counts = [0] * (len(BUCKETS) + 1)
    counts[BUCKETS.index(0.005)] = 3          # three gaps of (2.5 ms, 5 ms]
    counts[-1] = 1                            # one above 300 s
    report = dataclasses.replace(
        _progress(0, []), itl={("chat", "llm"): (counts, 3 * 4_000 + 301_000_000)},
        server={("llm", 'vllm:num_requests_waiting{model_name="m"}'): 4.0,
                ("llm", 'vllm:num_requests_running{model_name="m"}'): 2.0})
    export.progress(report)
    export.progress(dataclasses.replace(     # the latest reading wins
        _progress(0, []), server={("llm", 'vllm:num_requests_waiting{model_name="m"}'): 1.0}))
    got = _scrape(export)
    key = (("request", "chat"), ("target", "llm"))
    buckets = {dict(k)["le"]: v for k, v in got["llmscen_itl_seconds_bucket"].items()}
    assert buckets["0.0025"] == 0 and buckets["0.005"] == 3 and buckets["300.0"] == 3
    assert buckets["+Inf"] == got["llmscen_itl_seconds_count"][key] == 4
    assert got["llmscen_itl_seconds_sum"][key] == pytest.approx(301.012)
    labels = (("model_name", "m"), ("target", "llm"))
    assert got["llmscen_server_vllm_num_requests_waiting"][labels] == 1.0
    assert got["llmscen_server_vllm_num_requests_running"][labels] == 2.0


LIVE_SERVER = SCENARIO.replace("plugin: openai", "plugin: vllm").replace(
    "duration: 4s", "duration: 5s")


def _read_export(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        text = resp.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


@pytest.mark.slow
def test_the_export_endpoint_serves_itl_and_server_gauges_while_it_runs(tmp_path: Path) -> None:
    port = _free_port()
    (tmp_path / "s.yaml").write_text(LIVE_SERVER)
    run = subprocess.Popen(
        [sys.executable, "-m", "llmscen.cli.main", "run", str(tmp_path / "s.yaml"), "-q",
         "--out", str(tmp_path / "out"), "--prometheus", f"127.0.0.1:{port}",
         "--prometheus-hold", "3s"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    running_seen = False
    try:
        deadline = time.monotonic() + 60
        while run.poll() is None and time.monotonic() < deadline:
            try:
                seen = _read_export(port)
            except OSError:
                time.sleep(0.2)
                continue
            running_seen = running_seen or bool(seen.get("llmscen_phase"))
            time.sleep(0.3)
        output = run.communicate(timeout=60)[0]
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, output
    assert running_seen, "the export never showed the phase running"
    results = RunResults.load(tmp_path / "out" / "results.json")
    key = (("request", "chat"), ("target", "chat"))
    itl = aggregate(results).histogram("itl")
    assert itl is not None
    # every gap the results hold, once the last report arrived (the hold keeps serving)
    assert seen["llmscen_itl_seconds_count"][key] == itl.count
    waiting = seen["llmscen_server_vllm_num_requests_waiting"]
    assert set(waiting) == {(("model_name", "sim-model"), ("target", "chat"))}
    assert all(v >= 0 for v in waiting.values())
    assert (("model_name", "sim-model"), ("target", "chat")) in \
        seen["llmscen_server_vllm_num_requests_running"]
