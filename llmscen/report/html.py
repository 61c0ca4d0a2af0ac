"""The HTML report: one self-contained file rendered from saved results.

Jinja2 with autoescape on: model output, error messages and names are
untrusted text. The page fetches nothing (styles inline, charts as inline SVG)
and its Content-Security-Policy forbids fetching anything and every script but
our own small one, so even a slip in escaping could not run injected code.
That script only adds to a page that reads whole without it: legend toggles,
zoom on the time charts, the choice of scope (whole run, request, target).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

import llmscen
from llmscen.metrics.results import RunResults
from llmscen.report import charts, view
from llmscen.report.errors import error_groups
from llmscen.report.fit_view import fit_views
from llmscen.report.reconcile import cells, reconciliation
from llmscen.report.replay_view import replay_views
from llmscen.report.resources import resource_table
from llmscen.report.search_view import search_views
from llmscen.report.svg import format_clock


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("llmscen.report", "templates"),
        autoescape=True, trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined)
    env.filters["clock"] = format_clock
    env.filters["utc"] = _utc
    return env


def _utc(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "–"


def page_context(env: jinja2.Environment) -> dict[str, Any]:
    """What every page shares: styles, the script and the policy that allows only it."""
    loader = env.loader
    assert loader is not None
    css = loader.get_source(env, "report.css")[0]
    script = loader.get_source(env, "report.js")[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
              f"script-src 'sha256-{digest}'; form-action 'none'; base-uri 'none'")
    return {"css": Markup(css), "script": Markup(script), "policy": policy, "version": llmscen.__version__,
            "generated": dt.datetime.now(dt.timezone.utc)}


def render_html(results: RunResults) -> str:
    env = environment()
    rows = view.scopes(results)
    tables = view.metric_tables(rows)
    cases = view.case_rows(results)
    return env.get_template("report.html.j2").render(
        **page_context(env),
        r=results, meta=results.meta,
        verdict=view.verdict_of(results),
        reasons=view.reasons(results), detail=view.verdict_detail(results),
        cases=cases, case_summary=view.case_counts(cases),
        errors=error_groups(results),
        client=view.client_text(results), server_text=view.server_text,
        figures=view.key_figures(results),
        duration=view.run_duration(results),
        slos=view.slo_rows(results),
        failed_checks=[c for c in results.checks if c.failed],
        counters=view.counters_table(rows),
        key_tables=[t for t in tables if t.key in view.KEY_METRICS],
        more_tables=[t for t in tables if t.key not in view.KEY_METRICS],
        chart_sets=charts.time_chart_sets(results),
        distribution_charts=charts.distribution_charts(results),
        server=view.server_tables(results), server_label=view.server_label,
        resources=resource_table(results), unavailable=results.resources.unavailable,
        reconcile=cells(reconciliation(results)),
        searches=search_views(results), fits=fit_views(results),
        replays=replay_views(results),
    )


def write_html(results: RunResults, path: str | Path) -> None:
    Path(path).write_text(render_html(results), encoding="utf-8")
