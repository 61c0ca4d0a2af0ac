"""Faults of the plan (`faults:` of a phase): done by the driver, at their time.

`stop` stops a service llmscen started and starts it again on the same
address; `unload` unloads a model of a Triton target through the server's
repository API and loads it again. Workers are told when each fault hit which
targets, and measure `time_to_recover` from then to their first success.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp

from llmscen.compile.plan import FaultPlan, Plan
from llmscen.driver import messages as m
from llmscen.driver.services import Started
from llmscen.engine.protocol import ServiceError
from llmscen.metrics.results import FaultInfo


class FaultError(Exception):
    """A fault could not be done (or undone); the run stops."""


def repository_url(plan: Plan, started: Started, target_name: str) -> str:
    """The HTTP base URL of a Triton target (its service's `http` URL, or its own)."""
    target = plan.target(target_name)
    if target.service and target.service in started.endpoints:
        http = started.endpoints[target.service].urls.get("http")
        if http:
            return http.rstrip("/")
    if target.url and target.url.startswith("http"):
        return target.url.rstrip("/")
    raise FaultError(f"target {target_name!r}: no HTTP address for Triton's repository API "
                     "(start it as a service, or point it at the server's HTTP port)")


async def _repository(base: str, model: str, action: str) -> None:
    url = f"{base}/v2/repository/models/{model}/{action}"
    try:
        async with aiohttp.ClientSession() as session, session.post(
                url, timeout=aiohttp.ClientTimeout(total=120)) as resp:
            body = await resp.text()
            if resp.status != 200:
                raise FaultError(f"POST {url} answered HTTP {resp.status}: {body[:200]}")
    except aiohttp.ClientError as exc:
        raise FaultError(f"POST {url} failed: {exc}") from None


async def run_fault(fault: FaultPlan, plan: Plan, started: Started, phase_start_ns: int,
                    tell: Callable[[m.Command], None], note: Callable[[str], None],
                    stopping: asyncio.Event, record: FaultInfo) -> None:
    """Wait for the fault's time in the phase, do it, wait its duration, undo it; `record`
    gets when it took effect and when it was undone (perf_counter seconds)."""
    wait = (phase_start_ns + int(fault.at * 1e9) - time.perf_counter_ns()) / 1e9
    if wait > 0:
        try:
            await asyncio.wait_for(stopping.wait(), wait)
            return                          # the run stopped before the fault was due
        except asyncio.TimeoutError:
            pass
    what = (f"service {fault.subject!r} was stopped" if fault.action == "stop" else
            f"model {fault.subject!r} of target {fault.target!r} was unloaded")
    # time_to_recover counts from the moment the fault took effect
    if fault.action == "stop":
        control = started.endpoints[fault.subject].control
        if control is None:
            raise FaultError(f"service {fault.subject!r} cannot be stopped and started again")
        await control.stop()
        record.at = time.perf_counter()
        tell(m.FaultStarted(fault.targets, time.perf_counter_ns(), what))
        note(f"fault: {what} for {fault.duration:g}s")
        await asyncio.sleep(fault.duration)
        begun = time.monotonic()
        try:
            await control.start()
        except ServiceError as exc:
            raise FaultError(f"service {fault.subject!r} did not start again: {exc}") from None
        record.undone_at = time.perf_counter()
        note(f"fault: service {fault.subject!r} started again "
             f"({time.monotonic() - begun:.2f}s to be ready)")
    else:
        assert fault.target is not None
        base = repository_url(plan, started, fault.target)
        await _repository(base, fault.subject, "unload")
        record.at = time.perf_counter()
        tell(m.FaultStarted(fault.targets, time.perf_counter_ns(), what))
        note(f"fault: {what} for {fault.duration:g}s")
        await asyncio.sleep(fault.duration)
        begun = time.monotonic()
        await _repository(base, fault.subject, "load")
        record.undone_at = time.perf_counter()
        note(f"fault: model {fault.subject!r} loaded again "
             f"({time.monotonic() - begun:.2f}s)")
