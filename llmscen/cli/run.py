"""`llmscen run`: execute a scenario, save results, judge them, exit with the verdict."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import click

from llmscen.assertions.slo import evaluate
from llmscen.cli import exitcodes
from llmscen.cli.progress import Progress
from llmscen.compile.plan import Plan
from llmscen.engine.events import Fanout, Handler
from llmscen.engine.loop import run_loop
from llmscen.engine.registry import Registry
from llmscen.engine.run import Engine, RunError, start_services
from llmscen.engine.workers import Pool
from llmscen.metrics.merge import merge
from llmscen.metrics.recorder import Recorder
from llmscen.metrics.request_log import RequestLog
from llmscen.metrics.results import Meta, PluginInfo, RunResults, TargetInfo
from llmscen.report.junit import write_junit
from llmscen.report.terminal import summary, verdict

_SECRET_SET = re.compile(r"(key|token|secret|password|auth)", re.I)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """The command line with values of secret-looking `--set` overrides masked."""
    out = []
    for arg in argv:
        path, sep, _ = arg.partition("=")
        out.append(f"{path}=***" if sep and _SECRET_SET.search(path) else arg)
    return out


def default_out_dir(plan: Plan) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path("reports") / f"{plan.name}-{stamp}"


def make_meta(plan: Plan, registry: Registry, workers: int) -> Meta:
    used = sorted({t.plugin for t in plan.targets})
    plugins = [PluginInfo(name=n, distribution=registry.plugins[n].distribution,
                          version=registry.plugins[n].version) for n in used]
    targets = [TargetInfo(name=t.name, plugin=t.plugin,
                          url=t.url or (f"service:{t.service}" if t.service else None))
               for t in plan.targets]
    return Meta(scenario=plan.name, file=plan.file, description=plan.description,
                seed=plan.seed, plugins=plugins, targets=targets,
                command_line=redact_argv(["llmscen", *sys.argv[1:]]), workers=workers)


def worker_recorder(plan: Plan) -> Recorder:
    """What each worker process aggregates into (module level, so it pickles)."""
    return Recorder(Meta(scenario=plan.name))


def _on_interrupt(first: Callable[[], None], second: Callable[[], None]) -> Callable[[], None]:
    presses = 0

    def handle() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            click.echo("\nstopping: finishing in-flight requests (Ctrl-C again to abandon "
                       "them)", err=True)
            first()
        else:
            second()
    return handle


def execute(plan: Plan, registry: Registry, handlers: list[Handler], meta: Meta,
            log_dir: Path, workers: int) -> tuple[RunResults, str | None]:
    """Run the plan in this process or in `workers` processes.

    Returns what was measured (also when the run was cut short) and why the run
    could not be carried out, or None.
    """
    problem: str | None = None
    recorder = Recorder(meta)
    pool: Pool | None = None

    async def main() -> None:
        nonlocal problem, pool
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        stop = asyncio.Event()
        if workers == 1:
            engine = Engine(plan, registry, Fanout([recorder, *handlers]), log_dir=str(log_dir))
            first = engine.interrupt
        else:
            first = stop.set
        def abandon() -> None:
            if task is not None:
                task.cancel()

        handle = _on_interrupt(first, abandon)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, handle)
        try:
            if workers == 1:
                await engine.run()
                meta.interrupted = meta.interrupted or engine.interrupted
            else:
                async with start_services(plan, registry, str(log_dir)) as resolved:
                    pool = Pool(resolved, workers, Fanout(list(handlers)), worker_recorder,
                                str(log_dir))
                    await pool.run(stop)
                meta.interrupted = stop.is_set()
        except RunError as exc:
            problem = str(exc)
        except asyncio.CancelledError:
            meta.interrupted = True
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    run_loop(main)
    if pool is None:
        return recorder.results(), problem
    parts = [RunResults.from_json(data) for _, data in sorted(pool.results.items())]
    if pool.errors and problem is None:
        problem = "; ".join(pool.errors)
    if not parts:
        return recorder.results(), problem
    merged = merge(parts)
    meta.notes = [*merged.meta.notes, *meta.notes]
    meta.started_at, meta.ended_at = merged.meta.started_at, merged.meta.ended_at
    meta.workers = workers
    merged.meta = meta
    for handler in handlers:
        handler.run_ended(max((p.ended for p in merged.phases), default=0.0), meta.interrupted)
    return merged, problem


def write_outputs(results: RunResults, out_dir: Path, json_path: str | None,
                  junit_path: str | None, html_path: str | None) -> tuple[list[Path], list[str]]:
    """results.json first (it is what everything else is made from), then the reports.

    A report that fails to render is reported, never at the cost of the others.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    results_file = Path(json_path) if json_path else out_dir / "results.json"
    results.save(results_file)
    written, failed = [results_file], []
    writers: list[tuple[Path, Callable[[RunResults, Path], None]]] = [
        (Path(junit_path) if junit_path else out_dir / "junit.xml", write_junit)]
    try:
        from llmscen.report.html import write_html
    except ImportError:
        pass
    else:
        writers.append((Path(html_path) if html_path else out_dir / "report.html", write_html))
    for path, writer in writers:
        try:
            writer(results, path)
        except Exception as exc:  # a broken reporter must not lose the run's results
            failed.append(f"could not write {path}: {type(exc).__name__}: {exc}")
        else:
            written.append(path)
    return written, failed


def run_command(plan: Plan, registry: Registry, *, out: str | None, json_path: str | None,
                junit_path: str | None, html_path: str | None, summary_path: str | None,
                quiet: bool, workers: int, log_path: str | None = None) -> int:
    out_dir = Path(out) if out else default_out_dir(plan)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = make_meta(plan, registry, workers)
    handlers: list[Handler] = [Progress(quiet=quiet)]
    if log_path:
        if workers > 1:
            click.echo("llmscen: --log-requests records one process; running with --workers 1",
                       err=True)
            workers = meta.workers = 1
        handlers.append(RequestLog(log_path))
    results, problem = execute(plan, registry, handlers, meta, out_dir, workers)
    if problem is not None:
        results.meta.notes.append(f"could not run: {problem}")
    results.slos = evaluate(plan.slos, results)
    written, failed = write_outputs(results, out_dir, json_path, junit_path, html_path)
    passed, line = verdict(results)
    if problem is not None:
        passed, line = False, f"COULD NOT RUN: {problem}"
    text = summary(results)
    click.echo(text)
    click.echo("")
    click.echo(line)
    for path in written:
        click.echo(f"  wrote {path}")
    for message in failed:
        click.echo(f"llmscen: {message}", err=True)
    if summary_path:
        from llmscen.report.markdown import write_summary

        write_summary(results, line, summary_path)
    if problem is not None or results.meta.interrupted or failed:
        return exitcodes.COULD_NOT_RUN
    return exitcodes.OK if passed else exitcodes.ASSERTIONS_FAILED
