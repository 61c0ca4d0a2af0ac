"""`llmscen report` and `llmscen compare`: work on saved results files, offline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from llmscen.assertions.slo import evaluate
from llmscen.cli import exitcodes
from llmscen.cli.failure import Failure
from llmscen.compile.plan import SLOPlan
from llmscen.compile.slo import compile_slos, sweep_points
from llmscen.metrics import resources
from llmscen.metrics.results import ResultsError, RunResults
from llmscen.spec.diagnostics import ScenarioError
from llmscen.spec.loader import read_document


def fail(message: str, code: int = exitcodes.INVALID_INPUT) -> NoReturn:
    raise Failure(message, code)


def load_results(path: str) -> RunResults:
    """A user's results file, read and checked (metrics/checks.py); exit 2 when unsound."""
    from llmscen.metrics.checks import check_results

    try:
        results = RunResults.load(path)
        check_results(results, path)
    except ResultsError as exc:
        fail(str(exc))
    return results


def scope_names(results: RunResults) -> dict[str, set[str]]:
    """The phases, requests and targets an SLO may name for these results."""
    requests = {s.request for s in results.scopes}
    # a flow's steps are saved as `flow.step`; naming the flow selects all of them
    flows = {r.rsplit(".", i)[0] for r in requests for i in range(1, r.count(".") + 1)}
    return {
        "phase": {p.name for p in results.phases} | {p.sweep for p in results.phases if p.sweep},
        "request": requests | flows,
        "target": {t.name for t in results.meta.targets} | {s.target for s in results.scopes},
    }


def load_slos(path: str, results: RunResults) -> list[SLOPlan]:
    """The `slos:` list of a YAML file (a scenario will do), checked against `results`
    exactly as a scenario's SLOs are; the rest of the file is not looked at."""
    doc = read_document(path, what="SLO file")
    raw = doc.data.get("slos") if isinstance(doc.data, dict) else None
    if not isinstance(raw, list):
        at: tuple[str, ...] = ("slos",) if isinstance(doc.data, dict) and "slos" in doc.data \
            else ()
        raise ScenarioError([doc.diagnostic(at, "expected an `slos:` list, e.g.\n"
                                                   "slos:\n  - latency.p95 < 5s")])
    services = {n.split(".")[1] for n in resources.names(results) if n.startswith("service.")}
    plans, problems = compile_slos(doc, scope_names(results), known="these results have",
                                   services=services, sweeps=sweep_points(results.phases))
    problems = [*doc.diagnostics(("slos",)), *problems]
    if problems:
        raise ScenarioError(problems)
    return plans


@click.command()
@click.argument("results_path", metavar="RESULTS.json", type=click.Path(dir_okay=False))
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="HTML report path [default: report.html next to RESULTS.json when no "
                   "output is named]")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), help="JUnit XML path")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False),
              help="Append a Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")
@click.option("--slos", "slos_path", type=click.Path(dir_okay=False),
              help="Judge with the `slos:` list of this YAML file (a scenario will do) "
                   "instead of the saved verdicts")
@click.option("--csv", "csv_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Write the per-second series and per-scope figures as CSV files")
def report(results_path: str, html_path: str | None, junit_path: str | None,
           summary_path: str | None, slos_path: str | None, csv_dir: str | None) -> None:
    """Re-render reports from a saved RESULTS.json, offline.

    Exits with the run's own exit code (0 passed, 1 failed, 3 could not run or
    interrupted, 4 invalid measurement), re-judged when --slos is given; 2 on
    invalid input.
    """
    from llmscen.assertions.verdict import conclude, run_reasons
    from llmscen.report.csv_export import write_csv
    from llmscen.report.html import write_html
    from llmscen.report.junit import write_junit
    from llmscen.report.markdown import write_summary
    from llmscen.report.terminal import summary, verdict

    results = load_results(results_path)
    if slos_path is not None:
        try:
            results.slos = evaluate(load_slos(slos_path, results), results)
        except ScenarioError as exc:
            count = len(exc.diagnostics)
            fail(f"{exc}\n{count} problem{'s' if count != 1 else ''} in the SLO file")
    if slos_path is not None or results.outcome is None:
        conclude(results, run_reasons(results))
    if not (html_path or junit_path or summary_path or csv_dir):
        html_path = str(Path(results_path).with_name("report.html"))
    written = []
    try:
        for path, write in ((html_path, write_html), (junit_path, write_junit),
                            (summary_path, write_summary)):
            if path:
                write(results, path)
                written.append(path)
        if csv_dir:
            written += [str(p) for p in write_csv(results, csv_dir)]
    except OSError as exc:
        fail(f"cannot write {exc.filename}: {exc.strerror}")
    click.echo(summary(results))
    click.echo("")
    click.echo(verdict(results)[1])
    for path in written:
        click.echo(f"  wrote {path}")
    assert results.outcome is not None
    sys.exit(results.outcome.exit_code)


def _bound(ctx: click.Context, param: click.Parameter, value: str) -> float:
    """`10%` or `0.1`; above 100% is allowed (`200%`: up to three times worse)."""
    text = value.strip()
    try:
        bound = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise click.BadParameter(f"expected a percentage such as 10% or 0.1, got {value!r}") \
            from None
    if not bound >= 0 or bound == float("inf"):
        raise click.BadParameter(f"must be a finite percentage >= 0, got {value!r}")
    return bound


def _alpha(ctx: click.Context, param: click.Parameter, value: str) -> float:
    """`5%` or `0.05`, strictly between 0 and 1."""
    text = value.strip()
    try:
        alpha = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise click.BadParameter(f"expected a level such as 5% or 0.05, got {value!r}") from None
    if not 0 < alpha < 1:
        raise click.BadParameter(f"must lie between 0% and 100%, got {value!r}")
    return alpha


def _split_runs(files: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """`BASE NEW`, or `BASE... --against NEW...`."""
    for f in files:
        if f.startswith("-") and f != "--against":
            raise click.NoSuchOption(f.split("=", 1)[0])
    if "--against" in files:
        at = files.index("--against")
        bases, news = list(files[:at]), list(files[at + 1:])
        if "--against" in news:
            raise click.UsageError("give --against once: BASE.json... --against NEW.json...")
        if not bases or not news:
            raise click.UsageError("name at least one run on each side: "
                                   "BASE.json... --against NEW.json...")
        return bases, news
    if len(files) != 2:
        raise click.UsageError("give two runs (BASE.json NEW.json), or several on each side: "
                               "BASE.json... --against NEW.json...")
    return [files[0]], [files[1]]


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("files", nargs=-1, required=True, metavar="BASE.json... [--against] NEW.json...")
@click.option("--max-regression", default="10%", show_default=True, callback=_bound,
              help="Largest change for the worse allowed, relative to BASE (10% or 0.1); "
                   "a regression must also be significant")
@click.option("--alpha", default="5%", show_default=True, callback=_alpha,
              help="Significance level, over all values compared together (Holm)")
@click.option("--min-samples", default=30, show_default=True, type=click.IntRange(min=2),
              help="Fewest requests a side needs to judge a value (more for high percentiles)")
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="Also write the comparison as HTML")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False),
              help="Also write it as Markdown for a pull-request comment")
def compare(files: tuple[str, ...], max_regression: float, alpha: float, min_samples: int,
            html_path: str | None, markdown_path: str | None) -> None:
    """Compare NEW runs with BASE runs: latency, TTFT, ITL, TPOT, throughput, errors.

    Two files (BASE.json NEW.json), or repeated runs of each side:
    BASE1.json BASE2.json --against NEW1.json NEW2.json. Overall, per phase
    and per request. A value regressed when it got worse by more than
    --max-regression and a statistical test says it is not noise; values with
    too few samples are reported as not enough data.

    Exits 1 on a regression, 2 on invalid input, 3 when no value had enough
    data to judge, else 0.
    """
    from llmscen.report.compare import compare as compare_runs
    from llmscen.report.compare_view import (
        terminal_table,
        verdict_line,
        write_compare_html,
        write_compare_markdown,
    )

    base_paths, new_paths = _split_runs(files)
    bases = [load_results(p) for p in base_paths]
    news = [load_results(p) for p in new_paths]
    comparison = compare_runs(bases, news, max_regression, alpha=alpha, min_samples=min_samples,
                              base_files=base_paths, new_files=new_paths)
    written = []
    for path, write in ((html_path, write_compare_html), (markdown_path, write_compare_markdown)):
        if path:
            try:
                write(comparison, path)
            except OSError as exc:
                fail(f"cannot write {exc.filename}: {exc.strerror}")
            written.append(path)
    click.echo(terminal_table(comparison))
    click.echo("")
    click.echo(verdict_line(comparison))
    for path in written:
        click.echo(f"  wrote {path}")
    if comparison.regressions:
        sys.exit(exitcodes.ASSERTIONS_FAILED)
    sys.exit(exitcodes.OK if comparison.judged else exitcodes.COULD_NOT_RUN)
