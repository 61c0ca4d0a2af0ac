"""scenarios/login-flow.yaml end to end: the CLI, the `http` plugin and the test API.

The API counts logins and authorized model listings, so the tests can tell
that captured tokens were sent and that a failed login stops its flow.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from servers.api_server import USERS, ApiState, serve

from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.engine.registry import Registry
from llmscen.runners import http

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "login-flow.yaml"
# short runs: 2 s of the scenario's 5/s, and a small think between the steps
QUICK = ["--set", "phases.0.duration=2s", "--set", "requests.0.steps.1.think=50ms"]
LOGIN, MODELS = "login-then-models.login", "login-then-models.models"


def installed() -> bool:
    return "http" in Registry.discover().plugins


@pytest.fixture
def registry_with_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until the entry point is installed (pip install -e .), register the plugin in-process."""
    if installed():
        return
    discover = Registry.discover.__func__  # type: ignore[attr-defined]

    def with_http(cls: type[Registry]) -> Registry:
        registry = discover(cls)
        registry.add_plugin(http.plugin)
        return registry
    monkeypatch.setattr(Registry, "discover", classmethod(with_http))


@pytest.fixture
def api() -> Iterator[tuple[str, ApiState]]:
    with serve() as served:
        yield served


def invoke(args: list[str]) -> Any:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    return result


def results_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "results.json").read_text())


def scopes_by_request(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["request"]: s for s in results["scopes"]}


def check_good_run(results: dict[str, Any], state: ApiState) -> None:
    assert state.logins > 0 and state.login_failures == 0
    # every login was followed by an authorized listing with the token it returned
    assert state.authorized == state.logins and state.unauthorized == 0
    scopes = scopes_by_request(results)
    assert {LOGIN, MODELS, "health"} <= set(scopes)
    for name in (LOGIN, MODELS):
        counters = scopes[name]["counters"]
        assert counters["requests"] == counters["ok"] == state.logins
        assert counters["errors"] == {} and "latency" in scopes[name]["histograms"]
    assert scopes["health"]["counters"]["requests"] == state.health > 0
    slos = {(s["text"], s["scope"].get("request")): s for s in results["slos"]}
    assert all(s["passed"] for s in slos.values()), slos
    assert ("latency.p95 < 500ms", MODELS) in slos
    assert slos[("latency.p95 < 500ms", LOGIN)]["measured"] is not None
    checks = {(c["request"], c["expectation"]): c for c in results["checks"]}
    assert checks[(MODELS, "json_schema")]["passed"] == state.authorized
    text = json.dumps(results)
    assert not any(token in text for token in state.tokens)   # tokens stay out of results


def test_scenario_validates(registry_with_http: None) -> None:
    result = invoke(["validate", str(SCENARIO)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_login_flow_in_process(registry_with_http: None, api: tuple[str, ApiState],
                               tmp_path: Path) -> None:
    url, state = api
    out = tmp_path / "out"
    result = invoke(["run", str(SCENARIO), "--target", f"api={url}", "--out", str(out), "-q",
                     *QUICK])
    assert result.exit_code == exitcodes.OK, result.output
    check_good_run(results_of(out), state)
    # an HTTP run's table has no token columns (the plugin does not produce them)
    header = next(line for line in result.output.splitlines() if line.startswith("phase "))
    assert "latency.p95" in header and "ttft" not in header and "tokens/s" not in header


def test_login_flow_as_a_subprocess(api: tuple[str, ApiState], tmp_path: Path) -> None:
    url, state = api
    out = tmp_path / "out"
    args = ["run", str(SCENARIO), "--target", f"api={url}", "--out", str(out), "-q", *QUICK]
    if installed():
        command = [str(Path(sys.executable).with_name("llmscen")), *args]
    else:   # the entry point is not installed yet: register the plugin, then the real CLI
        bootstrap = ("from llmscen.engine.registry import Registry\n"
                     "from llmscen.runners.http import plugin\n"
                     "discover = Registry.discover.__func__\n"
                     "def with_http(cls):\n"
                     "    registry = discover(cls)\n"
                     "    registry.add_plugin(plugin)\n"
                     "    return registry\n"
                     "Registry.discover = classmethod(with_http)\n"
                     "from llmscen.cli.main import main\n"
                     "main()\n")
        command = [sys.executable, "-c", bootstrap, *args]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=env, check=False)
    assert done.returncode == exitcodes.OK, done.stdout + done.stderr
    assert "PASSED" in done.stdout
    check_good_run(results_of(out), state)


def test_a_bad_password_fails_the_login_and_stops_the_flow(
        registry_with_http: None, api: tuple[str, ApiState], tmp_path: Path) -> None:
    url, state = api
    good, bad = next(iter(USERS.items())), ("bob@example.com", "wrong-Pass-42")
    users = tmp_path / "users.csv"
    with users.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["email", "password"])
        writer.writerows([good, bad])     # sequential: logins alternate good, bad
    out = tmp_path / "out"
    result = invoke(["run", str(SCENARIO), "--target", f"api={url}", "--out", str(out), "-q",
                     "--set", f"data.users.file={users}", *QUICK])
    assert result.exit_code == exitcodes.ASSERTIONS_FAILED, result.output
    results = results_of(out)
    scopes = scopes_by_request(results)
    login = scopes[LOGIN]["counters"]
    assert login["errors"] == {"http": state.login_failures} and state.login_failures > 0
    assert login["ok"] == state.logins > 0
    # the models step ran only after the good logins, always with a valid token
    assert scopes[MODELS]["counters"]["requests"] == state.authorized == state.logins
    assert state.unauthorized == 0
    errors = [e for e in results["errors"] if e["request"] == LOGIN]
    assert [e["error"] for e in errors] == ["http"]
    sample = errors[0]["samples"][0]["message"]
    assert sample.startswith("HTTP 401 Unauthorized") and "invalid email or password" in sample
    assert "wrong-Pass-42" not in json.dumps(results)
    failed = [s for s in results["slos"] if not s["passed"]]
    assert [s["text"] for s in failed] == ["error_rate < 1%"]


def test_cookies_and_negative_steps_in_flows(registry_with_http: None,
                                             api: tuple[str, ApiState], tmp_path: Path) -> None:
    url, state = api
    scenario = tmp_path / "cookies.yaml"
    scenario.write_text("""\
targets: {api: {plugin: http, url: "http://unused.invalid"}}
phases:
  - {name: open, duration: 1s, arrival_rate: 10}
  - {name: closed, duration: 1s, users: 2}
requests:
  - name: session
    target: api
    steps:
      - name: set
        get: "/cookies/set?session=s{{ seq }}"
      - name: use
        get: /cookies/need
        capture: {session: $.session}
        expect: {status: 200}
      - name: echo
        post: /echo
        form: {session: "{{ session }}"}
        expect: {contains: "session=s"}
  - name: refused
    target: api
    post: /api/auth/login
    json: {email: nobody@example.com, password: nope-nope}
    expect: {error: {status: 401, contains: invalid email or password}}
slos:
  - error_rate == 0%
  - check_failure_rate == 0%
""")
    out = tmp_path / "out"
    result = invoke(["run", str(scenario), "--target", f"api={url}", "--out", str(out), "-q"])
    assert result.exit_code == exitcodes.OK, result.output
    scopes = {(s["phase"], s["request"]): s["counters"] for s in results_of(out)["scopes"]}
    for phase in ("open", "closed"):
        assert scopes[(phase, "session.echo")]["ok"] == scopes[(phase, "session.set")]["requests"]
        assert scopes[(phase, "refused")]["ok"] == scopes[(phase, "refused")]["requests"] > 0
    assert state.login_failures > 0 and state.logins == 0


def test_the_data_file_lists_accounts_the_api_knows() -> None:
    with (ROOT / "scenarios" / "data" / "users.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(USERS.get(r["email"]) == r["password"] for r in rows)
