"""JUnit XML from saved results: one testcase per case of the outcome.

The cases (assertions/verdict.py) are the same in every outcome for the same
scenario: the run itself, every SLO, every declared request and every
expectation. Names are stable (scenario, SLO text, request and expectation),
so CI systems track each test's history across runs. A run that could not be
carried out, or whose measurement is not valid, is one `<error>` on the run
case, with the cases it makes unjudgeable `<skipped>`.

Text from servers may hold characters XML 1.0 cannot carry: they are dropped.
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

from llmscen.metrics.results import Case, RunResults

# XML 1.0 allows tab, newline, carriage return and these ranges; nothing else
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_CLASS = {"run": "run", "slo": "slo", "request": "request", "expectation": "expect",
          "baseline": "baseline"}


def xml_text(value: object) -> str:
    return _NOT_XML.sub("\ufffd", str(value))


def _names(scenario: str, case: Case) -> tuple[str, str]:
    """(classname, name): an expectation is `SCENARIO.expect.STEP` / `EXPECTATION`, as
    before schema 2, so CI keeps each test's history."""
    if case.kind == "expectation":
        step, _, expectation = case.name.partition(": ")
        return f"{scenario}.expect.{step}", expectation
    return f"{scenario}.{_CLASS[case.kind]}", case.name


def junit_tree(results: RunResults) -> ET.ElementTree:
    name = xml_text(results.meta.scenario)
    outcome = results.outcome
    suites = ET.Element("testsuites", name="llmscen")
    # the attributes and elements the common (Ant-style) JUnit schema requires
    suite = ET.SubElement(suites, "testsuite", name=name, package=name, id="0",
                          hostname=xml_text(socket.gethostname() or "localhost"))
    props = ET.SubElement(suite, "properties")
    meta = results.meta
    for key, value in (("scenario_file", meta.file), ("seed", meta.seed),
                       ("llmscen_version", meta.llmscen_version),
                       ("started_at", meta.started_at and meta.started_at.isoformat()),
                       ("ended_at", meta.ended_at and meta.ended_at.isoformat()),
                       ("outcome", outcome.status if outcome else None),
                       ("exit_code", outcome.exit_code if outcome else None)):
        if value is not None:
            ET.SubElement(props, "property", name=key, value=xml_text(value))
    for target in meta.targets:
        ET.SubElement(props, "property", name=f"target.{xml_text(target.name)}",
                      value=xml_text(f"{target.plugin} {target.url or ''}".strip()))
    for plugin in meta.plugins:
        ET.SubElement(props, "property", name=f"plugin.{xml_text(plugin.name)}",
                      value=xml_text(f"{plugin.distribution or ''} {plugin.version or ''}".strip()))
    counts = {"failed": 0, "error": 0, "skipped": 0}
    cases = outcome.cases if outcome else []
    for case in cases:
        classname, title = _names(name, case)
        element = ET.SubElement(suite, "testcase", classname=xml_text(classname),
                                name=xml_text(title), time="0.000")
        message = xml_text(case.message)
        if case.status == "failed":
            counts["failed"] += 1
            ET.SubElement(element, "failure", message=message,
                          type="SLO" if case.kind == "slo" else case.kind).text = \
                _details(results, case) or message
        elif case.status == "error":
            counts["error"] += 1
            ET.SubElement(element, "error", message=message, type=outcome.status
                          if outcome else "error").text = message
        elif case.status == "skipped":
            counts["skipped"] += 1
            ET.SubElement(element, "skipped", message=message)
        else:
            ET.SubElement(element, "system-out").text = message
    ET.SubElement(suite, "system-out").text = xml_text("\n".join(results.meta.notes))
    ET.SubElement(suite, "system-err")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(counts["failed"]))
    suite.set("errors", str(counts["error"]))
    suite.set("skipped", str(counts["skipped"]))
    started = meta.started_at or meta.ended_at
    suite.set("timestamp", started.replace(tzinfo=None).isoformat(timespec="seconds")
              if started else "1970-01-01T00:00:00")
    elapsed = (meta.ended_at - meta.started_at).total_seconds() \
        if meta.started_at and meta.ended_at else 0.0
    suite.set("time", f"{elapsed:.3f}")
    suites.set("tests", str(len(cases)))
    suites.set("failures", str(counts["failed"]))
    suites.set("errors", str(counts["error"]))
    suites.set("skipped", str(counts["skipped"]))
    ET.indent(suites)
    return ET.ElementTree(suites)


def _details(results: RunResults, case: Case) -> str:
    """A failed expectation's samples (message and output excerpt) below its message."""
    if case.kind != "expectation":
        return ""
    step, _, expectation = case.name.partition(": ")
    check = next((c for c in results.checks if c.request == step and
                  c.expectation == expectation), None)
    if check is None or not check.samples:
        return ""
    return xml_text(case.message + "\n\n" + "\n\n".join(
        f"{s.message}\noutput: {s.output}" for s in check.samples))


def write_junit(results: RunResults, path: str | Path) -> None:
    junit_tree(results).write(path, encoding="utf-8", xml_declaration=True)
