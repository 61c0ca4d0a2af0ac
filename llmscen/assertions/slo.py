"""SLO evaluation from saved results; the verdict of a run.

Works on a `RunResults` only, so `llmscen report --slos FILE` can re-judge a
saved run with other SLOs. A metric with nothing to measure (no requests in
scope) fails: an SLO that cannot be shown to hold does not pass.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Callable, Iterable

from llmscen.assertions.fit import evaluate_fit
from llmscen.compile.plan import SLOPlan
from llmscen.metrics import resources, server_histograms
from llmscen.metrics.query import WINDOW_METRICS, aggregate, windows
from llmscen.metrics.results import RunResults, ServerHistogram, SloResult, TargetInfo
from llmscen.spec.metrics import percentile_of, resource_metric, split_key
from llmscen.spec.units import format_duration, show

OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq,
}


def scope_text(slo: SLOPlan) -> str:
    parts = [f"{k} {v}" for k, v in (("phase", slo.phase), ("request", slo.request),
                                     ("target", slo.target)) if v]
    if slo.window:
        parts.append(f"every {format_duration(slo.window)} window")
    return ", ".join(parts) or "whole run (warmup excluded)"


def evaluate(slos: Iterable[SLOPlan], results: RunResults) -> list[SloResult]:
    return [evaluate_one(slo, results) for slo in slos]


def evaluate_one(slo: SLOPlan, results: RunResults, *, until: float | None = None,
                 where: str | None = None) -> SloResult:
    """Judge one SLO on `results`; `until` (seconds) limits a window SLO to the windows
    that ended by then (the driver judges `abort: true` SLOs while the run goes on);
    `where` names the scope in messages when `results` is already a part of the run (a
    search step)."""
    if slo.fit is not None:
        return evaluate_fit(slo, results)
    test = OPS[slo.op]
    scope = {"phase": slo.phase, "request": slo.request, "target": slo.target,
             "window": slo.window}
    base = SloResult(text=slo.text, metric=slo.metric, stat=slo.stat, op=slo.op, scope=scope,
                     threshold=slo.threshold, passed=False, abort=slo.abort, where=slo.where)
    name = f"{slo.metric}.{slo.stat}" if slo.stat else slo.metric
    # the threshold as the user wrote it (50/min stays 50/min)
    written = slo.text.split(slo.op, 1)[-1].strip() if slo.op in slo.text else ""
    limit = f"{slo.op} {written or show(slo.metric, slo.threshold, slo.stat)}"
    if slo.metric == "capacity":
        return _capacity(slo, results, base, name, limit)
    if resource_metric(slo.metric) is not None:
        return _sampled(slo, results, base, name, limit)
    if slo.window:
        if slo.metric not in WINDOW_METRICS:
            return base.model_copy(update={"message": f"{slo.metric} is not kept per second; "
                                           f"window SLOs take: {', '.join(sorted(WINDOW_METRICS))}"})
        worst: tuple[float, float] | None = None
        count = 0
        for window in windows(results, slo.window, slo.phase, slo.request, slo.target):
            if until is not None and window.end > until:
                break
            value = window.aggregate.value(slo.metric, slo.stat)
            if value is None:
                continue
            count += 1
            if not test(value, slo.threshold) and worst is None:
                worst = (window.start, value)
        if count == 0:
            return base.model_copy(update={"message": f"{name}: no window had data"})
        if worst is not None:
            start, value = worst
            return base.model_copy(update={
                "measured": value, "window_start": start,
                "message": f"{name} was {show(slo.metric, value, slo.stat)} in the "
                f"window starting at {start:g}s, expected {limit} in every "
                f"{format_duration(slo.window)} window ({count} windows)"})
        return base.model_copy(update={"passed": True, "message": f"{name} held {limit} in "
                                       f"all {count} windows"})
    agg = aggregate(results, slo.phase, slo.request, slo.target)
    value = agg.value(slo.metric, slo.stat)
    if value is None:
        return base.model_copy(update={"message": f"{name}: nothing was measured in scope "
                                       f"({where or scope_text(slo)})"})
    passed = test(value, slo.threshold)
    verdict = "ok" if passed else "FAILED"
    return base.model_copy(update={
        "measured": value, "passed": passed,
        "message": f"{name} = {show(slo.metric, value, slo.stat)}, expected {limit} "
                   f"[{where or scope_text(slo)}] {verdict}"})


def _sampled(slo: SLOPlan, results: RunResults, base: SloResult, name: str,
             limit: str) -> SloResult:
    """A resource metric: a stat over its per-second samples in the phases in scope."""
    assert slo.stat is not None, "the grammar requires a stat of a sampled metric"
    server = slo.metric.startswith("server.")
    if server and slo.stat != "increase":
        h = server_histograms.in_scope(results, slo.metric.removeprefix("server."), slo.phase,
                                       slo.target)
        if h is not None:
            return _histogram(slo, h, base, name, limit)
    if slo.stat == "increase":
        value, why = resources.server_increase(results, slo.metric, slo.phase, slo.target)
        how = "from the scrapes at each phase's start and end"
    else:
        values = resources.samples(results, slo.metric, slo.phase, slo.target)
        value = resources.stat(values, slo.stat)
        why = results.resources.unavailable.get(resources.source(slo.metric)) or (
            resources.exposed_hint(results, slo.metric.removeprefix("server.").split("{")[0])
            if server else f"nothing was sampled in scope ({scope_text(slo)})")
        how = f"{len(values)} samples"
    if value is None:
        return base.model_copy(update={"message": f"{name}: {why}"})
    passed = OPS[slo.op](value, slo.threshold)
    return base.model_copy(update={
        "measured": value, "passed": passed,
        "message": f"{name} = {show(slo.metric, value, slo.stat)}, expected {limit} "
                   f"[{scope_text(slo)}; {how}] {'ok' if passed else 'FAILED'}"})


def _histogram(slo: SLOPlan, h: ServerHistogram, base: SloResult, name: str,
               limit: str) -> SloResult:
    """A server histogram's phase distribution: its mean (exact) or a percentile estimated
    from its buckets, whose bucket is its precision."""
    assert slo.stat is not None
    rank = percentile_of(slo.stat) if slo.stat not in ("min", "max", "mean") else None
    if slo.stat == "mean":
        value, how = (h.sum / h.count if h.count else None), "exact"
    elif rank is not None:
        found = server_histograms.quantile(h, rank / 100)
        value = found[0] if found else None
        how = f"estimated from the buckets: it lies in {found[1]:g}–{found[2]:g}" if found \
            else ""
    else:
        return base.model_copy(update={"message": f"{name}: a server histogram keeps buckets, "
                                       "not its extremes: use mean or pNN"})
    if value is None:
        return base.model_copy(update={"message": f"{name}: the server observed nothing in "
                                       f"scope ({scope_text(slo)})"})
    passed = OPS[slo.op](value, slo.threshold)
    return base.model_copy(update={
        "measured": value, "passed": passed,
        "message": f"{name} = {show(slo.metric, value, slo.stat)}, expected {limit} "
                   f"[{scope_text(slo)}; the server's histogram, {h.count:,.0f} observations, "
                   f"{how}] {'ok' if passed else 'FAILED'}"})


def unknown_server_metrics(slos: Iterable[SLOPlan], targets: Iterable[TargetInfo]) -> list[str]:
    """`server.NAME` SLOs whose NAME no target in their scope exposed before traffic, as
    `FILE:LINE:COL: message`; [] when all are there (or no target could be read)."""
    exposed = {t.name: set(t.metrics) for t in targets}
    if not any(exposed.values()):
        return []       # nothing listed: judged after the run, where a message says so
    out = []
    for slo in slos:
        if not slo.metric.startswith("server."):
            continue
        name = split_key(slo.metric.removeprefix("server."))[0]
        scope = [slo.target] if slo.target else list(exposed)
        known = set().union(*(exposed.get(t, set()) for t in scope))
        if name in known:
            continue
        where = f" of target {slo.target!r}" if slo.target else ""
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]}?" if near else ""
        out.append(f"{slo.where}: unknown server metric {name!r}: the server{where} does not "
                   f"expose it{hint} (it exposes {len(known)} names; `llmscen run` lists "
                   "them in results.json under meta.targets[].metrics)")
    return out


def _capacity(slo: SLOPlan, results: RunResults, base: SloResult, name: str,
              limit: str) -> SloResult:
    """`capacity` is what a `search:` phase found: the one named by `phase:`, or the only one."""
    found = [s for s in results.search if slo.phase in (None, s.phase)]
    if not found:
        return base.model_copy(update={"message": f"{name}: no search phase "
                                       f"{'named ' + repr(slo.phase) + ' ' if slo.phase else ''}"
                                       "ran (capacity comes from a `search:` phase)"})
    search = found[-1]
    if search.capacity is None:
        return base.model_copy(update={"measured": 0.0, "message": (
            f"{name}: even the minimum load tried in phase {search.phase!r} failed its "
            f"objectives, expected {limit}")})
    value = search.capacity
    passed = OPS[slo.op](value, slo.threshold)
    unit = "" if search.axis == "users" else "/s"
    bound = f"–{search.ceiling:.4g}{unit}" if search.ceiling is not None else "+ (held at max)"
    return base.model_copy(update={
        "measured": value, "passed": passed,
        "message": (f"{name} = {value:.4g}{unit} ({value:.4g}{bound}), expected {limit} "
                    f"[search {search.phase}] {'ok' if passed else 'FAILED'}")})


__all__ = ["OPS", "evaluate", "evaluate_one", "scope_text", "show"]
