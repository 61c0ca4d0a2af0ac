"""`llmscen` command line. The one place that turns errors into messages and exit codes."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence

import click
import orjson
from pydantic import BaseModel

from llmscen import __version__
from llmscen.cli import exitcodes
from llmscen.cli.failure import Failure, invalid
from llmscen.cli.report_cmds import compare, report
from llmscen.compile.compiler import compile_document
from llmscen.compile.plan import Plan
from llmscen.compile.urls import parse_target_args
from llmscen.engine.registry import Registry
from llmscen.errors import LlmscenError
from llmscen.spec.diagnostics import Diagnostic, ScenarioError
from llmscen.spec.loader import load_file
from llmscen.spec.units import parse_duration

LOG_LEVELS = ("debug", "info", "warning", "error")


class _Duration(click.ParamType):
    """A duration option: `5s`, `250ms`, `2m` (spec/units.py)."""

    name = "duration"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = _Duration()


def load_plan(registry: Registry, path: str, sets: Sequence[str] = (),
              targets: Sequence[str] = ()) -> Plan:
    """The scenario, `--set` and `--target` compiled; every problem with them in one error."""
    urls, problems = parse_target_args(targets)
    try:
        doc = load_file(path, overrides=sets)
        return compile_document(doc, registry, urls, problems)
    except ScenarioError as exc:
        raise invalid(ScenarioError([*exc.diagnostics, *problems])) from None


class Commands(click.Group):
    """Every command's LlmscenError becomes its message and exit code (also under click's
    test runner, which does not go through `main`)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except LlmscenError as exc:
            raise Failure(str(exc), exc.exit_code) from None


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="llmscen")
def cli() -> None:
    """Load- and correctness-tests for LLM and GenAI inference services."""


@cli.command()
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(scenarios: tuple[str, ...]) -> None:
    """Load and compile SCENARIOS; send nothing."""
    registry = Registry.discover()
    problems: list[Diagnostic] = []
    for path in scenarios:
        try:
            plan = compile_document(load_file(path), registry)
        except ScenarioError as exc:
            problems += exc.diagnostics
            continue
        click.echo(f"ok  {path}  ({len(plan.phases)} phases, {len(plan.requests)} requests, "
                   f"{len(plan.slos)} SLOs)")
        for note in plan.notes:
            click.echo(f"    note: {note}")
    if problems:
        raise invalid(ScenarioError(problems))


@cli.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="PATH=VALUE",
              help="Override a value, e.g. --set phases.0.duration=5s")
@click.option("--target", "targets", multiple=True, metavar="NAME=URL",
              help="Point a target at a URL (its service is not started)")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON")
def plan(scenario: str, sets: tuple[str, ...], targets: tuple[str, ...], as_json: bool) -> None:
    """Show what a run of SCENARIO will do: phases, load, expected requests, SLOs."""
    from llmscen.cli.plan_view import render_plan

    compiled = load_plan(Registry.discover(), scenario, sets, targets)
    if as_json:
        click.echo(orjson.dumps(compiled.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(compiled.scrubber()(render_plan(compiled)))


@cli.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="PATH=VALUE",
              help="Override a value, e.g. --set phases.0.duration=5s")
@click.option("--target", "targets", multiple=True, metavar="NAME=URL",
              help="Point a target at a URL; its service is not started")
@click.option("--out", "outs", multiple=True, metavar="DIR | FORMAT=FILE",
              help="Output folder [default: reports/<name>-<UTC time>/]; or, k6-style, one "
                   "file: json=F, junit=F, html=F, summary=F (repeatable)")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="results.json path")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), help="JUnit XML path")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), help="HTML report path")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False),
              help="Also write a Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local worker processes sharing the load, or with --engine ray actors "
                   "across the cluster [default: one per core, less one per service the run "
                   "starts here; ray: one per cluster CPU, at most 32]")
@click.option("--log-requests", "log_path", type=click.Path(dir_okay=False),
              help="Also write one JSON line per request (timings, status, errors)")
@click.option("--engine", type=click.Choice(("local", "ray")), default="local",
              show_default=True,
              help="Where workers run: local processes, or actors on a Ray cluster "
                   "(docs/distributed.md)")
@click.option("--address", metavar="ADDR",
              help="--engine ray: the cluster (HOST:PORT of a running head, auto, or "
                   "ray://HOST:PORT) [default: auto]")
@click.option("-q", "--quiet", is_flag=True, help="No live view, no notes while running")
@click.option("-v", "--verbose", count=True,
              help="Per-worker detail in the live view and llmscen's info log (-vv: debug)")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False),
              default=None, help="Level of llmscen's own log on stderr [default: warning]")
@click.option("--progress", type=click.Choice(("auto", "live", "lines")), default="auto",
              show_default=True,
              help="live: redrawn in place (a terminal); lines: a line per interval (CI logs)")
@click.option("--csv", "csv_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Also write the per-second series and per-scope figures as CSV files")
@click.option("--prometheus", "prometheus", metavar="HOST:PORT",
              help="Serve the run's live metrics for Prometheus at http://HOST:PORT/metrics")
@click.option("--prometheus-hold", "prometheus_hold", type=DURATION, default="0s",
              metavar="DURATION", show_default=True,
              help="Keep serving them this long after the run, for a last scrape")
def run(scenario: str, sets: tuple[str, ...], targets: tuple[str, ...], outs: tuple[str, ...],
        json_path: str | None, junit_path: str | None, html_path: str | None,
        summary_path: str | None, workers: int | None, log_path: str | None,
        engine: str, address: str | None, quiet: bool, verbose: int, log_level: str | None,
        progress: str, csv_dir: str | None, prometheus: str | None,
        prometheus_hold: float) -> None:
    """Run SCENARIO: send its traffic, check every response, judge its SLOs."""
    from llmscen.cli.run import Outputs, run_command
    from llmscen.driver import default_workers

    outputs = Outputs.parse(outs, json=json_path, junit=junit_path, html=html_path,
                            summary=summary_path)
    if address is not None and engine != "ray":
        raise Failure("--address is the Ray cluster of --engine ray; add --engine ray",
                      exitcodes.INVALID_INPUT)
    registry = Registry.discover()
    compiled = load_plan(registry, scenario, sets, targets)
    level = log_level or ("debug" if verbose > 1 else "info" if verbose else "warning")
    with contextlib.ExitStack() as stack:
        cluster = None
        if engine == "ray":
            from llmscen.driver.cluster import connected

            cluster = stack.enter_context(connected(address or "auto"))
        code = run_command(compiled, registry, outputs, quiet=quiet, verbose=verbose,
                           log_level=level, progress=progress,
                           workers=workers or (cluster.default_workers() if cluster is not None
                                               else default_workers(compiled)),
                           log_path=log_path, cluster=cluster, csv_dir=csv_dir,
                           prometheus=prometheus, prometheus_hold=prometheus_hold)
    sys.exit(code)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the scenario format (for YAML editors)."""
    from llmscen.compile.schema import scenario_schema

    click.echo(orjson.dumps(scenario_schema(Registry.discover()),
                            option=orjson.OPT_INDENT_2).decode())


@cli.command()
def plugins() -> None:
    """List installed protocol plugins and services with their versions."""
    registry = Registry.discover()
    click.echo("plugins:")
    for name, entry in sorted(registry.plugins.items()):
        obj = entry.obj
        click.echo(f"  {name:<10} {entry.origin:<22} {obj.description}")
        click.echo(f"  {'':<10} target options: {_keys(obj.target_options)}")
        click.echo(f"  {'':<10} request options: {_keys(obj.request_options)}")
        click.echo(f"  {'':<10} metrics: {', '.join(sorted(obj.metrics))}")
    click.echo("services:")
    for name, entry in sorted(registry.services.items()):
        click.echo(f"  {name:<10} {entry.origin:<22} {entry.obj.description}")
    for broken in registry.broken.values():
        click.echo(f"  BROKEN {broken}", err=True)


cli.add_command(report)
cli.add_command(compare)


def _keys(model: type[BaseModel]) -> str:
    """The keys a user writes (aliases where a field has one)."""
    return ", ".join(f.alias or name for name, f in model.model_fields.items())


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: every error becomes a message and an exit code, never a traceback.

    Errors llmscen raises for the user carry their code (`llmscen.errors`); anything
    else is a bug, reported as an internal error (exit 70) with the traceback in a file.
    """
    try:
        cli.main(args=argv, prog_name="llmscen", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(exitcodes.COULD_NOT_RUN)
    except LlmscenError as exc:
        click.echo(f"llmscen: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(exitcodes.COULD_NOT_RUN)
    except Exception as exc:
        sys.exit(internal_error(exc))
    sys.exit(exitcodes.OK)


def internal_error(exc: BaseException) -> int:
    """Say it is a bug, keep the traceback for the report, and return the exit code."""
    import tempfile
    import traceback

    with tempfile.NamedTemporaryFile("w", prefix="llmscen-crash-", suffix=".txt",
                                     delete=False) as f:
        f.write("".join(traceback.format_exception(exc)))
    click.echo(f"llmscen: internal error: {type(exc).__name__}: {exc}\n"
               f"This is a bug in llmscen or in a plugin; the traceback is in {f.name}",
               err=True)
    return exitcodes.INTERNAL_ERROR


if __name__ == "__main__":
    main()
