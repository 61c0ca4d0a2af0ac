"""Run a scenario from Python and get its results: what the pytest plugin and fixtures use.

    from llmscen.testing.run import run_scenario
    run = run_scenario("scenarios/smoke.yaml", sets={"phases.0.requests": 5})
    assert run.exit_code == 0, run.problem
    assert run.slo("latency.p95 < 2s").measured < 0.5

The run itself is `llmscen run`'s (`cli.run.execute`, `write_outputs`), so
results, files and exit codes are the same as on the command line; only the
progress line and the printed summary are left out. An invalid scenario raises
`ScenarioError`, whose message lists every problem as `FILE:LINE:COL: message`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmscen.cli.exitcodes import ASSERTIONS_FAILED, COULD_NOT_RUN, INVALID_INPUT, OK
from llmscen.compile.compiler import compile_document
from llmscen.compile.plan import Plan
from llmscen.engine.registry import Registry
from llmscen.metrics.results import CheckSummary, RunResults, SloResult
from llmscen.spec.diagnostics import Diagnostic, ScenarioError
from llmscen.spec.loader import load_file

Overrides = Mapping[str, Any] | Sequence[str]
Targets = Mapping[str, str] | Sequence[str]


@dataclass
class ScenarioRun:
    """One finished run: what was measured, the verdict, and where the files are."""

    plan: Plan
    results: RunResults
    exit_code: int                    # as `llmscen run`: 0 passed, 1 failed, 3 could not run
    problem: str | None = None        # why the run could not be carried out
    out_dir: Path | None = None
    written: list[Path] = field(default_factory=list)
    write_errors: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.exit_code == OK

    def slo(self, text: str) -> SloResult:
        """The result of the SLO written as `text` (the first one, if several share it)."""
        for slo in self.results.slos:
            if slo.text == text:
                return slo
        known = ", ".join(repr(s.text) for s in self.results.slos) or "none"
        raise KeyError(f"no SLO {text!r}; the scenario has: {known}")

    def check(self, request: str, expectation: str) -> CheckSummary:
        """How the responses to `request` fared on one expectation (`status`, `contains`...)."""
        for check in self.results.checks:
            if check.request == request and check.expectation == expectation:
                return check
        known = ", ".join(f"{c.request}: {c.expectation}" for c in self.results.checks) or "none"
        raise KeyError(f"no expectation {expectation!r} on {request!r}; checked: {known}")


def set_args(sets: Overrides) -> list[str]:
    """`--set` arguments from `{"phases.0.duration": "1s"}` or `["phases.0.duration=1s"]`.

    Values that are not strings are written as JSON, which the loader reads as YAML.
    """
    if isinstance(sets, Mapping):
        return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in sets.items()]
    return list(sets)


def target_urls(targets: Targets, file: str = "<command line>") -> dict[str, str]:
    """`{name: url}` from a mapping or from `NAME=URL` strings."""
    if isinstance(targets, Mapping):
        return dict(targets)
    out, bad = {}, []
    for item in targets:
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            bad.append(Diagnostic(file, 1, 1, f"--target expects NAME=URL, got {item!r}"))
        out[name] = url
    if bad:
        raise ScenarioError(bad)
    return out


def load_scenario(path: str | Path, sets: Overrides = (), targets: Targets = (),
                  registry: Registry | None = None) -> Plan:
    """Load and compile a scenario; sends nothing. Raises `ScenarioError`."""
    registry = registry or Registry.discover()
    doc = load_file(path, overrides=set_args(sets))
    return compile_document(doc, registry, target_urls(targets, str(path)))


def run_plan(plan: Plan, registry: Registry, out_dir: str | Path, *, workers: int = 1,
             command_line: Sequence[str] = ()) -> ScenarioRun:
    """Run a compiled plan, judge its SLOs and write results.json, junit.xml, report.html."""
    from llmscen.assertions.slo import evaluate
    from llmscen.cli.run import execute, make_meta, redact_argv, write_outputs
    from llmscen.report.terminal import verdict

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = make_meta(plan, registry, workers)
    if command_line:
        meta.command_line = redact_argv(command_line)
    results, problem = execute(plan, registry, [], meta, out, workers)
    if problem is not None:
        results.meta.notes.append(f"could not run: {problem}")
    results.slos = evaluate(plan.slos, results)
    written, failed = write_outputs(results, out, None, None, None)
    passed, _ = verdict(results)
    if problem is not None or results.meta.interrupted or failed:
        code = COULD_NOT_RUN
    else:
        code = OK if passed else ASSERTIONS_FAILED
    return ScenarioRun(plan=plan, results=results, exit_code=code, problem=problem,
                       out_dir=out, written=written, write_errors=failed)


def run_scenario(path: str | Path, *, sets: Overrides = (), targets: Targets = (),
                 out: str | Path | None = None, workers: int = 1,
                 registry: Registry | None = None) -> ScenarioRun:
    """Load, compile and run the scenario at `path`.

    `sets` are `--set` overrides, `targets` `--target` URLs (their services are
    not started). Files go to `out`, by default a new temporary folder.
    Raises `ScenarioError` when the scenario or an override is invalid.
    """
    registry = registry or Registry.discover()
    plan = load_scenario(path, sets, targets, registry)
    out_dir = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"llmscen-{plan.name}-"))
    argv = ["run_scenario", str(path)]
    for item in set_args(sets):
        argv += ["--set", item]
    return run_plan(plan, registry, out_dir, workers=workers, command_line=argv)


__all__ = ["ASSERTIONS_FAILED", "COULD_NOT_RUN", "INVALID_INPUT", "OK", "ScenarioRun",
           "load_scenario", "run_plan", "run_scenario", "set_args", "target_urls"]
