"""A worker's share of a plan: its part of every phase's rate, users and request count.

Used by every way of running with several workers (local processes, Ray actors):
the split is deterministic, so each worker can compute its own share, and the
parts add up to the whole plan exactly (largest remainders for counts).
"""

from __future__ import annotations

import math
from typing import Any

from llmscen.compile.plan import PhasePlan, Plan


def _split(total: int | None, index: int, count: int) -> int | None:
    """Worker `index`'s part of `total` (the first ones take the remainder)."""
    if total is None:
        return None
    return total // count + (1 if index < total % count else 0)


def _split_by(total: int | None, weights: list[int], index: int) -> int | None:
    """Worker `index`'s part of `total`, in proportion to `weights` (largest remainders)."""
    if total is None or sum(weights) == 0:
        return total if index == 0 else (None if total is None else 0)
    exact = [total * w / sum(weights) for w in weights]
    parts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in by_remainder[:total - sum(parts)]:
        parts[i] += 1
    return parts[index]


def share(plan: Plan, index: int, count: int) -> Plan:
    """The part of `plan` worker `index` of `count` runs."""
    phases = tuple(phase_share(p, index, count) for p in plan.phases)
    return plan.model_copy(update={"phases": phases, "seed": plan.seed + index})


def phase_share(p: PhasePlan, index: int, count: int) -> PhasePlan:
    """Worker `index`'s part of one phase (also of a phase made during the run, a search's
    step)."""
    # each worker its own random stream; an open phase's workers share one schedule
    update: dict[str, Any] = {"seed": p.seed + index * 1_000_003 if p.kind != "open" else p.seed}
    if p.kind == "each":
        # test cases run in order, so on one worker; the others wait at the barrier
        update["times"] = p.times if index == 0 else 0
        update["expected_requests"] = p.expected_requests if index == 0 else 0
    elif p.kind == "parallel":
        update["groups"] = tuple(phase_share(g, index, count) for g in p.groups)
    elif p.kind != "pause":
        update["max_requests"] = _split(p.max_requests, index, count)
        update["expected_requests"] = _split(p.expected_requests, index, count)
    if p.kind == "open":
        # every worker walks the phase's one schedule and sends every count-th arrival, so
        # together they send exactly what one worker would, at the same instants
        update["stride"] = (index, count)
        update["max_requests"] = p.max_requests
        if p.max_in_flight:
            update["max_in_flight"] = max(1, math.ceil(p.max_in_flight / count))
    elif p.kind == "closed":
        users = [_split(p.users, i, count) or 0 for i in range(count)]
        update["users"] = users[index]
        update["users_ramp_to"] = _split(p.users_ramp_to, index, count)
        update["spawn_rate"] = None if p.spawn_rate is None else p.spawn_rate / count
        # requests follow the users: a worker with no users sends nothing
        update["max_requests"] = _split_by(p.max_requests, users, index)
        update["expected_requests"] = _split_by(p.expected_requests, users, index)
    return p.model_copy(update=update)
