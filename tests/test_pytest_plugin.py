"""The pytest plugin: scenario files as tests, opt-in collection, and the fixtures.

Each test runs pytest in a subprocess on a folder made by `pytester`, as a user would.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
SMOKE = (ROOT / "scenarios" / "smoke.yaml").read_text()
# a second of traffic instead of five: the same items, a quicker run
QUICK = SMOKE.replace("duration: 5s", "duration: 1s")


def plugin_args() -> list[str]:
    """Load the plugin by module until the pytest11 entry point is installed, then by its name.

    `-p llmscen.testing.pytest_plugin` next to the entry point would register the
    module twice, which pluggy refuses.
    """
    names = {ep.name for ep in importlib.metadata.entry_points(group="pytest11")}
    if "llmscen" not in names:
        return ["-p", "llmscen.testing.pytest_plugin"]
    return ["-p", "llmscen"] if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD") else []


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", *args)


@pytest.mark.slow
def test_smoke_scenario_is_one_test_per_slo_and_expectation(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", smoke=SMOKE)
    out = pytester.path / "out"
    result = run(pytester, "smoke.yaml", "-v", "--llmscen-out", str(out))
    # run + 3 SLOs + 2 requests + 4 expectations (chat: status, finish_reason,
    # output_tokens; models: status): the cases of llmscen's own outcome and junit.xml
    result.assert_outcomes(passed=10, failed=0)
    result.stdout.fnmatch_lines([
        "smoke.yaml::run PASSED*",
        "smoke.yaml::slo: error_rate == 0 PASSED*",
        "smoke.yaml::slo: latency.p95 < 2s PASSED*",
        "smoke.yaml::slo: ttft.p95 < 500ms [[]request=chat[]] PASSED*",
        "smoke.yaml::request: chat PASSED*",
        "smoke.yaml::expect: chat: status PASSED*",
        "smoke.yaml::expect: chat: finish_reason PASSED*",
        "smoke.yaml::expect: chat: output_tokens PASSED*",
        "smoke.yaml::request: models PASSED*",
        "smoke.yaml::expect: models: status PASSED*",
        "smoke.yaml: exit code 0, results in *",
    ])
    assert (out / "smoke" / "results.json").is_file()
    assert (out / "smoke" / "junit.xml").is_file()


def test_failing_slo_names_measured_value_threshold_and_scope(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", smoke=QUICK.replace("latency.p95 < 2s", "latency.p95 < 1ms"))
    result = run(pytester, "smoke.yaml")
    result.assert_outcomes(passed=9, failed=1)
    result.stdout.fnmatch_lines([
        "*_ smoke.yaml slo: latency.p95 < 1ms _*",
        "latency.p95 = *ms, expected < 1ms [[]whole run (warmup excluded)[]] FAILED",
        "SLO at smoke.yaml:40:5",
        "FAILED smoke.yaml::slo: latency.p95 < 1ms - latency.p95 = *",
    ])
    assert "Traceback" not in result.stdout.str()


def test_failing_expectation_shows_samples(pytester: pytest.Pytester) -> None:
    scenario = QUICK.replace("status: 200\n      finish_reason", "contains: zebra\n      "
                             "finish_reason")
    pytester.makefile(".yaml", smoke=scenario)
    result = run(pytester, "smoke.yaml")
    result.assert_outcomes(passed=9, failed=1)
    result.stdout.fnmatch_lines([
        "*_ smoke.yaml expect: chat: contains _*",
        "* of * responses failed contains",
        "  - expected output to contain 'zebra'; got *",
        "    output: *",
        "FAILED smoke.yaml::expect: chat: contains - * of * responses failed contains",
    ])


def test_one_item_by_node_id_runs_the_scenario(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", smoke=QUICK)
    result = run(pytester, "smoke.yaml::slo: error_rate == 0")
    result.assert_outcomes(passed=1)


def test_unreachable_target_fails_the_run_item(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", smoke=QUICK)
    result = run(pytester, "smoke.yaml", "--llmscen-target", "chat=http://127.0.0.1:9")
    result.assert_outcomes(failed=1, skipped=9)
    result.stdout.fnmatch_lines(["FAILED smoke.yaml::run - could not run: *"])
    assert "127.0.0.1:9" in result.stdout.str()


def test_invalid_scenario_is_a_collection_error_at_file_line_col(
        pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", bad="""\
        version: 1
        targets:
          chat: {plugin: opnai, url: http://127.0.0.1:9}
        phases:
          - {name: p, duration: 1s, arrival_rate: 2}
        requests:
          - {name: r, target: chat, bodyy: {}}
        """)
    result = run(pytester, "bad.yaml")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "bad.yaml:3:18: unknown plugin 'opnai'; did you mean 'openai'?*",
        "bad.yaml:7:29: unknown key 'bodyy'; did you mean 'body'?",
        "2 problems found; nothing was sent",
    ])
    assert "Traceback" not in result.stdout.str()


def test_plain_pytest_collects_no_yaml(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", smoke=QUICK, broken="version: [1\n", data="- 1\n- 2\n")
    pytester.mkdir("tests")
    (pytester.path / "tests" / "case.yml").write_text("not: a scenario\n")
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["collected 1 item"])
    # pytest's header lists the installed plugin; nothing else may mention it
    body = [line for line in result.stdout.lines if not line.startswith("plugins:")]
    assert not any("llmscen" in line for line in body)
    # naming a folder is not naming its YAML files
    run(pytester, ".").assert_outcomes(passed=1)


def test_ini_options_opt_folders_and_globs_in(pytester: pytest.Pytester) -> None:
    pytester.mkdir("scenarios")
    pytester.mkdir("other")
    (pytester.path / "scenarios" / "smoke.yaml").write_text(QUICK)
    (pytester.path / "other" / "quick.scenario.yaml").write_text(QUICK)
    (pytester.path / "other" / "data.yaml").write_text("- 1\n")
    pytester.makeini("""\
        [pytest]
        llmscen_scenarios = scenarios
        llmscen_scenario_glob = *.scenario.yaml
        """)
    result = run(pytester, "--collect-only", "-q")
    result.stdout.fnmatch_lines([
        "other/quick.scenario.yaml::run",
        "*",
        "scenarios/smoke.yaml::run",
        "*",
    ])
    assert "data.yaml" not in result.stdout.str()
    assert "20 tests collected" in result.stdout.str()


def test_llmscen_run_and_openai_sim_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", smoke=QUICK, bad="version: 1\nphasez: []\n")
    pytester.makepyfile(test_run="""\
        import pytest
        from llmscen.spec.diagnostics import ScenarioError

        def test_against_own_sim(llmscen_run, openai_sim):
            url = openai_sim(output_tokens=8, ttft="5ms")
            run = llmscen_run("smoke.yaml", sets={"phases.0.arrival_rate": 20,
                                                  "phases.0.requests": 6},
                              targets={"chat": url})
            assert run.exit_code == 0, run.problem
            assert run.results.meta.targets[0].url == url
            assert run.slo("latency.p95 < 2s").measured < 2
            assert run.check("chat", "output_tokens").failed == 0
            assert sum(s.counters.requests for s in run.results.scopes) == 6
            assert (run.out_dir / "results.json").is_file()

        def test_failed_slo_is_exit_code_1(llmscen_run):
            run = llmscen_run("smoke.yaml", sets=["slos.1=latency.p95 < 1us"])
            assert run.exit_code == 1
            assert not run.slo("latency.p95 < 1us").passed

        def test_invalid_raises(llmscen_run):
            with pytest.raises(ScenarioError, match=r"bad.yaml:2:1: unknown key 'phasez'"):
                llmscen_run("bad.yaml")
        """)
    run(pytester, "test_run.py").assert_outcomes(passed=3)


def test_plugin_imports_no_llmscen_internals() -> None:
    """It loads in every pytest session of whoever installed llmscen: keep that cheap."""
    code = ("import sys, llmscen.testing.pytest_plugin\n"
            "print(sorted(m for m in sys.modules if m.startswith('llmscen')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert re.findall(r"'([\w.]+)'", out.stdout) == [
        "llmscen", "llmscen.testing", "llmscen.testing.fixtures", "llmscen.testing.pytest_plugin"]


@pytest.mark.slow
@pytest.mark.triton
def test_triton_sim_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_triton="""\
        import urllib.request

        def test_ready(triton_sim):
            with urllib.request.urlopen(triton_sim.http_url + "/v2/health/ready") as resp:
                assert resp.status == 200
        """)
    result = run(pytester, "test_triton.py", "-rs")
    outcomes = result.parseoutcomes()
    if outcomes.get("skipped"):
        pytest.skip(f"triton extra missing: {result.stdout.str()[-300:]}")
    result.assert_outcomes(passed=1)
