"""Phases → PhasePlans: sweeps expanded, seeds derived, request counts estimated."""

from __future__ import annotations

import hashlib
import math

from llmscen.compile.plan import PhasePlan, SearchPlan
from llmscen.compile.trace import arrival_offsets
from llmscen.spec.models import PhaseSpec
from llmscen.spec.units import format_rate, parse_rate


def derive_seed(base: int, *parts: object) -> int:
    """A stable per-phase seed from the scenario seed, so runs repeat exactly."""
    digest = hashlib.blake2b(repr((base, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def phase_name(spec: PhaseSpec, index: int) -> str:
    return spec.name or f"phase-{index + 1}"


def expand(spec: PhaseSpec, index: int, base_seed: int) -> list[PhasePlan]:
    """One plan per phase; a sweep gives one per value, named `<name>-<value>`."""
    name = phase_name(spec, index)
    seed = spec.seed if spec.seed is not None else derive_seed(base_seed, index, name)
    common = {"warmup": spec.warmup, "max_requests": spec.requests, "duration": spec.duration,
              "mix": spec.mix}
    if spec.each is not None:
        cases = () if spec.each == "all" else tuple(spec.each)
        return [PhasePlan(name=name, kind="each", cases=cases, times=spec.times or 1,
                          concurrent=bool(spec.concurrent), seed=seed, warmup=spec.warmup)]
    if spec.groups is not None:
        groups = []
        for i, (label, group) in enumerate(spec.groups.items()):
            sub = PhaseSpec.model_validate({
                **group.model_dump(exclude_none=True, exclude={"mix"}),
                "name": None, "duration": spec.duration})
            plan = expand(sub, index, base_seed)[0].model_copy(update={
                "name": f"{name}.{label}", "seed": derive_seed(seed, i, label),
                "mix": group.mix, "max_requests": group.requests, "parent": name,
                "warmup": spec.warmup})
            if plan.kind == "open":
                plan = plan.model_copy(update={"expected_requests": expected_open(plan)})
            groups.append(plan)
        known = [g.expected_requests for g in groups]
        return [PhasePlan(name=name, kind="parallel", duration=spec.duration, seed=seed,
                          warmup=spec.warmup, groups=tuple(groups),
                          expected_requests=sum(k for k in known if k is not None)
                          if all(k is not None for k in known) else None)]
    if spec.search is not None:
        search = spec.search
        axis = "users" if search.users is not None else "arrival_rate"
        bounds = search.users or search.arrival_rate
        assert bounds is not None
        think = spec.think or (0.0, 0.0)
        return [PhasePlan(
            name=name, kind="search", seed=seed, warmup=spec.warmup, mix=spec.mix,
            arrival=spec.arrival or "constant", burstiness=spec.burstiness or 1.0,
            max_in_flight=spec.max_in_flight, spawn_rate=spec.spawn_rate,
            think_min=think[0], think_max=think[1],
            search=SearchPlan(axis=axis, low=bounds.min, high=bounds.max,
                              precision=search.precision, step=search.step,
                              max_steps=search.max_steps, repeats=search.repeats,
                              tolerance=search.tolerance if search.tolerance is not None
                              else max(0.01, search.precision / 5)))]
    if spec.pause is not None:
        return [PhasePlan(name=name, kind="pause", duration=spec.pause, seed=seed,
                          warmup=spec.warmup)]
    if spec.sweep is not None and spec.sweep.vars is not None:
        # a request parameter: each step is the phase's own load with the value set
        axis, values = next(iter(spec.sweep.vars.items()))
        base = expand(spec.model_copy(update={"sweep": None, "name": name}), index,
                      base_seed)[0]
        return [base.model_copy(update={"name": f"{name}-{value}", "seed": seed + i,
                                        "sweep": name, "vars": {axis: value}})
                for i, value in enumerate(values)]
    if spec.sweep is not None:
        steps: list[PhasePlan] = []
        if spec.sweep.users is not None:
            for i, users in enumerate(spec.sweep.users):
                steps.append(_closed(f"{name}-{users}", spec, users, None, seed + i, name,
                                     **common).model_copy(update={"vars": {"users": users}}))
        else:
            for i, rate in enumerate(spec.sweep.arrival_rate or []):
                label = format_rate(rate).removesuffix("/s")
                steps.append(_open(f"{name}-{label}", spec, rate, None, seed + i, name,
                                   **common).model_copy(update={"vars": {"arrival_rate": rate}}))
        return steps
    if spec.replay is not None:
        # the arrivals are the trace's: the compiler counts them (replayed)
        return [PhasePlan(name=name, kind="open", replay=spec.replay, speed=spec.speed or 1.0,
                          max_in_flight=spec.max_in_flight, seed=seed, **common)]
    if spec.arrival_rate is not None:
        ramp = parse_rate(spec.ramp_to) if spec.ramp_to is not None else None
        return [_open(name, spec, spec.arrival_rate, ramp, seed, None, **common)]
    assert spec.users is not None
    ramp_users = None
    if spec.ramp_to is not None:
        ramp_users = int(float(spec.ramp_to))
        if ramp_users != float(spec.ramp_to) or ramp_users < 1:
            raise ValueError(f"ramp_to for a closed phase is a number of users, "
                             f"got {spec.ramp_to!r}")
    return [_closed(name, spec, spec.users, ramp_users, seed, None, **common)]


def _open(name: str, spec: PhaseSpec, rate: float, ramp_to: float | None, seed: int,
          sweep: str | None, **common: object) -> PhasePlan:
    arrival = spec.arrival or "constant"
    plan = PhasePlan(name=name, kind="open", rate=rate, ramp_to=ramp_to, arrival=arrival,
                     burstiness=spec.burstiness or 1.0, max_in_flight=spec.max_in_flight,
                     seed=seed, sweep=sweep, **common)
    return plan.model_copy(update={"expected_requests": expected_open(plan)})


def _closed(name: str, spec: PhaseSpec, users: int, ramp_to: int | None, seed: int,
            sweep: str | None, **common: object) -> PhasePlan:
    think = spec.think or (0.0, 0.0)
    return PhasePlan(name=name, kind="closed", users=users, users_ramp_to=ramp_to,
                     spawn_rate=spec.spawn_rate, think_min=think[0], think_max=think[1],
                     seed=seed, sweep=sweep, expected_requests=spec.requests,
                     **common)


def expected_open(plan: PhasePlan) -> int | None:
    """Arrivals the schedule makes: the integral of the (linearly ramped) rate."""
    if plan.duration is None:
        return plan.max_requests
    start = plan.rate or 0.0
    end = plan.ramp_to if plan.ramp_to is not None else start
    arrivals = math.ceil((start + end) / 2 * plan.duration - 1e-9)
    return min(arrivals, plan.max_requests) if plan.max_requests else arrivals


def replayed(plan: PhasePlan, timestamps: list[float]) -> PhasePlan:
    """A replay phase with what its trace makes of it: the arrivals it sends (the first
    `requests`, those within `duration`) and their mean rate."""
    offsets = list(arrival_offsets(timestamps, plan.speed, plan.duration))
    if plan.max_requests is not None:
        offsets = offsets[:plan.max_requests]
    span = offsets[-1] if offsets else 0.0
    return plan.model_copy(update={"expected_requests": len(offsets),
                                   "rate": len(offsets) / span if span > 0 else None})
