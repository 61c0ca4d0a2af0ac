"""JUnit XML as CI tools read it (parsed with junitparser, not our own code)."""

from __future__ import annotations

from pathlib import Path

from junitparser import Failure, JUnitXml
from test_report_samples import build_results, three_slos

from llmscen.report.junit import write_junit


def test_one_failing_and_two_passing_slos(tmp_path: Path) -> None:
    results = build_results(slos=three_slos())
    assert [s.passed for s in results.slos] == [True, True, False]
    path = tmp_path / "junit.xml"
    write_junit(results, path)

    suites = list(JUnitXml.fromfile(str(path)))
    assert len(suites) == 1
    suite = suites[0]
    assert suite.name == "synthetic"
    slo_cases = [c for c in suite if c.classname == "synthetic.slo"]
    assert [c.name for c in slo_cases] == [
        "latency.p95 < 5s", "error_rate < 1%",
        "ttft.p99 < 10ms [phase=steady, request=chat]"]
    assert [c.is_passed for c in slo_cases] == [True, True, False]
    for case, slo in zip(slo_cases, results.slos, strict=True):
        if slo.passed:
            assert case.result == []
            assert case.system_out == slo.message
        else:
            (failure,) = case.result
            assert isinstance(failure, Failure)
            # the SLO's sentence, then what the telemetry showed where it failed
            assert slo.cause is not None
            assert failure.message == f"{slo.message}\n{slo.cause.text}"
            assert "telemetry in phase steady: nothing notable" in failure.message
            assert failure.type == "SLO"
            assert "ttft.p99 = " in failure.message and "expected < 10ms" in failure.message
            assert "[phase steady, request chat] FAILED" in failure.message
    # the run, two requests and the passing `status` expectation are cases too
    kinds = sorted(c.classname for c in suite)
    assert kinds == ["synthetic.expect.chat", "synthetic.request", "synthetic.request",
                     "synthetic.run", "synthetic.slo", "synthetic.slo", "synthetic.slo"]
    assert suite.tests == 7 and suite.failures == 1 and suite.errors == 0


def test_failed_expectation_carries_its_samples(tmp_path: Path) -> None:
    results = build_results(failing_check=True)
    path = tmp_path / "junit.xml"
    write_junit(results, path)
    suite = next(iter(JUnitXml.fromfile(str(path))))
    case = next(c for c in suite if c.name == "contains")
    (failure,) = case.result
    assert failure.message.startswith("3 of ")
    assert "<script>window.__xss=1</script>" in failure.text   # XML-escaped on disk
    assert b"<script>" not in path.read_bytes()


def test_structure_follows_the_common_junit_schema(tmp_path: Path) -> None:
    """What the Ant-style JUnit XSD (the one CI tools validate against) requires:
    testsuite with name, tests, failures, errors, time, timestamp (no zone), hostname,
    id, package; then properties, testcases, system-out, system-err in that order;
    testcase with name, classname, time; failure with message and type."""
    import re
    import xml.etree.ElementTree as ET

    from llmscen.report.junit import write_junit

    results = build_results(slos=three_slos(), failing_check=True)
    path = tmp_path / "junit.xml"
    write_junit(results, path)
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    for attr in ("name", "tests", "failures", "errors", "time", "timestamp", "hostname", "id",
                 "package"):
        assert suite.get(attr) is not None, attr
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", suite.get("timestamp", ""))
    float(suite.get("time", "x"))
    order = [child.tag for child in suite]
    assert order[0] == "properties" and order[-2:] == ["system-out", "system-err"]
    assert set(order[1:-2]) == {"testcase"}
    for case in suite.iter("testcase"):
        assert case.get("name") and case.get("classname")
        float(case.get("time", "x"))
        for failure in case.iter("failure"):
            assert failure.get("message") and failure.get("type")
