"""JUnit XML from saved results: a testcase per SLO and per expectation.

Names are stable (scenario, SLO text, request and expectation) so CI systems
track each test's history across runs.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from llmscen.metrics.results import RunResults


def junit_tree(results: RunResults) -> ET.ElementTree:
    name = results.meta.scenario
    suites = ET.Element("testsuites", name="llmscen")
    # the attributes and elements the common (Ant-style) JUnit schema requires
    suite = ET.SubElement(suites, "testsuite", name=name, package=name, id="0",
                          hostname="localhost")
    props = ET.SubElement(suite, "properties")
    meta = results.meta
    for key, value in (("scenario_file", meta.file), ("seed", meta.seed),
                       ("llmscen_version", meta.llmscen_version),
                       ("started_at", meta.started_at and meta.started_at.isoformat()),
                       ("ended_at", meta.ended_at and meta.ended_at.isoformat()),
                       ("interrupted", meta.interrupted)):
        if value is not None:
            ET.SubElement(props, "property", name=key, value=str(value))
    for target in meta.targets:
        ET.SubElement(props, "property", name=f"target.{target.name}",
                      value=f"{target.plugin} {target.url or ''}".strip())
    for plugin in meta.plugins:
        ET.SubElement(props, "property", name=f"plugin.{plugin.name}",
                      value=f"{plugin.distribution or ''} {plugin.version or ''}".strip())
    tests = failures = 0
    for slo in results.slos:
        tests += 1
        case = ET.SubElement(suite, "testcase", classname=f"{name}.slo", name=slo.text)
        scope = ", ".join(f"{k}={v}" for k, v in slo.scope.items() if v is not None)
        if scope:
            case.set("name", f"{slo.text} [{scope}]")
        if not slo.passed:
            failures += 1
            ET.SubElement(case, "failure", message=slo.message, type="SLO").text = slo.message
        else:
            ET.SubElement(case, "system-out").text = slo.message
    for check in results.checks:
        tests += 1
        case = ET.SubElement(suite, "testcase", classname=f"{name}.expect.{check.request}",
                             name=check.expectation)
        total = check.passed + check.failed
        if check.failed:
            failures += 1
            first = check.samples[0].message if check.samples else ""
            message = f"{check.failed} of {total} responses failed {check.expectation}: {first}"
            body = "\n\n".join(f"{s.message}\noutput: {s.output}" for s in check.samples)
            ET.SubElement(case, "failure", message=message, type="expectation").text = body
        else:
            ET.SubElement(case, "system-out").text = f"{total} of {total} responses passed"
    for case in suite.iter("testcase"):
        case.set("time", "0.000")      # judged after the run: the cases take no time
    ET.SubElement(suite, "system-out").text = "\n".join(results.meta.notes)
    ET.SubElement(suite, "system-err")
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", "0")
    started = meta.started_at or meta.ended_at
    suite.set("timestamp", started.replace(tzinfo=None).isoformat(timespec="seconds")
              if started else "1970-01-01T00:00:00")
    elapsed = (meta.ended_at - meta.started_at).total_seconds() \
        if meta.started_at and meta.ended_at else 0.0
    suite.set("time", f"{elapsed:.3f}")
    suites.set("tests", str(tests))
    suites.set("failures", str(failures))
    ET.indent(suites)
    return ET.ElementTree(suites)


def write_junit(results: RunResults, path: str | Path) -> None:
    junit_tree(results).write(path, encoding="utf-8", xml_declaration=True)
