"""`llmscen run`: the library call of llmscen/driver/ with a live view, a summary and an exit."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from llmscen.cli import exitcodes
from llmscen.cli.failure import Failure
from llmscen.compile.plan import Plan
from llmscen.driver import run_plan
from llmscen.engine.registry import Registry
from llmscen.report.terminal import summary, verdict

# `--out FORMAT=FILE` (k6's habit): the formats llmscen writes, by the names people type.
OUT_FORMATS = {"json": "json", "results": "json", "junit": "junit", "xml": "junit",
               "html": "html", "report": "html", "summary": "summary", "markdown": "summary",
               "md": "summary"}
_FORMAT_PREFIX = re.compile(r"^([A-Za-z][\w-]*)=(.*)$")


@dataclass
class Outputs:
    """Where a run's files go: a folder, and any file placed elsewhere."""

    folder: str | None = None
    json: str | None = None
    junit: str | None = None
    html: str | None = None
    summary: str | None = None

    @classmethod
    def parse(cls, outs: Sequence[str], **files: str | None) -> Outputs:
        """`--out DIR` (at most once) and `--out FORMAT=FILE` (each format once), with the
        `--json/--junit/--html/--summary` flags; a clear error for anything else."""
        out = cls(**files)
        for value in outs:
            match = _FORMAT_PREFIX.match(value)
            if match is None:
                if out.folder is not None:
                    raise Failure(f"--out names two folders ({out.folder!r} and {value!r}); "
                                  "give one", exitcodes.INVALID_INPUT)
                out.folder = value
                continue
            word, path = match.group(1), match.group(2)
            kind = OUT_FORMATS.get(word.lower())
            if kind is None:
                raise Failure(
                    f"--out {value}: llmscen writes no {word!r} output. --out DIR is the "
                    f"output folder; --out FORMAT=FILE writes one file, FORMAT one of "
                    f"json, junit, html, summary (a folder whose name has '=' in it: "
                    f"--out ./{value})", exitcodes.INVALID_INPUT)
            if not path:
                raise Failure(f"--out {value}: name the file, e.g. --out {word}=r.{word}",
                              exitcodes.INVALID_INPUT)
            if getattr(out, kind) is not None and getattr(out, kind) != path:
                raise Failure(f"--out {value}: the {kind} file is already "
                              f"{getattr(out, kind)!r}", exitcodes.INVALID_INPUT)
            setattr(out, kind, path)
        return out


def run_command(plan: Plan, registry: Registry, outputs: Outputs, *, quiet: bool = False,
                verbose: int = 0, log_level: str = "warning", progress: str = "auto",
                workers: int = 1, log_path: str | None = None, csv_dir: str | None = None,
                prometheus: str | None = None, prometheus_hold: float = 0.0,
                cluster: Any = None) -> int:
    """Run, print what happened, return the exit code the outcome carries."""
    from llmscen.cli.progress import make_display
    from llmscen.driver.export import LiveExport

    export = None
    if prometheus:
        export = LiveExport(plan.name)
        address = export.serve(prometheus)
        click.echo(f"serving live metrics at http://{address}/metrics", err=True)
    display = make_display(plan, quiet=quiet, verbose=verbose, mode=progress,
                           log_level=log_level)
    try:
        done = run_plan(plan, registry, Path(outputs.folder) if outputs.folder else None,
                        workers=workers, log_path=log_path, display=display, cluster=cluster,
                        json_path=outputs.json, junit_path=outputs.junit,
                        html_path=outputs.html, summary_path=outputs.summary,
                        csv_dir=csv_dir, export=export)
    finally:
        display.close()
        if export is not None:
            time.sleep(prometheus_hold)    # a scrape after the last requests were counted
            export.close()
    display.finished(done.results)
    click.echo(summary(done.results))
    click.echo("")
    click.echo(verdict(done.results)[1])
    for path in done.written:
        click.echo(f"  wrote {path}")
    for message in done.write_errors:
        click.echo(f"llmscen: {message}", err=True)
    return done.exit_code
