"""Finding the limit: the largest load at which a set of objectives holds (a `search:` phase).

The search bisects the range [min, max] in log space (precision is relative,
so every halving of the ratio counts the same): each step tries the geometric
middle of the highest load known to pass and the lowest known to fail, until
they are within `precision` of each other. `min` and `max` are only bounds
until tried: when the answer comes near one of them, that end is tried too,
so "at least max" and "below min" are measured, not assumed. From [1, 200]
at 5 % that is 7 steps, plus at most 2 at the ends. The answer is the
highest load that passed — a lower bound — with the lowest that failed above
it, so "capacity 40/s (40–42/s)" says how close it is.

A step passes when its objectives (SLOs, judged on the step's own pooled HDR
data, never on averaged percentiles) all hold and the server kept up: a step
whose served rate falls short of the offered one by more than the tolerance
is *saturated* and counts as failed even if its objectives held, so a
capacity is never reported beyond a saturated step. A step in which the load
generator was the bottleneck ends the search: the client cannot say more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from llmscen.assertions.slo import evaluate_one, scope_text
from llmscen.compile.phases import derive_seed, expected_open
from llmscen.compile.plan import PhasePlan
from llmscen.driver.client import ClientFigures, judge_phase
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults, SearchStep


@dataclass(frozen=True)
class Step:
    value: float                  # the load tried: arrivals per second, or users
    passed: bool                  # objectives held and the server kept up
    saturated: bool               # the server did not keep up with the offered load
    served: float | None          # successful requests per second over the step
    offered: float | None         # arrivals per second asked (open searches)
    failed: tuple[str, ...] = ()  # the objectives that did not hold, as messages
    client_bound: bool = False    # the load generator, not the server, was the limit


@dataclass
class Search:
    low: float
    high: float
    precision: float              # relative: 0.05 for ±5 %
    max_steps: int
    integer: bool = False         # users come whole
    steps: list[Step] = field(default_factory=list)

    @property
    def best(self) -> float | None:
        """The highest load that passed."""
        passed = [s.value for s in self.steps if s.passed]
        return max(passed) if passed else None

    @property
    def ceiling(self) -> float | None:
        """The lowest load that failed above the best one."""
        best = self.best
        failed = [s.value for s in self.steps if not s.passed and (best is None or s.value > best)]
        return min(failed) if failed else None

    def _bounds(self) -> tuple[float, float]:
        best, ceiling = self.best, self.ceiling
        return (best if best is not None else self.low,
                ceiling if ceiling is not None else self.high)

    def _close(self, low: float, high: float) -> bool:
        if self.integer:
            return high - low <= 1
        return high - low <= self.precision * high

    def next(self) -> float | None:
        """The load of the next step, or None when the answer is known or the budget spent."""
        if any(s.client_bound for s in self.steps) or len(self.steps) >= self.max_steps:
            return None
        tried = {s.value for s in self.steps}
        low, high = self._bounds()
        if not self._close(low, high):
            value = self._round(math.sqrt(low * high))
            if value in (low, high):
                value = self._round((low + high) / 2)
            if value not in (low, high) and value not in tried:
                return value
        # close enough: make sure the ends it leans on were measured, not assumed
        if self.best is None and self.low not in tried:
            return self._round(self.low)
        if self.ceiling is None and self.high not in tried:
            return self._round(self.high)
        return None

    @property
    def converged(self) -> bool:
        low, high = self._bounds()
        return self._close(low, high) or self.best == self.high or \
            (self.best is None and self.low in {s.value for s in self.steps})

    def _round(self, value: float) -> float:
        if self.integer:
            return float(max(1, round(value)))
        return float(f"{value:.4g}")

    def knee(self) -> float | None:
        """The highest load the server still followed: served within the search's own
        `tolerance` of offered, as each step was judged (a fixed 5 % disagreed with a
        tolerance of 6 %: a step that passed was not the knee)."""
        kept = [s.value for s in self.steps if s.served is not None and s.offered and
                not s.saturated]
        return max(kept) if kept else None


def default_tolerance(precision: float) -> float:
    """How far served may fall short of offered: well inside the precision, above noise."""
    return max(0.01, precision / 5)


def saturated(offered: float | None, served: float | None, tolerance: float) -> bool:
    """The server did not keep up: it served less than the offered rate, past `tolerance`."""
    if offered is None or served is None or offered <= 0:
        return False
    return served < offered * (1 - tolerance)


# -- the steps of a search phase, as phases -------------------------------------------


def search_step(phase: PhasePlan, value: float, repeat: int) -> PhasePlan:
    """The phase that tries `value`: an open or closed phase of `step` seconds, named
    `search-value` (and `/2`, `/3` for repeats), part of the search as a sweep's steps are."""
    spec = phase.search
    assert spec is not None
    name = f"{phase.name}-{value:g}" + (f"/{repeat + 1}" if repeat else "")
    common = {"name": name, "duration": spec.step, "warmup": phase.warmup, "sweep": phase.name,
              "mix": phase.mix, "seed": derive_seed(phase.seed, value, repeat)}
    if spec.axis == "users":
        return PhasePlan(kind="closed", users=int(value), spawn_rate=phase.spawn_rate,
                         think_min=phase.think_min, think_max=phase.think_max, **common)
    plan = PhasePlan(kind="open", rate=value, arrival=phase.arrival, burstiness=phase.burstiness,
                     max_in_flight=phase.max_in_flight, **common)
    return plan.model_copy(update={"expected_requests": expected_open(plan)})


def judge_step(phase: PhasePlan, value: float, names: list[str], measured: RunResults,
               figures: list[ClientFigures]) -> SearchStep:
    """Did the step hold? Its objectives on its phases' pooled data, and the served rate."""
    spec = phase.search
    assert spec is not None
    view = measured.model_copy(update={
        "phases": [p for p in measured.phases if p.name in names],
        "scopes": [s for s in measured.scopes if s.phase in names]})
    step = f"step {' + '.join(names)}"
    failed = [r.message for r in (
        evaluate_one(o, view, where=step + (f", {scope_text(o)}" if o.request or o.target
                                            else "")) for o in spec.objectives)
        if not r.passed]
    agg = aggregate(view)
    # the rate the server kept up, over the step's own time: a step ends when its last
    # request has, so its wall time is the step, plus one service time when the server kept
    # up, plus the time to clear its backlog when it did not
    offered = value if spec.axis == "arrival_rate" else None
    fastest = agg.value("latency_sent", "min") or 0.0
    # n arrivals span (n - 1) gaps of 1/offered: count the last one's gap too
    busy = agg.wall_seconds - (fastest - (1 / offered if offered else 0.0)) * len(names)
    served = agg.counters.ok / busy if busy > 0 else agg.value("throughput")
    full = saturated(offered, served, spec.tolerance)
    bound = any(judge_phase(view, p, f, 0) is not None
                for p, f in zip(view.phases, figures, strict=False))
    return SearchStep(value=value, phases=names, passed=not failed and not full,
                      saturated=full, client_bound=bound, served=served, offered=offered,
                      latency_p95=agg.value("latency", "p95"), failed=failed)


def step_line(step: SearchStep, axis: str) -> str:
    unit = "/s" if axis == "arrival_rate" else " users"
    served = f", served {step.served:.4g}/s" if step.served is not None else ""
    verdict = "held" if step.passed else "saturated" if step.saturated else "failed"
    why = f" ({'; '.join(step.failed)})" if step.failed and not step.passed else ""
    return f"{step.value:g}{unit}: {verdict}{served}{why}"
