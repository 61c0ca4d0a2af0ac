"""Arrival schedules for the open model.

A phase's rate ramps linearly from r0 to r1 over T seconds, so the expected
number of arrivals by time t is Λ(t) = r0·t + (r1 − r0)·t²/(2T). Arrivals are
drawn as cumulative "work" in Λ-space — exactly 1 apart (constant), exponential
(poisson) or gamma-distributed with mean 1 (bursty when the shape is below 1) —
and mapped back to time by inverting Λ. One mechanism covers every arrival
process with or without a ramp, and the seed makes it reproducible.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator


def invert_cumulative(work: float, r0: float, r1: float, period: float) -> float:
    """The time t at which Λ(t) = work; inf when the rate never gets there."""
    slope = (r1 - r0) / period if period > 0 else 0.0
    if abs(slope) < 1e-12:
        return work / r0 if r0 > 0 else math.inf
    # slope/2·t² + r0·t − work = 0, the root that grows with work
    disc = r0 * r0 + 2.0 * slope * work
    if disc < 0:
        return math.inf
    root = math.sqrt(disc)
    # a numerically stable form of (−r0 + root) / slope
    return 2.0 * work / (r0 + root) if r0 + root > 0 else math.inf


def arrivals(rate: float, ramp_to: float | None, duration: float | None, process: str,
             shape: float, seed: int) -> Iterator[float]:
    """Intended start times (seconds from the phase start), in order.

    Without a duration the rate is held (a ramp needs a duration); the caller
    stops on its request count.
    """
    r1 = ramp_to if ramp_to is not None and duration else rate
    period = duration or 0.0
    rng = random.Random(seed)
    work = 0.0
    first = True
    last = 0.0
    while True:
        if process == "poisson":
            work += rng.expovariate(1.0)
        elif process == "gamma":
            work += rng.gammavariate(shape, 1.0 / shape)
        else:
            # constant: the first arrival at t=0, then evenly by Λ
            work = 0.0 if first else work + 1.0
        first = False
        t = invert_cumulative(work, rate, r1, period) if work > 0 else 0.0
        if duration is not None and t >= duration:
            return
        if math.isinf(t):
            return
        # inverting Λ can round a tiny step of work a hair backwards: time never does
        last = max(last, t)
        yield last
