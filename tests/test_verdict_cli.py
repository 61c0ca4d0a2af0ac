"""A verdict CI can trust (issue 9), tried as a user would: through the CLI, against real servers.

Each test is one way the verdict used to be wrong: failed requests passing, a
request never sent passing, could-not-run reported as regressions, a foreign
server or a dead service charged as a server regression, and `report`
disagreeing with `run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import xmlschema
from aiohttp import web
from click.testing import CliRunner, Result
from junitparser import JUnitXml

from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.metrics.results import RunResults

SCHEMA = xmlschema.XMLSchema(str(Path(__file__).parent / "data" / "junit.xsd"))
pytestmark = pytest.mark.slow

SIM = """
version: 1
services:
  sim: {{builtin: openai-sim, options: {{ttft: 10ms, itl: 2ms, output_tokens: 8, {sim}}}}}
targets:
  chat: {{plugin: openai, service: sim, model: sim-model, timeout: 10s}}
phases:
  - {{name: load, duration: {duration}, arrival_rate: {rate}}}
requests:
{requests}
slos:
{slos}
"""
CHAT = """  - name: chat
    target: chat
    stream: true
    weight: {weight}
    body: {{messages: [{{role: user, content: hi}}], max_tokens: 8}}
    expect: {{status: 200}}
"""


def write(tmp_path: Path, *, sim: str = "seed: 1", duration: str = "2s", rate: int = 20,
          requests: str = CHAT.format(weight=1), slos: str = "  - latency.p95 < 5s") -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(SIM.format(sim=sim, duration=duration, rate=rate, requests=requests,
                               slos=slos))
    return path


def run(scenario: Path, out: Path, *extra: str) -> Result:
    return CliRunner().invoke(cli, ["run", str(scenario), "--out", str(out), "--quiet",
                                    "--workers", "1", *extra])


def report(out: Path, *extra: str) -> Result:
    return CliRunner().invoke(cli, ["report", str(out / "results.json"), "--junit",
                                    str(out / "again.xml"), *extra])


def junit(out: Path, name: str = "junit.xml") -> list[tuple[str, str, str]]:
    """(classname, name, result) of every case, after checking the file against the schema."""
    SCHEMA.validate(str(out / name))
    suite = next(iter(JUnitXml.fromfile(str(out / name))))
    out_cases = []
    for case in suite:
        result = type(case.result[0]).__name__.lower() if case.result else "passed"
        out_cases.append((case.classname, case.name, result))
    return out_cases


def headline(result: Result) -> str:
    return next(line for line in result.output.splitlines()
                if re.match(r"^(PASSED|FAILED|COULD NOT RUN|INTERRUPTED|INVALID MEASUREMENT)",
                            line))


def test_failed_requests_fail_the_run_and_their_expectations(tmp_path: Path) -> None:
    scenario = write(tmp_path, sim="seed: 3, error_rate: 10%, cut_rate: 5%", rate=40)
    out = tmp_path / "out"
    result = run(scenario, out)
    assert result.exit_code == exitcodes.ASSERTIONS_FAILED, result.output
    results = RunResults.load(out / "results.json")
    assert results.outcome is not None and results.outcome.status == "failed"
    kinds = {r.kind for r in results.outcome.reasons}
    assert {"unbudgeted_errors", "expectation_failed"} <= kinds
    case = next(c for c in results.outcome.cases if c.name == "chat: status")
    assert case.status == "failed"
    assert re.search(r"\d+ passed, \d+ failed before they could be checked \(http ×\d+", case.message)
    request = next(c for c in results.outcome.cases if c.kind == "request")
    assert "declares no error budget" in request.message and "http" in request.message
    # every count balances: sent = ok + errors + check failures
    for scope in results.scopes:
        c = scope.counters
        assert c.requests == c.ok + c.error_total + c.check_failures


def test_an_error_budget_lets_failed_calls_through(tmp_path: Path) -> None:
    scenario = write(tmp_path, sim="seed: 3, error_rate: 10%", rate=40,
                     slos="  - error_rate < 40%")
    out = tmp_path / "out"
    result = run(scenario, out)
    assert result.exit_code == exitcodes.OK, result.output
    results = RunResults.load(out / "results.json")
    assert results.outcome is not None
    case = next(c for c in results.outcome.cases if c.name == "chat: status")
    assert case.status == "passed" and "within the error budget (error_rate < 40%)" in case.message


def test_a_request_never_sent_fails(tmp_path: Path) -> None:
    requests = CHAT.format(weight=1000) + CHAT.format(weight=0.001).replace("name: chat",
                                                                           "name: rare")
    out = tmp_path / "out"
    result = run(write(tmp_path, requests=requests, rate=10), out)
    assert result.exit_code == exitcodes.ASSERTIONS_FAILED, result.output
    cases = junit(out)
    assert ("scenario.request", "rare", "failure") in cases
    assert ("scenario.expect.rare", "status", "failure") in cases
    assert "never sent" in result.output


def test_report_gives_the_outcome_and_exit_code_of_run(tmp_path: Path) -> None:
    for name, target, want in (("ok", None, exitcodes.OK),
                               ("bad", None, exitcodes.ASSERTIONS_FAILED),
                               ("down", "chat=http://127.0.0.1:9", exitcodes.COULD_NOT_RUN)):
        slos = "  - latency.p95 < 1us" if name == "bad" else "  - latency.p95 < 5s"
        out = tmp_path / name
        extra = ("--target", target) if target else ()
        ran = run(write(tmp_path, slos=slos), out, *extra)
        assert ran.exit_code == want, ran.output
        again = report(out)
        assert again.exit_code == want, again.output
        assert headline(again) == headline(ran)
        assert junit(out, "again.xml") == junit(out)


def test_could_not_run_is_one_error_and_nothing_is_charged_as_a_regression(tmp_path: Path) -> None:
    scenario = write(tmp_path, slos="  - latency.p95 < 5s\n  - error_rate < 1%")
    down = run(scenario, tmp_path / "down", "--target", "chat=http://127.0.0.1:9")
    assert down.exit_code == exitcodes.COULD_NOT_RUN, down.output
    up = run(scenario, tmp_path / "up")
    assert up.exit_code == exitcodes.OK, up.output
    down_cases, up_cases = junit(tmp_path / "down"), junit(tmp_path / "up")
    # the same test cases whatever the outcome
    assert [c[:2] for c in down_cases] == [c[:2] for c in up_cases]
    results = {c[0]: [] for c in down_cases}
    for classname, _, result in down_cases:
        results[classname].append(result)
    assert results["scenario.run"] == ["error"]
    assert set(results["scenario.slo"]) == {"skipped"}       # not judged, not failed
    assert set(results["scenario.request"]) == {"skipped"}
    assert set(results["scenario.expect.chat"]) == {"skipped"}
    # the reason is said once, not four times
    assert down.output.count("127.0.0.1:9") <= 2, down.output


@contextlib.contextmanager
def foreign_server() -> Iterator[str]:
    """Some other HTTP server on the port: every path is 404, with an HTML page."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    url: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=404, text="<html><h1>Not Found</h1></html>",
                            content_type="text/html")

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
        started.set()
        return runner

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
    started.wait(10)
    try:
        yield url[0]
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_a_server_that_is_not_the_declared_api_is_not_ready(tmp_path: Path) -> None:
    scenario = write(tmp_path, duration="10s")
    out = tmp_path / "out"
    with foreign_server() as url:
        started = time.monotonic()
        result = run(scenario, out, "--target", f"chat={url}")
        took = time.monotonic() - started
    assert result.exit_code == exitcodes.COULD_NOT_RUN, result.output
    line = headline(result)
    assert line.startswith("COULD NOT RUN") and url in line and "HTTP 404" in line, line
    assert took < 8, "the run should stop once the first answers show what the target is"
    results = RunResults.load(out / "results.json")
    assert results.outcome is not None
    assert any(r.kind == "target_not_ready" for r in results.outcome.reasons)


def test_a_command_service_killed_mid_run_stops_the_run(tmp_path: Path) -> None:
    command = f"{sys.executable} -m llmscen.services.openai_sim --port {{port}}"
    text = f"""
version: 1
services:
  sim: {{command: "{command}", ready: {{http: /health}}}}
targets:
  chat: {{plugin: openai, service: sim, model: sim-model, timeout: 5s}}
phases:
  - {{name: long, duration: 30s, arrival_rate: 20}}
requests:
  - {{name: chat, target: chat, body: {{messages: [{{role: user, content: hi}}]}}}}
"""
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(text)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "llmscen.cli.main", "run", str(scenario),
                             "--out", str(out), "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "phase long" in line:
            break
    time.sleep(2)
    service = next(p for p in psutil.Process(proc.pid).children(recursive=True)
                   if "openai_sim" in " ".join(p.cmdline()))
    service.send_signal(signal.SIGKILL)
    rest, _ = proc.communicate(timeout=60)
    output = "".join(seen) + rest
    assert proc.returncode == exitcodes.COULD_NOT_RUN, output
    assert "service 'sim'" in output and "SIGKILL" in output, output
    results = RunResults.load(out / "results.json")
    assert results.outcome is not None and results.outcome.status == "could_not_run"
    assert results.phases[0].ended < 15, "stopped when the service died, not at the end"


def test_an_abort_slo_stops_the_run_as_soon_as_it_fails(tmp_path: Path) -> None:
    impossible = "  - {assert: latency.p50 < 1us, window: 1s, abort: true}"
    out = tmp_path / "impossible"
    result = run(write(tmp_path, duration="30s", slos=impossible), out)
    assert result.exit_code == exitcodes.ASSERTIONS_FAILED, result.output
    results = RunResults.load(out / "results.json")
    assert results.phases[0].wall < 15, results.phases[0]
    assert headline(result).startswith("FAILED: stopped early: latency.p50")
    possible = "  - {assert: latency.p50 < 5s, window: 1s, abort: true}"
    out = tmp_path / "possible"
    result = run(write(tmp_path, duration="3s", slos=possible), out)
    assert result.exit_code == exitcodes.OK, result.output


def test_abort_needs_a_window(tmp_path: Path) -> None:
    scenario = write(tmp_path, slos="  - {assert: latency.p50 < 1s, abort: true}")
    result = CliRunner().invoke(cli, ["validate", str(scenario)])
    assert result.exit_code == exitcodes.INVALID_INPUT
    assert "`abort: true` needs a `window:`" in result.output


def test_the_live_line_and_the_table_agree(tmp_path: Path) -> None:
    scenario = write(tmp_path, rate=30)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "llmscen.cli.main", "run", str(scenario),
                           "--out", str(out), "--workers", "1"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    final = re.search(r"run passed: (\d+) requests, (\d+) ok", proc.stderr)
    assert final is not None, proc.stderr
    table = re.search(r"^all \(no warmup\)\s+(\d+)\s+(\d+)", proc.stdout, re.M)
    assert table is not None, proc.stdout
    assert final.groups() == table.groups()
