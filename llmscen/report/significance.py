"""Is a change more than noise? Tests on saved HDR data for `llmscen compare`.

A side of a comparison is one or more runs; its value (a percentile, a rate)
is computed from all of them pooled. Two things make it uncertain, and the
test takes whichever is larger:

- **sampling within the runs**, by bootstrap of the pooled data: a percentile
  is redrawn from the pooled HDR histogram by the order statistic (the k-th
  smallest of n draws from F is F⁻¹(U) with U ~ Beta(k, n + 1 − k): one
  Beta draw and one bisection per replicate). n is the number of requests
  behind the values — for ITL, where one request gives many correlated gaps,
  the requests, not the gaps. A rate is redrawn from the per-second windows;
- **run-to-run variation**, when a side has several runs: the spread of the
  runs' own values (pooled over both sides, so 3 + 3 runs give 4 degrees of
  freedom). Then the test is Student's t on those degrees of freedom: a few
  runs tell little about how much runs vary.

Errors are rare events: `error_rate` uses Fisher's exact test on the pooled
counts. `holm` adjusts the p-values of every value compared, so the chance
that two identical deployments show any significant change stays at most
alpha.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress
from statistics import NormalDist

from hdrh.histogram import HdrHistogram

_NORMAL_FROM = 50     # Beta shapes from which a normal approximation replaces it
_CUTS = 128           # CDF evaluations per percentile, at most
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Empirical:
    """One run's values of a metric: HDR bucket values (as HDR reports them) and counts."""

    values: tuple[int, ...]     # ascending
    counts: tuple[int, ...]
    units: int                  # independent requests behind the values

    @classmethod
    def decode(cls, encoded: str, units: int | None = None) -> Empirical:
        h = HdrHistogram.decode(encoded)
        values: list[int] = []
        counts: list[int] = []
        if h.get_total_count():
            limit = h.get_counts_array_index(h.max_value) + 1
            everything = h.counts[:limit]
            value_at = h.get_value_from_index
            for index in compress(range(limit), everything):
                # HDR reports a bucket by its highest equivalent value
                values.append(int(value_at(index + 1)) - 1)
                counts.append(int(everything[index]))
        total = sum(counts)
        return cls(tuple(values), tuple(counts), min(units, total) if units else total)


class Pool:
    """Several runs' values merged: their percentiles, and percentiles drawn from them."""

    __slots__ = ("cumulative", "total", "units", "values")

    def __init__(self, runs: Sequence[Empirical]) -> None:
        merged: dict[int, int] = {}
        for run in runs:
            for value, count in zip(run.values, run.counts, strict=True):
                merged[value] = merged.get(value, 0) + count
        self.values = sorted(merged)
        self.cumulative: list[int] = []
        total = 0
        for value in self.values:
            total += merged[value]
            self.cumulative.append(total)
        self.total = total
        self.units = sum(run.units for run in runs)

    def percentile(self, percentile: float) -> int:
        """As HDR reports it: the first value whose cumulative count reaches the rank."""
        rank = max(int(percentile / 100 * self.total + 0.5), 1)
        return self.values[min(bisect_left(self.cumulative, rank), len(self.values) - 1)]

    def percentile_variance(self, percentile: float) -> float:
        """The exact bootstrap variance of the `percentile` of `units` values drawn from the pool.

        The k-th smallest of n draws is F⁻¹(U) with U ~ Beta(k, n + 1 − k): value j
        comes out when U falls in (F(j − 1), F(j)], so its probability is a
        difference of two Beta CDFs — no resampling needed.
        """
        n = self.units
        k = min(max(int(percentile / 100 * n + 0.5), 1), n)
        a, b = float(k), float(n + 1 - k)
        mean = a / (a + b)
        sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
        if min(a, b) >= _NORMAL_FROM:   # Beta(a, b) is normal enough
            cdf = NormalDist(mean, sd).cdf
        else:
            def cdf(x: float) -> float:
                return _beta_cdf(x, a, b)
        total, cumulative, values = self.total, self.cumulative, self.values
        # values whose CDF lies beyond 12 sd of U have no probability worth adding
        first = bisect_left(cumulative, (mean - 12 * sd) * total)
        last = min(bisect_left(cumulative, (mean + 12 * sd) * total), len(values) - 1)
        # many distinct values: the CDF at most _CUTS times, spread evenly inside each cut
        step = max(1, math.ceil((last - first + 1) / _CUTS))
        origin = values[first]   # moments about it, to keep the squares small
        below = cdf(cumulative[first - 1] / total) if first > 0 else 0.0
        mass = first_moment = second_moment = 0.0
        for start in range(first, last + 1, step):
            end = min(start + step, last + 1) - 1
            upto = cdf(cumulative[end] / total) if end < last else 1.0
            weight, below = max(upto - below, 0.0), upto
            if weight == 0.0:
                continue
            count = s1 = s2 = 0.0
            previous = cumulative[start - 1] if start > 0 else 0
            for j in range(start, end + 1):
                c, previous = cumulative[j] - previous, cumulative[j]
                v = values[j] - origin
                count += c
                s1 += c * v
                s2 += c * v * v
            mass += weight
            first_moment += weight * s1 / count
            second_moment += weight * s2 / count
        if mass == 0.0:
            return 0.0
        centre = first_moment / mass
        return max(second_moment / mass - centre * centre, 0.0)


def _beta_cdf(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (continued fraction, Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(x, a, b) / a
    return 1.0 - front * _beta_fraction(1.0 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for term in (m * (b - m) * x / ((a - 1 + m2) * (a + m2)),
                     -(a + m) * (a + b + m) * x / ((a + m2) * (a + 1 + m2))):
            d = 1.0 + term * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + term / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-13:
            break
    return h


def _variance(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = math.fsum(values) / len(values)
    return math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)


@dataclass(frozen=True)
class Estimate:
    """A side's value from its runs pooled, how much it varies by sampling, and each run's."""

    value: float
    within: float                  # variance of `value` from resampling the pooled data
    runs: tuple[float, ...]        # each run's own value


def percentile_estimates(runs: Sequence[Empirical], percentiles: Sequence[float]
                         ) -> dict[float, Estimate]:
    """Each percentile of the runs pooled (in HDR units, as HDR reports it)."""
    pool = Pool(runs)
    singles = [Pool([run]) for run in runs] if len(runs) > 1 else [pool]
    return {p: Estimate(float(pool.percentile(p)), pool.percentile_variance(p),
                        tuple(float(single.percentile(p)) for single in singles))
            for p in percentiles}


@dataclass(frozen=True)
class Windows:
    """One run's per-second windows: an amount (completions, tokens) and the seconds."""

    amounts: tuple[float, ...]
    seconds: tuple[float, ...]

    @property
    def rate(self) -> float:
        seconds = math.fsum(self.seconds)
        return math.fsum(self.amounts) / seconds if seconds > 0 else 0.0


def rate_estimate(value: float, runs: Sequence[Windows]) -> Estimate:
    """`value` (Σ amount / Σ seconds of the runs) with its variance over the windows.

    The bootstrap variance of a ratio of sums over n windows, to first order:
    n / (n − 1) · Σ (amount − R·seconds)² / (Σ seconds)².
    """
    amounts = [a for run in runs for a in run.amounts]
    seconds = [s for run in runs for s in run.seconds]
    n, total = len(amounts), math.fsum(seconds)
    within = 0.0
    if n > 1 and total > 0:
        ratio = math.fsum(amounts) / total
        residuals = math.fsum((a - ratio * s) ** 2 for a, s in zip(amounts, seconds, strict=True))
        within = n / (n - 1) * residuals / total ** 2
    return Estimate(value, within, tuple(run.rate for run in runs))


@dataclass(frozen=True)
class Test:
    """A two-sided test of NEW − BASE, with a 95% interval of the difference."""

    p: float
    low: float | None = None
    high: float | None = None
    df: int | None = None        # Student's t degrees of freedom; None: normal


def t_survival(t: float, df: int) -> float:
    """P(|T| ≥ t) for Student's t with `df` degrees of freedom (Abramowitz-Stegun 26.7)."""
    t = abs(t)
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2:
        total, term = 0.0, c   # odd: (2/π)(θ + sinθ·(cosθ + 2/3 cos³θ + ...))
        for k in range(1, (df - 1) // 2 + 1):
            if k > 1:
                term *= c * c * (2 * k - 2) / (2 * k - 1)
            total += term
        inside = 2 / math.pi * (theta + (s * total if df > 1 else 0.0))
    else:
        total, term = 1.0, 1.0   # even: sinθ·(1 + 1/2 cos²θ + 1·3/(2·4) cos⁴θ + ...)
        for k in range(1, df // 2):
            term *= c * c * (2 * k - 1) / (2 * k)
            total += term
        inside = s * total
    return min(1.0, max(0.0, 1.0 - inside))


def _t_quantile(df: int, p_two_sided: float) -> float:
    low, high = 0.0, 1e3
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if t_survival(mid, df) > p_two_sided else (low, mid)
    return high


def difference_test(base: Estimate, new: Estimate) -> Test:
    """NEW − BASE against the larger of its two standard errors.

    From sampling: the two sides' bootstrap variances. From the runs (when a
    side has two or more): their pooled spread, s²·(1/m + 1/m'). With runs to
    go by, how much they vary is known only to their few degrees of freedom,
    so the test is Student's t on those; with one run a side, normal.
    """
    difference = new.value - base.value
    se2 = base.within + new.within
    df: int | None = None
    dof = sum(len(side.runs) - 1 for side in (base, new))
    if dof > 0:
        squares = math.fsum(_variance(side.runs) * (len(side.runs) - 1) for side in (base, new))
        se2 = max(se2, squares / dof * (1 / len(base.runs) + 1 / len(new.runs)))
        df = dof
    se = math.sqrt(se2)
    if se == 0:   # nothing varies: a difference is certain, none is none
        return Test(1.0 if difference == 0 else 0.0, difference, difference, df)
    if df is None:
        p = 2 * _NORMAL.cdf(-abs(difference) / se)
        margin = _NORMAL.inv_cdf(0.975) * se
    else:
        p = t_survival(difference / se, df)
        margin = _t_quantile(df, 0.05) * se
    return Test(min(p, 1.0), difference - margin, difference + margin, df)


def _log_hypergeometric(x: int, total: int, marked: int, drawn: int) -> float:
    def log_comb(n: int, k: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    return log_comb(marked, x) + log_comb(total - marked, drawn - x) - log_comb(total, drawn)


def fisher_test(base_events: int, base_total: int, new_events: int, new_total: int) -> Test:
    """Fisher's exact test of two proportions (two-sided: twice the smaller tail)."""
    total, marked = base_total + new_total, base_events + new_events
    low, high = max(0, marked - base_total), min(marked, new_total)
    if marked == 0 or marked == total:
        return Test(1.0)
    probabilities = {x: math.exp(_log_hypergeometric(x, total, marked, new_total))
                     for x in range(low, high + 1)}
    upper = math.fsum(v for x, v in probabilities.items() if x >= new_events)
    lower = math.fsum(v for x, v in probabilities.items() if x <= new_events)
    return Test(min(1.0, 2 * min(upper, lower)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
