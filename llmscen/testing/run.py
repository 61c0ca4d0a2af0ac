"""Run a scenario from Python and get its results: what the pytest plugin and fixtures use.

    from llmscen.testing.run import run_scenario
    run = run_scenario("scenarios/smoke.yaml", sets={"phases.0.requests": 5})
    assert run.exit_code == 0, run.problem
    assert run.slo("latency.p95 < 2s").measured < 0.5

The run itself is `llmscen run`'s (`llmscen.driver.run_plan`), so results,
files, outcomes and exit codes are the same as on the command line; only the
progress line and the printed summary are left out. An invalid scenario raises
`ScenarioError`, whose message lists every problem as `FILE:LINE:COL: message`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmscen.compile.compiler import compile_document
from llmscen.compile.plan import Plan
from llmscen.driver.run import RunOutcome
from llmscen.engine.registry import Registry
from llmscen.errors import COULD_NOT_RUN, INVALID_INPUT, INVALID_MEASUREMENT, OK
from llmscen.errors import FAILED as ASSERTIONS_FAILED
from llmscen.metrics.results import CheckSummary, SloResult
from llmscen.spec.diagnostics import Diagnostic, ScenarioError
from llmscen.spec.loader import load_file
from llmscen.spec.secrets import public_url

Overrides = Mapping[str, Any] | Sequence[str]
Targets = Mapping[str, str] | Sequence[str]


@dataclass
class ScenarioRun(RunOutcome):
    """One finished run: what was measured, the outcome (`exit_code` as `llmscen run`'s:
    0 passed, 1 failed, 3 could not run or interrupted, 4 invalid measurement), and where
    the files are."""

    @property
    def problem(self) -> str | None:
        """Why the run could not be carried out (or was cut short), or None."""
        from llmscen.assertions.verdict import RUN_REASONS

        reasons = [r.message for r in self.outcome.reasons
                   if RUN_REASONS.get(r.kind) in ("could_not_run", "interrupted",
                                                  "invalid_measurement")]
        return "; ".join(reasons) or None

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
            bad.append(Diagnostic(file, 1, 1, f"--target expects NAME=URL, got "
                                              f"{public_url(item)!r}"))
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
    """Run a compiled plan, judge it and write results.json, junit.xml, report.html."""
    from llmscen.driver import run_plan as drive

    done = drive(plan, registry, out_dir, workers=workers,
                 command_line=list(command_line) or None)
    return ScenarioRun(**vars(done))


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


__all__ = ["ASSERTIONS_FAILED", "COULD_NOT_RUN", "INVALID_INPUT", "INVALID_MEASUREMENT", "OK",
           "ScenarioRun",
           "load_scenario", "run_plan", "run_scenario", "set_args", "target_urls"]
