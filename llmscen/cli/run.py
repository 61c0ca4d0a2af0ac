"""`llmscen run`: the library call of llmscen/driver/ with a live line, a summary and an exit."""

from __future__ import annotations

from pathlib import Path

import click

from llmscen.compile.plan import Plan
from llmscen.driver import run_plan
from llmscen.engine.registry import Registry
from llmscen.report.terminal import summary, verdict


def run_command(plan: Plan, registry: Registry, *, out: str | None, json_path: str | None,
                junit_path: str | None, html_path: str | None, summary_path: str | None,
                quiet: bool, workers: int, log_path: str | None = None) -> int:
    """Run, print what happened, return the exit code the outcome carries."""
    from llmscen.cli.progress import Progress

    display = Progress(quiet=quiet)
    done = run_plan(plan, registry, Path(out) if out else None, workers=workers,
                    log_path=log_path, display=display, json_path=json_path,
                    junit_path=junit_path, html_path=html_path, summary_path=summary_path)
    display.finished(done.results)
    click.echo(summary(done.results))
    click.echo("")
    click.echo(verdict(done.results)[1])
    for path in done.written:
        click.echo(f"  wrote {path}")
    for message in done.write_errors:
        click.echo(f"llmscen: {message}", err=True)
    return done.exit_code
