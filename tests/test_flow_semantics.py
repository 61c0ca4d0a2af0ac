"""Run semantics plans rely on, through the CLI against real servers the tests start:
typed templates, conditional steps, expected timeouts, trailing thinks, model lists as
JSON, names with spaces, and paths that resolve against the scenario file."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from servers.api_server import ApiState, serve

from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults

ROOT = Path(__file__).resolve().parent.parent
STRESS = ROOT / "scenarios" / "stress-random-params.yaml"
pytestmark = pytest.mark.slow


@pytest.fixture
def api() -> Iterator[tuple[str, ApiState]]:
    with serve() as served:
        yield served


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def run(scenario: Path, out: Path, *args: str) -> tuple[int, str, dict[str, Any]]:
    result = invoke("run", str(scenario), "--out", str(out), "-q", "--workers", "1", *args)
    return result.exit_code, result.output, json.loads((out / "results.json").read_text())


def counters(results: dict[str, Any], request: str, phase: str | None = None) -> dict[str, Any]:
    scopes = [s for s in results["scopes"] if s["request"] == request
              and (phase is None or s["phase"] == phase)]
    assert scopes, f"no scope for {request!r} in {[s['request'] for s in results['scopes']]}"
    total: dict[str, Any] = {"requests": 0, "ok": 0, "check_failures": 0, "errors": {}}
    for scope in scopes:
        c = scope["counters"]
        for key in ("requests", "ok", "check_failures"):
            total[key] += c[key]
        for k, v in c["errors"].items():
            total["errors"][k] = total["errors"].get(k, 0) + v
    return total


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- typed templates: the seed-003 stress plan --------------------------------------------

QUICK = ["--set", "phases.0.duration=1s", "--set", "phases.1.duration=2s"]


def test_per_request_numbers_from_a_csv_reach_the_server_as_numbers(tmp_path: Path) -> None:
    code, output, results = run(STRESS, tmp_path / "out", *QUICK)
    assert code == exitcodes.OK, output
    chat = counters(results, "chat")
    assert chat["requests"] == chat["ok"] > 10 and chat["errors"] == {}
    # output was capped by each row's own max_tokens (8..48 of the 64 the simulator offers)
    agg = aggregate(RunResults.load(tmp_path / "out" / "results.json"))
    low, high = agg.value("output_tokens", "min"), agg.value("output_tokens", "max")
    assert low is not None and high is not None and 8 <= low < high <= 48, (low, high)


@pytest.mark.parametrize(("cast", "refusal"), [
    (" | int }}", "'max_tokens' must be an integer >= 1, got '"),
    (" | float }}", "'temperature' must be a number, got '")])
def test_the_same_plan_sending_strings_fails(tmp_path: Path, cast: str, refusal: str) -> None:
    # without the cast the value stays text, which servers refuse
    scenario = write(tmp_path / "scenarios" / "strings.yaml",
                     STRESS.read_text().replace(cast, " }}"))
    write(tmp_path / "scenarios" / "data" / "sampling.csv",
          (ROOT / "scenarios" / "data" / "sampling.csv").read_text())
    code, output, results = run(scenario, tmp_path / "out", *QUICK)
    assert code == exitcodes.ASSERTIONS_FAILED, output
    chat = counters(results, "chat")
    assert chat["ok"] == 0 and chat["errors"] == {"http": chat["requests"]}
    samples = [s["message"] for e in results["errors"] for s in e["samples"]]
    assert samples and all(refusal in m for m in samples), samples


# --- conditional steps, typed JSON, random helpers -----------------------------------------

FLOW = """\
targets: {api: {plugin: http, url: "http://unused.invalid"}}
phases:
  - {name: make things, requests: 10, duration: 20s, arrival_rate: 20}
requests:
  - name: thing flow
    target: api
    steps:
      - name: create
        post: /echo
        json:
          id: "{{ seq }}"
          keep: "{{ seq % 2 == 0 }}"
          tags: "{{ ['a', 'b'] }}"
          token: "{{ random_string(16) }}"
          dice: "{{ random_int(1, 6) }}"
        capture: {created_id: $.json.id, keep: $.json.keep}
        expect:
          json_schema:
            type: object
            required: [json]
            properties:
              json:
                type: object
                required: [id, keep, tags, token, dice]
                properties:
                  id: {type: integer}
                  keep: {type: boolean}
                  tags: {type: array, items: {type: string}}
                  token: {type: string, minLength: 16, maxLength: 16}
                  dice: {type: integer, minimum: 1, maximum: 6}
      - name: delete
        if: keep
        delete: "/echo?id={{ created_id }}"
        expect: {contains: DELETE}
      - name: read back
        if: "{{ created_id is defined and created_id >= 0 }}"
        get: "/echo?id={{ created_id }}"
        headers: {X-Seq: "{{ seq }}", X-Keep: "{{ keep }}"}    # typed values, sent as text
        query: {keep: "{{ keep }}"}
        expect:
          json_schema:
            type: object
            properties:
              headers:
                type: object
                required: [X-Seq, X-Keep]
                properties: {X-Keep: {enum: ["true", "false"]}}
              query: {properties: {keep: {items: {enum: ["true", "false"]}}}}
slos:
  - {assert: latency.count == 5, request: thing flow.delete}
"""


def test_a_step_runs_only_when_its_condition_holds(api: tuple[str, ApiState],
                                                   tmp_path: Path) -> None:
    url, _ = api
    scenario = write(tmp_path / "flow.yaml", FLOW)
    code, output, results = run(scenario, tmp_path / "out", "--target", f"api={url}")
    assert code == exitcodes.OK, output
    create = counters(results, "thing flow.create")
    assert create["requests"] == create["ok"] == 10    # typed JSON and helpers: schema held
    delete = counters(results, "thing flow.delete")
    assert delete["requests"] == delete["ok"] == 5     # only the even ids
    assert counters(results, "thing flow.read back")["ok"] == 10
    [slo] = results["slos"]
    assert slo["passed"] and slo["message"].startswith("latency.count = 5, ")


def test_a_failing_condition_is_a_client_error_naming_the_request(api: tuple[str, ApiState],
                                                                  tmp_path: Path) -> None:
    url, _ = api
    scenario = write(tmp_path / "flow.yaml", FLOW.replace("if: keep", "if: keep.nope > 1"))
    code, output, results = run(scenario, tmp_path / "out", "--target", f"api={url}")
    assert code == exitcodes.ASSERTIONS_FAILED, output
    delete = counters(results, "thing flow.delete")
    assert delete["errors"] == {"client": 10}
    message = next(e for e in results["errors"] if e["request"] == "thing flow.delete")
    assert "request 'thing flow.delete': `if:` failed" in message["samples"][0]["message"]


def test_a_template_that_fails_at_run_time_names_its_field(api: tuple[str, ApiState],
                                                           tmp_path: Path) -> None:
    url, _ = api
    scenario = write(tmp_path / "size.yaml", """\
targets: {api: {plugin: http, url: "http://unused.invalid"}}
phases: [{requests: 3, duration: 10s, arrival_rate: 10}]
requests:
  - name: big
    target: api
    post: /echo
    json: {prompt: "{{ 'word ' * (seq + 1) * 1000000 }}"}
slos: [error_rate == 0]
""")
    code, output, results = run(scenario, tmp_path / "out", "--target", f"api={url}")
    assert code == exitcodes.ASSERTIONS_FAILED, output
    assert counters(results, "big")["errors"] == {"client": 3}
    message = results["errors"][0]["samples"][0]["message"]
    assert message.startswith("request 'big': template in json.prompt failed: "
                              "TemplateLimitError: "), message


# --- negative tests: an expected timeout ---------------------------------------------------

def test_a_timeout_can_be_the_expected_outcome(api: tuple[str, ApiState], tmp_path: Path) -> None:
    url, _ = api
    scenario = write(tmp_path / "timeout.yaml", """\
targets: {api: {plugin: http, url: "http://unused.invalid"}}
phases: [{requests: 4, duration: 10s, arrival_rate: 20}]
requests:
  - name: hangs
    target: api
    timeout: 300ms
    get: "/slow?delay=3"
    expect: {error: {timeout: true}}
  - name: answers
    target: api
    timeout: 2s
    get: "/slow?delay=0"
    expect: {error: {timeout: true}}
""")
    code, output, results = run(scenario, tmp_path / "out", "--target", f"api={url}")
    hangs, answers = counters(results, "hangs"), counters(results, "answers")
    assert hangs["requests"] > 0 and hangs["ok"] == hangs["requests"], output
    assert answers["requests"] > 0 and answers["check_failures"] == answers["requests"]
    checks = {c["request"]: c for c in results["checks"]}
    assert checks["hangs"]["failed"] == 0 and checks["answers"]["passed"] == 0
    assert "expected the request to time out; got an answer (status 200)" in \
        checks["answers"]["samples"][0]["message"]
    assert code == exitcodes.ASSERTIONS_FAILED


# --- think after the last step --------------------------------------------------------------

THINK = """\
targets: {api: {plugin: http, url: "http://unused.invalid"}}
phases:
  - {name: users, duration: 2s, users: 1}
requests:
  - name: browse
    target: api
    steps:
      - {name: page, get: /health}
      - {name: details, get: /health}
      - think: 600ms
"""


def test_a_trailing_think_paces_a_closed_user(api: tuple[str, ApiState], tmp_path: Path) -> None:
    url, _ = api
    scenario = write(tmp_path / "think.yaml", THINK)
    code, output, results = run(scenario, tmp_path / "out", "--target", f"api={url}")
    assert code == exitcodes.OK, output
    iterations = counters(results, "browse.page")["requests"]
    # 2 s at one iteration per ~0.6 s; without the think one user makes hundreds
    assert 1 <= iterations <= 4, iterations
    assert counters(results, "browse.details")["requests"] == iterations


def test_an_open_phase_ignores_a_trailing_think_and_says_so(api: tuple[str, ApiState],
                                                           tmp_path: Path) -> None:
    url, _ = api
    text = THINK.replace("{name: users, duration: 2s, users: 1}",
                         "{name: arrivals, duration: 1s, arrival_rate: 5}")
    scenario = write(tmp_path / "think.yaml", text.replace("think: 600ms", "think: 30s"))
    validated = invoke("validate", str(scenario))
    assert validated.exit_code == 0, validated.output
    assert "note: request 'browse': the think after its last step" in validated.output
    ignored = "open and test-case phases (arrivals) ignore it"
    assert ignored in validated.output and ignored in invoke("plan", str(scenario)).output
    started = time.monotonic()
    code, output, results = run(scenario, tmp_path / "out", "--target", f"api={url}")
    took = time.monotonic() - started
    assert code == exitcodes.OK, output
    assert counters(results, "browse.details")["ok"] == 5
    assert took < 25, took     # the 30 s think would have held the phase's tasks
    assert any("test-case phases (arrivals) ignore it" in n for n in results["meta"]["notes"])


# --- api: models, names with spaces ----------------------------------------------------------

MODELS = """\
services:
  sim: {builtin: openai-sim, options: {model: listed-model}}
targets:
  chat: {plugin: openai, service: sim, model: listed-model}
phases:
  - {name: "warm up", requests: 3, duration: 10s, arrival_rate: 10}
requests:
  - name: list the models
    target: chat
    api: models
    expect:
      contains: listed-model
      json_schema:
        type: object
        required: [data]
        properties:
          data: {type: array, minItems: 1, items: {type: object, required: [id]}}
slos:
  - {assert: latency.count == 3, phase: "warm up", request: list the models}
"""


def test_a_model_list_is_checked_as_json_under_names_with_spaces(tmp_path: Path) -> None:
    scenario = write(tmp_path / "models.yaml", MODELS)
    code, output, results = run(scenario, tmp_path / "out")
    assert code == exitcodes.OK, output
    models = counters(results, "list the models", "warm up")
    assert models["requests"] == models["ok"] == 3
    [slo] = results["slos"]
    assert slo["message"].startswith("latency.count = 3, expected == 3 [phase warm up, "
                                     "request list the models]"), slo["message"]
    junit = (tmp_path / "out" / "junit.xml").read_text()
    assert "list the models" in junit


def test_a_model_list_that_misses_the_schema_fails(tmp_path: Path) -> None:
    scenario = write(tmp_path / "models.yaml", MODELS.replace("required: [data]",
                                                              "required: [data, nope]"))
    code, output, results = run(scenario, tmp_path / "out")
    assert code == exitcodes.ASSERTIONS_FAILED, output
    schema = next(c for c in results["checks"] if c["expectation"] == "json_schema")
    assert schema["failed"] == 3 and schema["passed"] == 0
    assert "'nope' is a required property" in schema["samples"][0]["message"]


# --- paths resolve against the scenario file ------------------------------------------------

def test_a_scenario_elsewhere_starts_its_command_and_reads_its_data(
        in_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere" / "plans"
    serve_sh = write(folder / "bin" / "serve.sh", f"""#!/bin/sh
# started in the scenario's folder: this relative path must resolve there
test -f data/prompts.csv || {{ echo "not in the scenario's folder: $(pwd)"; exit 3; }}
exec {sys.executable} -m llmscen.services.openai_sim --port "$1" --options '{{"model": "m"}}'
""")
    serve_sh.chmod(serve_sh.stat().st_mode | stat.S_IXUSR)
    write(folder / "data" / "prompts.csv", "prompt\nhello there\nhow are you\n")
    scenario = write(folder / "plan.yaml", """\
services:
  api:
    command: "./bin/serve.sh {port}"
    ready: {http: /health}
    startup_timeout: 30s
targets:
  chat: {plugin: openai, service: api, model: m}
data:
  prompts: {file: data/prompts.csv}
phases: [{requests: 4, duration: 10s, arrival_rate: 10}]
requests:
  - name: ask
    target: chat
    data: prompts
    body: {messages: [{role: user, content: "{{ row.prompt }}"}], max_tokens: 3}
""")
    assert Path.cwd() == in_root != folder
    shown = invoke("plan", str(scenario)).output
    assert f"api              command  in {folder}" in shown, shown
    assert f"prompts          {folder / 'data' / 'prompts.csv'}" in shown
    as_json = json.loads(invoke("plan", "--json", str(scenario)).output)
    assert as_json["services"][0]["options"]["cwd"] == str(folder)
    code, output, results = run(scenario, tmp_path / "out")
    assert code == exitcodes.OK, output
    assert counters(results, "ask")["ok"] == 4


def test_a_missing_working_folder_or_reference_is_reported_at_its_line(tmp_path: Path) -> None:
    scenario = write(tmp_path / "plan.yaml", """\
services:
  api: {command: "true", cwd: no/such/folder}
targets:
  chat: {plugin: openai, service: api, model: m}
  flux: {plugin: triton, url: "127.0.0.1:1", model: flux}
phases: [{duration: 1s, arrival_rate: 1}]
requests:
  - {name: ask, target: chat, body: {messages: []}}
  - name: draw
    target: flux
    inputs: {prompt: {datatype: BYTES, shape: [1], data: [cat]}}
    expect:
      outputs:
        images: {similar_to: {file: refs/cat.npy, min_similarity: 0.9}}
""")
    result = invoke("validate", str(scenario))
    assert result.exit_code == exitcodes.INVALID_INPUT
    assert f"plan.yaml:2:31: folder 'no/such/folder' does not exist (looked for " \
           f"{tmp_path / 'no/such/folder'})" in result.output
    assert f"plan.yaml:14:37: file 'refs/cat.npy' does not exist (looked for " \
           f"{tmp_path / 'refs/cat.npy'})" in result.output


def test_reference_files_are_absolute_in_the_plan(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    import numpy as np

    (tmp_path / "refs").mkdir()
    np.save(tmp_path / "refs" / "cat.npy", np.zeros((2, 2)))
    scenario = write(tmp_path / "plan.yaml", """\
targets:
  flux: {plugin: triton, url: "127.0.0.1:1", model: flux}
phases: [{duration: 1s, arrival_rate: 1}]
requests:
  - name: draw
    target: flux
    inputs: {prompt: {datatype: BYTES, shape: [1], data: [cat]}}
    expect:
      outputs:
        images: {similar_to: {file: refs/cat.npy, min_similarity: 0.9}}
""")
    cwd = os.getcwd()
    result = invoke("plan", "--json", str(scenario))
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    reference = plan["requests"][0]["expect"]["outputs"]["images"]["similar_to"]["file"]
    assert reference == str(tmp_path / "refs" / "cat.npy") and os.getcwd() == cwd
