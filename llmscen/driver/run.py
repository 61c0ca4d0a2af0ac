"""`run_plan`: run a compiled plan, judge it, write its files — the library call behind
`llmscen run`, `llmscen.testing.run_scenario` and the pytest plugin."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmscen.assertions.consistency import consistency_specs, judge_consistency
from llmscen.assertions.slo import evaluate
from llmscen.assertions.verdict import conclude
from llmscen.compile.plan import BaselinePlan, Plan
from llmscen.driver.context import client_info, scenario_source, target_model
from llmscen.driver.export import LiveExport
from llmscen.driver.outputs import scrub_service_logs, write_outputs
from llmscen.driver.session import Display, Driver, RunOptions, install_signals
from llmscen.engine.loop import run_loop
from llmscen.metrics.results import BaselineInfo, Meta, Outcome, PluginInfo, Reason, RunResults, TargetInfo
from llmscen.spec import secrets


def redact_argv(argv: Sequence[str], plan: Plan) -> list[str]:
    """The command line as it is saved: secret options, `--set` values and URL parts masked."""
    scrub = plan.scrubber()
    return [scrub(arg) for arg in secrets.redact_argv(argv)]


@dataclass
class RunOutcome:
    """One finished run: what was measured, its outcome, and where the files are."""

    plan: Plan
    results: RunResults
    out_dir: Path
    written: list[Path] = field(default_factory=list)
    write_errors: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> Outcome:
        assert self.results.outcome is not None
        return self.results.outcome

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code


MAX_DEFAULT_WORKERS = 8


def default_workers(plan: Plan, cores: int | None = None) -> int:
    """`--workers` when none is given: one per core, less one per service the run starts on
    this machine (a simulator or a `command:` server competes for the same cores: with
    triton-sim on the same two cores, one worker delivered 749 infer/s and two 637 —
    benchmarks/triton/README.md), at least one and at most MAX_DEFAULT_WORKERS."""
    cores = cores or os.cpu_count() or 1
    started = {t.service for t in plan.targets if t.service}
    local = sum(1 for s in plan.services if s.name in started)
    return max(1, min(cores - local, MAX_DEFAULT_WORKERS))


def against_baseline(results: RunResults, baseline: BaselinePlan) -> BaselineInfo:
    """This run against the baseline, as `llmscen compare BASELINE THIS` judges it."""
    from llmscen.report.compare import compare
    from llmscen.report.compare_view import verdict_line, verdict_word

    base = RunResults.load(baseline.file)
    comparison = compare(base, results, baseline.max_regression, alpha=baseline.alpha,
                         base_files=[baseline.file], new_files=["this run"])
    regressions = [f"{d.name} [{d.scope}]: {d.base:.4g} → {d.new:.4g} "
                   f"({(d.change or 0) * 100:+.1f}%, p {d.p:.2g})"
                   for d in comparison.regressions if d.base is not None and d.new is not None]
    return BaselineInfo(file=Path(baseline.file).name, verdict=verdict_word(comparison),
                        line=verdict_line(comparison), regressions=regressions,
                        warnings=list(comparison.warnings))


def check_baseline(plan: Plan) -> None:
    """Refuse an unusable baseline before any traffic (exit 2)."""
    if plan.baseline is None:
        return
    from llmscen.metrics.checks import check_results

    check_results(RunResults.load(plan.baseline.file), plan.baseline.file)


def default_out_dir(plan: Plan) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path("reports") / f"{plan.name}-{stamp}"


def make_meta(plan: Plan, registry: Any, workers: int,
              command_line: Sequence[str] | None = None) -> Meta:
    used = sorted({t.plugin for t in plan.targets})
    plugins = [PluginInfo(name=n, distribution=registry.plugins[n].distribution,
                          version=registry.plugins[n].version,
                          metrics=sorted(getattr(registry.plugins[n].obj, "metrics", ())))
               for n in used]
    # the workers replace these with the URLs the services got and what the servers say
    targets = [TargetInfo(name=t.name, plugin=t.plugin, service=t.service,
                          model=target_model(t),
                          url=t.url or (f"service:{t.service}" if t.service else None))
               for t in plan.targets]
    argv = list(command_line) if command_line is not None else ["llmscen", *sys.argv[1:]]
    return Meta(scenario=plan.name, file=plan.file, description=plan.description,
                seed=plan.seed, plugins=plugins, targets=targets,
                command_line=redact_argv(argv, plan), workers=workers,
                started_at=dt.datetime.now(dt.timezone.utc), client=client_info(),
                scenario_source=_source(plan))


def _source(plan: Plan) -> str | None:
    """The scenario file as written, secret-named values and the plan's secrets hidden."""
    text = scenario_source(plan.file) if plan.file else None
    return plan.scrubber()(text) if text else None


def run_plan(plan: Plan, registry: Any, out_dir: str | Path | None = None, *,
             workers: int = 1, log_path: str | None = None, display: Display | None = None,
             json_path: str | None = None, junit_path: str | None = None,
             html_path: str | None = None, summary_path: str | None = None,
             command_line: Sequence[str] | None = None,
             connect_failures: int | None = None, csv_dir: str | None = None,
             export: LiveExport | None = None, cluster: Any = None) -> RunOutcome:
    """Run `plan`, judge it (SLOs, requests, expectations → one outcome), write its files.
    `cluster`: a connected `driver.cluster.RayCluster` whose actors are the workers."""
    check_baseline(plan)
    if cluster is not None:
        cluster.check(plan, workers)
    out = Path(out_dir) if out_dir is not None else default_out_dir(plan)
    out.mkdir(parents=True, exist_ok=True)
    meta = make_meta(plan, registry, workers, command_line)
    if log_path:
        Path(log_path).write_bytes(b"")     # workers append to it
    options = RunOptions(workers=workers, log_path=log_path, log_dir=str(out),
                         display=display, connect_failures=plan.run.connect_failures
                         if connect_failures is None else connect_failures, export=export,
                         cluster=cluster)
    driver: Driver | None = None

    async def main() -> RunResults:
        nonlocal driver
        driver = Driver(plan, registry, meta, options)
        installed = install_signals(driver)
        try:
            return await driver.run()
        finally:
            loop = asyncio.get_running_loop()
            for sig in installed:
                loop.remove_signal_handler(sig)

    results = run_loop(main)
    assert driver is not None
    scrub_service_logs(out, driver.scrub)
    judge_consistency(results, consistency_specs(plan))
    results.slos = evaluate(plan.slos, results)
    if plan.baseline is not None:
        results.baseline = against_baseline(results, plan.baseline)
    conclude(results, driver.reasons)
    written, failed = write_outputs(results, out, json_path, junit_path, html_path,
                                    summary_path, csv_dir)
    failed = [driver.scrub(f) for f in failed]
    if failed:
        reasons = [*driver.reasons, *(Reason(kind="output_failed", message=f) for f in failed)]
        conclude(results, reasons)
        written, _ = write_outputs(results, out, json_path, junit_path, None, None)
    return RunOutcome(plan=plan, results=results, out_dir=out, written=written,
                      write_errors=failed)
