"""pytest plugin: scenario files as tests, and the llmscen fixtures.

`pytest scenarios/smoke.yaml` runs the scenario once and reports one test for
the run itself, one per SLO and one per (request, expectation). A YAML file is
a scenario only when it was named on the command line, lies under a folder of
the `llmscen_scenarios` ini option, or matches `llmscen_scenario_glob`: other
YAML files in a test tree (data, fixtures) are left alone.

The plugin loads in every pytest session once llmscen is installed, so this
module imports only pytest and the standard library; llmscen itself is
imported when a scenario is collected or a fixture is used.
"""

from __future__ import annotations

import fnmatch
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from llmscen.testing.fixtures import llmscen_run, openai_sim, triton_sim, triton_sim_options

if TYPE_CHECKING:
    from _pytest._code.code import ExceptionInfo, TerminalRepr

    from llmscen.compile.plan import Plan, SLOPlan
    from llmscen.engine.registry import Registry
    from llmscen.metrics.results import Case, CheckSummary
    from llmscen.testing.run import ScenarioRun

__all__ = ["llmscen_run", "openai_sim", "triton_sim", "triton_sim_options"]

SUFFIXES = (".yaml", ".yml")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmscen", "llmscen scenarios")
    group.addoption("--llmscen-out", metavar="DIR", default=None,
                    help="write each scenario's results to DIR/<file stem>/ "
                         "[default: pytest's temporary folder]")
    group.addoption("--llmscen-set", metavar="PATH=VALUE", action="append", default=[],
                    help="override a value in every scenario, e.g. phases.0.duration=2s")
    group.addoption("--llmscen-target", metavar="NAME=URL", action="append", default=[],
                    help="point a target at a URL; its service is not started")
    group.addoption("--llmscen-workers", metavar="N", type=int, default=1,
                    help="local worker processes per scenario run [default: 1]")
    parser.addini("llmscen_scenarios", type="paths", default=[],
                  help="folders whose .yaml/.yml files are llmscen scenarios")
    parser.addini("llmscen_scenario_glob", type="args", default=[],
                  help="fnmatch patterns (relative to rootdir) of llmscen scenario files")


def is_scenario(file_path: Path, parent: pytest.Collector) -> bool:
    """Only YAML named on the command line or opted in through the ini options."""
    if file_path.suffix not in SUFFIXES:
        return False
    if parent.session.isinitpath(file_path):
        return True
    config = parent.config
    folders: list[Path] = config.getini("llmscen_scenarios")
    if any(file_path.is_relative_to(folder) for folder in folders):
        return True
    patterns: list[str] = config.getini("llmscen_scenario_glob")
    if patterns:
        try:
            shown = file_path.relative_to(config.rootpath).as_posix()
        except ValueError:
            shown = file_path.as_posix()
        return any(fnmatch.fnmatch(shown, pattern) for pattern in patterns)
    return False


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ScenarioFile | None:
    if not is_scenario(file_path, parent):
        return None
    return ScenarioFile.from_parent(parent, path=file_path)


# -- session state -------------------------------------------------------------------


@dataclass
class Outcome:
    run: ScenarioRun | None = None
    error: BaseException | None = None    # llmscen itself failed (a bug): shown on the run item


@dataclass
class State:
    """What one pytest session shares between scenario files; lives in `config.stash`."""

    registry: Registry | None = None
    runs: dict[Path, Outcome] = field(default_factory=dict)
    out_dirs: set[Path] = field(default_factory=set)


STATE = pytest.StashKey[State]()


def session_state(config: pytest.Config) -> State:
    if STATE not in config.stash:
        config.stash[STATE] = State()
    return config.stash[STATE]


def session_registry(config: pytest.Config) -> Registry:
    state = session_state(config)
    if state.registry is None:
        from llmscen.engine.registry import Registry

        state.registry = Registry.discover()
    return state.registry


# -- collection ----------------------------------------------------------------------


class ScenarioFile(pytest.File):
    """One scenario: compiled at collection (no traffic), run by its first item."""

    plan: Plan

    def collect(self) -> Iterable[pytest.Item]:
        from llmscen.metrics.recorder import declared_requests
        from llmscen.testing.run import load_scenario

        self.plan = load_scenario(shown_path(self.path, self.config),
                                  self.config.getoption("llmscen_set"),
                                  self.config.getoption("llmscen_target"),
                                  session_registry(self.config))
        # the cases of the run's outcome, known before it runs (assertions/verdict.py)
        yield RunItem.from_parent(self, name="run")
        names: set[str] = set()
        for index, slo in enumerate(self.plan.slos):
            name = unique(slo_name(slo), names)
            yield SloItem.from_parent(self, name=name, index=index)
        for request in declared_requests(self.plan):
            name = unique(f"request: {request.name}", names)
            yield CaseItem.from_parent(self, name=name, kind="request", case=request.name)
            for step in request.steps:
                for expectation in step.expectations:
                    name = unique(f"expect: {step.name}: {expectation}", names)
                    yield CaseItem.from_parent(self, name=name, kind="expectation",
                                               case=f"{step.name}: {expectation}")

    # the same signature as pytest's Collector.repr_failure, which narrows Node's
    def repr_failure(self, excinfo: ExceptionInfo[BaseException],  # type: ignore[override]
                     ) -> str | TerminalRepr:
        from llmscen.spec.diagnostics import ScenarioError

        if isinstance(excinfo.value, ScenarioError):
            count = len(excinfo.value.diagnostics)
            return (f"{excinfo.value}\n{count} problem{'s' if count != 1 else ''} found; "
                    "nothing was sent")
        return super().repr_failure(excinfo)

    def outcome(self) -> Outcome:
        """The scenario's run, carried out by whichever of its items asks first."""
        state = session_state(self.config)
        if self.path not in state.runs:
            try:
                state.runs[self.path] = Outcome(run=self._run())
            except Exception as exc:  # shown on the run item; the others skip
                state.runs[self.path] = Outcome(error=exc)
        return state.runs[self.path]

    def _run(self) -> ScenarioRun:
        from llmscen.testing.run import run_plan

        config = self.config
        return run_plan(self.plan, session_registry(config), self._out_dir(),
                        workers=config.getoption("llmscen_workers"),
                        command_line=["pytest", *config.invocation_params.args])

    def _out_dir(self) -> Path:
        state = session_state(self.config)
        chosen = self.config.getoption("llmscen_out")
        if chosen:
            out, n = Path(chosen) / self.path.stem, 1
            while out in state.out_dirs:   # two files with one stem in one session
                n += 1
                out = Path(chosen) / f"{self.path.stem}-{n}"
        else:
            # pytest's own factory is private API; fall back to a plain temp dir without it
            factory = getattr(self.config, "_tmp_path_factory", None)
            out = factory.mktemp(f"llmscen-{self.path.stem}") if factory else \
                Path(tempfile.mkdtemp(prefix=f"llmscen-{self.path.stem}-"))
        state.out_dirs.add(out)
        return out


def shown_path(path: Path, config: pytest.Config) -> Path:
    """`path` relative to where pytest was started when inside it, so messages read as typed."""
    try:
        return path.relative_to(config.invocation_params.dir)
    except ValueError:
        return path


def slo_name(slo: SLOPlan) -> str:
    """`slo: TEXT [scope]`, the scope as in llmscen's junit.xml, so names match there."""
    scope = {"phase": slo.phase, "request": slo.request, "target": slo.target,
             "window": slo.window}
    shown = ", ".join(f"{k}={v}" for k, v in scope.items() if v is not None)
    return f"slo: {slo.text} [{shown}]" if shown else f"slo: {slo.text}"


def unique(name: str, taken: set[str]) -> str:
    """Node ids must differ: a repeated SLO becomes `NAME (2)`."""
    out, n = name, 1
    while out in taken:
        n += 1
        out = f"{name} ({n})"
    taken.add(out)
    return out


# -- items ---------------------------------------------------------------------------


class ScenarioFailure(Exception):
    """A failed SLO, expectation or run; shown as its message alone, without a traceback."""


class ScenarioItem(pytest.Item):
    parent: ScenarioFile

    def finished_run(self) -> ScenarioRun:
        """The run (carried out by the first item that asks), or a skip when llmscen itself
        failed (the run item says why)."""
        outcome = self.parent.outcome()
        if outcome.run is None:
            pytest.skip("not judged: llmscen failed while running the scenario (see the run item)")
        return outcome.run

    def judge(self, case: Case | None) -> None:
        """Pass, fail or skip as the run's outcome says of this item's case."""
        if case is None:
            raise ScenarioFailure(f"the run's outcome has no case for {self.name!r}")
        if case.status == "skipped":
            pytest.skip(case.message)
        if case.status in ("failed", "error"):
            raise ScenarioFailure(case.message)

    def repr_failure(self, excinfo: ExceptionInfo[BaseException],
                     style: Any = None) -> str | TerminalRepr:
        if isinstance(excinfo.value, ScenarioFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.title

    @property
    def title(self) -> str:
        """The failure header. Not a suffix of the node id: pytest would turn its dots into `::`."""
        return f"{self.path.name} {self.name}"


class RunItem(ScenarioItem):
    """The run itself: fails when it could not be carried out, was interrupted or measured
    the load generator instead of the server (`llmscen run` exit codes 3 and 4)."""

    def runtest(self) -> None:
        outcome = self.parent.outcome()
        if outcome.error is not None:
            raise outcome.error
        run = outcome.run
        assert run is not None
        from llmscen.report.terminal import summary

        self.add_report_section("call", "llmscen summary", summary(run.results))
        if run.out_dir is not None:
            self.user_properties.append(("llmscen_results", str(run.out_dir)))
        if run.outcome.status == "interrupted":
            self.session.shouldstop = "llmscen run interrupted"
        case = next((c for c in run.outcome.cases if c.kind == "run"), None)
        try:
            self.judge(case)
        except ScenarioFailure as exc:
            where = f"\nresults: {run.out_dir}" if run.out_dir else ""
            raise ScenarioFailure(f"{run.outcome.status.replace('_', ' ')}: {exc}{where}") \
                from None


class SloItem(ScenarioItem):
    def __init__(self, *, index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = index

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.parent.plan.slos[self.index].where.rsplit(":", 2)
        return self.path, int(line[1]) - 1 if len(line) == 3 else None, self.title

    def runtest(self) -> None:
        run = self.finished_run()
        result = run.results.slos[self.index]
        where = run.plan.slos[self.index].where
        self.user_properties += [(k, v) for k, v in (("measured", result.measured),
                                                      ("threshold", result.threshold)) if v is not None]
        case = next((c for c in run.outcome.cases if c.kind == "slo" and c.slo == self.index),
                    None)
        try:
            self.judge(case)
        except ScenarioFailure as exc:
            raise ScenarioFailure(f"{exc}\nSLO at {where}" if where else str(exc)) from None


class CaseItem(ScenarioItem):
    """A declared request, or one expectation of one of its steps."""

    def __init__(self, *, kind: str, case: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kind = kind
        self.case = case

    def runtest(self) -> None:
        run = self.finished_run()
        case = next((c for c in run.outcome.cases if c.kind == self.kind and c.name == self.case),
                    None)
        try:
            self.judge(case)
        except ScenarioFailure:
            if self.kind != "expectation":
                raise
            raise ScenarioFailure(self._samples(run, case)) from None

    def _samples(self, run: ScenarioRun, case: Case | None) -> str:
        step, _, expectation = self.case.partition(": ")
        checks = [c for c in run.results.checks if c.request == step and
                  (c.expectation == expectation or c.expectation.startswith(expectation + "."))]
        failed = [c for c in checks if c.failed]
        text = case.message if case else ""
        if failed:
            text = "\n\n".join(check_message(c, samples=True) for c in failed)
        return text


def check_message(check: CheckSummary, samples: bool = False) -> str:
    """`N of M responses failed X: first sample`, or with `samples` the header and every sample."""
    total = check.passed + check.failed
    text = f"{check.failed} of {total} responses failed {check.expectation}"
    if not samples:
        return f"{text}: {check.samples[0].message}" if check.samples else text
    for sample in check.samples:
        text += f"\n  - {sample.message}"
        if sample.output:
            text += f"\n    output: {sample.output!r}"
    return text


# -- reporting -----------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None or not state.runs:
        return
    terminalreporter.write_sep("-", "llmscen")
    for path, outcome in state.runs.items():
        if outcome.run is not None:
            terminalreporter.write_line(f"{path.name}: exit code {outcome.run.exit_code}, "
                                        f"results in {outcome.run.out_dir}")
        else:
            terminalreporter.write_line(f"{path.name}: llmscen failed: {outcome.error!r}")
