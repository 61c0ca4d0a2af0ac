"""Saved runs side by side: did NEW get worse than BASE, beyond noise and beyond a bound?

Each side is one or more runs of the same scenario. Per metric and scope a
value is a **regression** when it moved the bad way (higher latency or error
rate, lower throughput) by more than the bound, relative to BASE, *and* a
statistical test says the move is not noise (`significance`: bootstrap over
runs, requests and per-second windows; Fisher's exact test for errors;
Holm-adjusted over every value compared). A value with fewer samples than a
test needs is "not enough data", never a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from llmscen.metrics.histogram import Histogram
from llmscen.metrics.query import Aggregate, aggregate, windows
from llmscen.metrics.results import Counters, Meta, RunResults
from llmscen.report import significance as sig
from llmscen.report.comparable import scenario_warnings
from llmscen.spec.metrics import CATALOG, percentile_of

COMPARED: tuple[tuple[str, str | None], ...] = (
    *((m, s) for m in ("latency", "ttft", "itl", "tpot") for s in ("p50", "p95", "p99")),
    ("throughput", None), ("output_token_throughput", None), ("error_rate", None),
)
HIGHER_IS_BETTER = frozenset({"throughput", "output_token_throughput", "goodput", "success_rate"})
MIN_SAMPLES = 30      # requests per side, at least
MIN_WINDOWS = 5       # one-second windows per side for a rate
TAIL = 5              # requests beyond a percentile, at least: p95 needs 100, p99 500


@dataclass(frozen=True)
class Delta:
    scope: str                 # overall | phase NAME | request NAME
    metric: str
    stat: str | None
    base: float | None
    new: float | None
    change: float | None       # (new - base) / base; ±inf when base is 0
    worse: bool                # moved the bad way
    beyond: bool               # ... by more than the bound
    regression: bool = False   # beyond the bound and significant
    significant: bool = False
    p: float | None = None     # Holm-adjusted, two-sided; None: not tested
    low: float | None = None   # 95% interval of the change, relative to BASE
    high: float | None = None
    n_base: int = 0            # samples: requests, or one-second windows for rates
    n_new: int = 0
    enough: bool = True        # both sides have the samples a test needs
    needs: str = ""            # what a side needs, e.g. "100 requests"

    @property
    def name(self) -> str:
        return f"{self.metric}.{self.stat}" if self.stat else self.metric

    @property
    def measured(self) -> bool:
        return self.base is not None and self.new is not None

    @property
    def improved(self) -> bool:
        return self.significant and bool(self.change) and not self.worse

    @property
    def verdict(self) -> str:
        if not self.measured:
            return ""
        if not self.enough:
            return "not enough data"
        if self.regression:
            return "REGRESSED"
        if self.significant and self.worse:
            return "worse, within bound"
        if self.beyond:
            return "worse, not significant"
        return "better" if self.improved else ""


@dataclass
class Comparison:
    bases: list[Meta]
    news: list[Meta]
    max_regression: float
    alpha: float = 0.05
    min_samples: int = MIN_SAMPLES
    base_files: list[str] = field(default_factory=list)
    new_files: list[str] = field(default_factory=list)
    deltas: list[Delta] = field(default_factory=list)
    only_base: list[str] = field(default_factory=list)   # scopes missing from NEW
    only_new: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    same_as: dict[str, str] = field(default_factory=dict)   # scope → an earlier one, same data
    tests: int = 0             # distinct tests, the family Holm adjusts over

    @property
    def distinct(self) -> list[Delta]:
        """The values, each scope that repeats another's data left out."""
        return [d for d in self.deltas if d.scope not in self.same_as]

    @property
    def regressions(self) -> list[Delta]:
        return [d for d in self.distinct if d.regression]

    @property
    def judged(self) -> list[Delta]:
        return [d for d in self.distinct if d.measured and d.enough]

    @property
    def too_little(self) -> list[Delta]:
        return [d for d in self.distinct if d.measured and not d.enough]

    def scopes(self) -> list[str]:
        return list(dict.fromkeys(d.scope for d in self.deltas))


def relative_change(base: float | None, new: float | None) -> float | None:
    if base is None or new is None:
        return None
    if base == 0:
        return 0.0 if new == 0 else math.copysign(math.inf, new)
    return (new - base) / abs(base)


def delta(scope: str, metric: str, stat: str | None, base: float | None, new: float | None,
          bound: float) -> Delta:
    """The practical part: how far and which way it moved, and whether past the bound."""
    change = relative_change(base, new)
    worse = change is not None and (change < 0 if metric in HIGHER_IS_BETTER else change > 0)
    # a hair of slack so 1.0 → 1.1 is not "more than 10%" by float rounding
    beyond = worse and change is not None and abs(change) > bound + 1e-9
    return Delta(scope, metric, stat, base, new, change, worse, beyond)


def needed(metric: str, stat: str | None, min_samples: int) -> int:
    """Samples per side a value needs: requests, or one-second windows for a rate."""
    p = percentile_of(stat) if stat else None
    if p is not None:
        return max(min_samples, math.ceil(TAIL / (1 - p / 100)) if p < 100 else min_samples)
    return MIN_WINDOWS if CATALOG[metric].kind == "rate" else min_samples


class _Side:
    """One side's runs, restricted to a scope: per-run aggregates and their pool."""

    def __init__(self, runs: Sequence[RunResults], phase: str | None, request: str | None):
        self.runs = runs
        self.phase, self.request = phase, request
        self.aggregates = [aggregate(r, phase=phase, request=request) for r in runs]
        counters = Counters()
        for a in self.aggregates:
            counters.add(a.counters)
        self.totals = Aggregate(counters, {}, sum(a.wall_seconds for a in self.aggregates))
        self._empirical: dict[str, list[sig.Empirical]] = {}
        self._pools: dict[str, sig.Pool | None] = {}
        self._estimates: dict[str, dict[float, sig.Estimate]] = {}
        self._windows: list[list[tuple[float, float, float]]] | None = None

    @property
    def fingerprint(self) -> tuple[object, ...]:
        """Equal for two scopes that select the same data (e.g. the only phase and overall)."""
        return tuple((a.counters.model_dump_json(), a.wall_seconds) for a in self.aggregates)

    def value(self, metric: str, stat: str | None) -> float | None:
        """The runs pooled: percentiles of all their values, rates over all their time."""
        if stat is None:
            return self.totals.value(metric)
        p = percentile_of(stat)
        if metric not in self._pools:
            runs = self.empirical(metric)
            self._pools[metric] = sig.Pool(runs) if any(r.values for r in runs) else None
        pool = self._pools[metric]
        if pool is None or p is None:
            return None
        value = pool.percentile(p)
        return value / 1e6 if CATALOG[metric].kind == "duration" else float(value)

    def empirical(self, metric: str) -> list[sig.Empirical]:
        if metric not in self._empirical:
            out = []
            for a in self.aggregates:
                h = a.histogram(metric)
                if h is not None:
                    units = _requests_behind(a) if metric == "itl" else None
                    out.append(sig.Empirical.decode(h.encode(), units))
            self._empirical[metric] = out
        return self._empirical[metric]

    def estimates(self, metric: str, min_samples: int) -> dict[float, sig.Estimate]:
        """The percentiles compared of `metric` that this side has the requests for."""
        if metric not in self._estimates:
            runs = self.empirical(metric)
            n = sum(r.units for r in runs)
            wanted = [percentile_of(s) for m, s in COMPARED
                      if m == metric and s and needed(m, s, min_samples) <= n]
            self._estimates[metric] = sig.percentile_estimates(
                runs, [p for p in wanted if p is not None])
        return self._estimates[metric]

    def windows(self) -> list[list[tuple[float, float, float]]]:
        """Per run: (completions, output tokens, seconds) of each one-second window."""
        if self._windows is None:
            self._windows = [[(w.aggregate.counters.ok, w.aggregate.counters.output_tokens,
                               w.aggregate.wall_seconds)
                              for w in windows(r, 1, phase=self.phase, request=self.request)]
                             for r in self.runs]
        return self._windows


def _requests_behind(a: Aggregate) -> int:
    """Requests that gave ITL gaps: those with a TPOT (two chunks or more)."""
    for metric in ("tpot", "ttft", "latency"):
        h: Histogram | None = a.histogram(metric)
        if h is not None:
            return h.count
    return a.counters.ok


@dataclass
class _Outcome:
    n_base: int
    n_new: int
    needs: str
    test: sig.Test | None = None    # None: too little data to test


def _test(metric: str, stat: str | None, base: _Side, new: _Side, min_samples: int
          ) -> _Outcome:
    kind = CATALOG[metric].kind
    needs = needed(metric, stat, min_samples)
    if metric == "error_rate":
        a, b = base.totals.counters, new.totals.counters
        outcome = _Outcome(a.requests, b.requests, f"{needs} requests")
        if min(a.requests, b.requests) >= needs:
            outcome.test = sig.fisher_test(a.error_total, a.requests, b.error_total, b.requests)
        return outcome
    base_value, new_value = base.value(metric, stat), new.value(metric, stat)
    if base_value is None or new_value is None:
        return _Outcome(0, 0, "")
    if kind == "rate":
        column = 0 if metric == "throughput" else 1
        sides = [[sig.Windows(tuple(w[column] for w in run), tuple(w[2] for w in run))
                  for run in side.windows()] for side in (base, new)]
        n = [sum(len(w.amounts) for w in runs) for runs in sides]
        outcome = _Outcome(n[0], n[1], f"{needs} seconds and {min_samples} requests")
        requests = [side.totals.counters.requests for side in (base, new)]
        if min(n) >= needs and min(requests) >= min_samples:
            outcome.test = sig.difference_test(sig.rate_estimate(base_value, sides[0]),
                                               sig.rate_estimate(new_value, sides[1]))
        return outcome
    p = percentile_of(stat or "")
    n = [sum(r.units for r in side.empirical(metric)) for side in (base, new)]
    outcome = _Outcome(n[0], n[1], f"{needs} requests")
    if p is None or min(n) < needs:
        return outcome
    estimates = [_in_seconds(side.estimates(metric, min_samples)[p], kind) for side in (base, new)]
    outcome.test = sig.difference_test(*estimates)
    return outcome


def _in_seconds(estimate: sig.Estimate, kind: str) -> sig.Estimate:
    """HDR holds durations in µs; values are compared in seconds."""
    if kind != "duration":
        return estimate
    return sig.Estimate(estimate.value / 1e6, estimate.within / 1e12,
                        tuple(v / 1e6 for v in estimate.runs))


def _names(results: RunResults) -> tuple[list[str], list[str]]:
    phases = [p.name for p in results.phases if p.kind != "pause"]
    requests = list(dict.fromkeys(s.request for s in results.scopes))
    return phases, requests


def _common(runs: Sequence[RunResults]) -> tuple[list[str], list[str]]:
    """Phases and requests every run has, in the first run's order."""
    names = [_names(r) for r in runs]
    phases = [n for n in names[0][0] if all(n in other[0] for other in names)]
    requests = [n for n in names[0][1] if all(n in other[1] for other in names)]
    return phases, requests


def compare(bases: RunResults | Sequence[RunResults], news: RunResults | Sequence[RunResults],
            max_regression: float, *, alpha: float = 0.05, min_samples: int = MIN_SAMPLES,
            base_files: Sequence[str] = (), new_files: Sequence[str] = ()
            ) -> Comparison:
    """Compare NEW runs with BASE runs (one run each, or several of the same scenario)."""
    base_runs = [bases] if isinstance(bases, RunResults) else list(bases)
    new_runs = [news] if isinstance(news, RunResults) else list(news)
    out = Comparison([r.meta for r in base_runs], [r.meta for r in new_runs], max_regression,
                     alpha, min_samples, list(base_files), list(new_files))
    out.warnings = scenario_warnings(base_runs, new_runs, out.base_files, out.new_files)
    base_phases, base_requests = _common(base_runs)
    new_phases, new_requests = _common(new_runs)
    scopes: list[tuple[str, str | None, str | None]] = [("overall", None, None)]
    scopes += [(f"phase {n}", n, None) for n in base_phases if n in new_phases]
    scopes += [(f"request {n}", None, n) for n in base_requests if n in new_requests]
    for kind, mine, theirs in (("phase", base_phases, new_phases),
                               ("request", base_requests, new_requests)):
        out.only_base += [f"{kind} {n}" for n in mine if n not in theirs]
        out.only_new += [f"{kind} {n}" for n in theirs if n not in mine]

    drafts: list[tuple[Delta, tuple[object, ...]]] = []
    tested: dict[tuple[object, ...], _Outcome] = {}
    sides: dict[tuple[object, ...], tuple[str, _Side, _Side]] = {}
    for label, phase, request in scopes:
        base, new = _Side(base_runs, phase, request), _Side(new_runs, phase, request)
        fingerprint = (base.fingerprint, new.fingerprint)
        first, base, new = sides.setdefault(fingerprint, (label, base, new))
        if first != label:   # the same data as an earlier scope: reuse its work
            out.same_as[label] = first
        for metric, stat in COMPARED:
            d = delta(label, metric, stat, base.value(metric, stat), new.value(metric, stat),
                      max_regression)
            key: tuple[object, ...] = (*fingerprint, metric, stat)   # same data: tested once
            if key not in tested:
                tested[key] = _test(metric, stat, base, new, min_samples)
            drafts.append((d, key))

    keys = [k for k, o in tested.items() if o.test is not None]
    out.tests = len(keys)
    adjusted = dict(zip(keys, sig.holm([_p(tested[k]) for k in keys]), strict=True))
    for d, key in drafts:
        outcome = tested[key]
        d = replace(d, n_base=outcome.n_base, n_new=outcome.n_new, needs=outcome.needs,
                    enough=outcome.test is not None)
        test = outcome.test
        if test is not None and d.measured:
            p = adjusted[key]
            low = high = None
            if d.base and test.low is not None and test.high is not None:
                low, high = test.low / abs(d.base), test.high / abs(d.base)
            d = replace(d, p=p, significant=p < alpha, low=low, high=high,
                        regression=d.beyond and p < alpha)
        out.deltas.append(d)
    return out


def _p(outcome: _Outcome) -> float:
    assert outcome.test is not None
    return outcome.test.p
