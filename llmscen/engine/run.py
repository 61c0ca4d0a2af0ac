"""A run from start to end: services, runners, phases, drain; interrupt-safe.

Library code raises `RunError` for a run that cannot be carried out; the CLI
maps it to an exit code. Whatever happens, handlers get `run_ended`, so what
was measured is saved.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from llmscen.compile.plan import PhasePlan, Plan
from llmscen.engine.events import Handler
from llmscen.engine.feed import Feeder
from llmscen.engine.flow import Flow
from llmscen.engine.load import Mix, PhaseState, pause, run_closed, run_open
from llmscen.engine.protocol import Call, Endpoint, Runner, ServiceError

SATURATION_LAG_S = 0.05     # requests starting this late mean the client, not the server, lags
SATURATION_SECONDS = 2      # ... for this many consecutive seconds
DEFAULT_DRAIN_S = 30.0


class RunError(Exception):
    """The run could not be carried out (service, target or plugin failure)."""


@asynccontextmanager
async def start_services(plan: Plan, registry: Any, log_dir: str | None) -> AsyncIterator[Plan]:
    """Start the services the targets use; yield the plan with every target's URL filled."""
    async with AsyncExitStack() as stack:
        endpoints: dict[str, Endpoint] = {}
        used = {t.service for t in plan.targets if t.service and not t.url}
        for service in plan.services:
            if service.name not in used:
                continue
            kind = registry.services[service.kind].obj
            try:
                endpoints[service.name] = await stack.enter_async_context(
                    kind.launch(service, log_dir))
            except ServiceError as exc:
                raise RunError(str(exc)) from None
        targets = []
        for target in plan.targets:
            if target.url is None:
                assert target.service is not None, "the compiler requires url or service"
                endpoint = endpoints[target.service]
                scheme = str(getattr(target.options, "protocol", "http"))
                # options like `metrics_url` left unset are filled from the service's URLs
                fill = {f"{name}_url": url for name, url in endpoint.urls.items()
                        if getattr(target.options, f"{name}_url", "") is None}
                target = target.model_copy(update={
                    "url": endpoint.url_for(scheme),
                    "options": target.options.model_copy(update=fill)})
            targets.append(target)
        yield plan.model_copy(update={"targets": tuple(targets)})


class Engine:
    def __init__(self, plan: Plan, registry: Any, handler: Handler, *,
                 log_dir: str | None = None, worker: tuple[int, int] = (0, 1),
                 start_gate: Callable[[], Awaitable[int]] | None = None) -> None:
        self.plan = plan
        self.registry = registry
        self.handler = handler
        self.log_dir = log_dir
        self.worker = worker
        # workers wait at the gate for one shared start (perf_counter is system-wide)
        self.start_gate = start_gate
        self.stop = asyncio.Event()
        self.interrupted = False
        self.origin_ns = time.perf_counter_ns()
        self.live: list[PhaseState] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.notes: list[str] = []

    def now(self) -> float:
        return (time.perf_counter_ns() - self.origin_ns) / 1e9

    def interrupt(self) -> None:
        """Stop scheduling; in-flight requests get a short grace, then are cancelled."""
        self.interrupted = True
        self.stop.set()
        for state in self.live:
            state.stop.set()

    def note(self, message: str) -> None:
        self.notes.append(message)
        self.handler.note(message)

    async def run(self) -> None:
        async with AsyncExitStack() as stack:
            runners = await self._start(stack)
            flows = self._flows(runners)
            # what setup built lives for the whole run: keep it out of the collector's
            # full passes, which otherwise pause the client for tens of milliseconds
            gc.collect()
            gc.freeze()
            start_ns = time.perf_counter_ns()
            if self.start_gate is not None:
                start_ns = await self.start_gate()
                wait = (start_ns - time.perf_counter_ns()) / 1e9
                if wait > 0:
                    await asyncio.sleep(wait)
                elif wait < -0.1:
                    self.note(f"worker {self.worker[0]} started {-wait:.2f}s after the others")
            self.origin_ns = start_ns
            for flow in flows:
                flow.origin = self.origin_ns
            self.handler.run_started(self.plan)
            try:
                for phase in self.plan.phases:
                    if self.stop.is_set():
                        break
                    await self._phase(phase, flows, runners)
                await self._drain(self._drain_budget())
                self._note_reconnects(runners)
            finally:
                self.handler.run_ended(self.now(), self.interrupted)

    async def _start(self, stack: AsyncExitStack) -> dict[str, Runner]:
        self.plan = await stack.enter_async_context(
            start_services(self.plan, self.registry, self.log_dir))
        runners: dict[str, Runner] = {}
        for target in self.plan.targets:
            entry = self.registry.plugins[target.plugin]
            url = target.url
            where = f"plugin {target.plugin!r} ({entry.origin})"
            try:
                runner = entry.obj.create_runner(target)
                stack.push_async_callback(runner.stop)
                await runner.start()
            except Exception as exc:  # a plugin may raise anything; say whose it was
                raise RunError(f"target {target.name!r} at {url}: {where} could not start: "
                               f"{type(exc).__name__}: {exc}") from None
            runners[target.name] = runner
        problems = []
        for target in self.plan.targets:
            calls = [Call(request=r.name, payload=r.steps[0].payload, stream=r.stream)
                     for r in self.plan.requests if r.target == target.name]
            try:
                problems += await runners[target.name].preflight(calls)
            except Exception as exc:
                problems.append(f"target {target.name!r}: preflight failed: "
                                f"{type(exc).__name__}: {exc}")
        if problems:
            raise RunError("the targets are not ready for this scenario:\n  " +
                           "\n  ".join(problems))
        return runners

    def _flows(self, runners: dict[str, Runner]) -> list[Flow]:
        feeders = {d.name: Feeder(d, self.plan.seed, *self.worker) for d in self.plan.data}
        base_dir = str(Path(self.plan.file).parent)
        plugins = {t.name: f"plugin {t.plugin!r} ({self.registry.plugins[t.plugin].origin})"
                   for t in self.plan.targets}
        return [Flow(r, runners[r.target], feeders.get(r.data) if r.data else None,
                     self.plan.goodput, self.handler, self.origin_ns, base_dir,
                     plugins[r.target])
                for r in self.plan.requests]

    async def _phase(self, phase: PhasePlan, flows: list[Flow],
                     runners: dict[str, Runner]) -> None:
        before = await self._server_metrics(runners)
        state = PhaseState(phase)
        self.live.append(state)
        start_ns = time.perf_counter_ns()
        self.handler.phase_started(phase, self.now())
        supervisor = asyncio.create_task(self._supervise(state))
        try:
            if phase.kind == "pause":
                await pause(self.stop, phase.duration or 0.0)
            elif phase.kind == "open":
                await run_open(state, Mix(flows), start_ns)
            else:
                await run_closed(state, Mix(flows), start_ns)
                # users leave after their current request, before the next phase starts
                await self._wait(set(state.tasks), self._drain_budget())
            if state.exhausted:
                self.note(f"phase {phase.name!r} stopped early: {state.exhausted}")
        finally:
            supervisor.cancel()
            self.tasks |= state.tasks
            self.handler.phase_ended(phase, self.now())
        after = await self._server_metrics(runners)
        for target, values in after.items():
            self.handler.server_metrics(phase.name, target, before.get(target, {}), values)

    async def _supervise(self, state: PhaseState) -> None:
        """Once a second: in-flight count and schedule lag, to say when the client saturates."""
        late_seconds = 0
        warned = False
        cpu = time.process_time()
        while True:
            await asyncio.sleep(1.0)
            self.handler.in_flight(self.now(), sum(s.in_flight for s in self.live))
            lag = state.max_lag_ns / 1e9
            state.max_lag_ns = 0
            used = time.process_time() - cpu
            cpu = time.process_time()
            late_seconds = late_seconds + 1 if lag > SATURATION_LAG_S else 0
            if late_seconds >= SATURATION_SECONDS and not warned:
                warned = True
                self.note(f"load generator saturated in phase {state.phase.name!r}: requests "
                          f"started up to {lag * 1000:.0f} ms after their intended time "
                          f"(client CPU {used * 100:.0f}% of a core); latencies still count "
                          "from the intended start, but the offered load was not reached — "
                          "lower the rate or add --workers")

    def _note_reconnects(self, runners: dict[str, Runner]) -> None:
        for name, runner in runners.items():
            count = getattr(runner, "reconnects", 0)
            if count:
                self.note(f"target {name!r}: {count} requests were sent again on a fresh "
                          "connection because the server had closed the kept-alive one "
                          "(before any response byte); their timings start at the first try")

    async def _server_metrics(self, runners: dict[str, Runner]) -> dict[str, dict[str, float]]:
        out = {}
        for name, runner in runners.items():
            try:
                values = await runner.server_metrics()
            except Exception as exc:  # scraping is best effort; say so once
                self.note(f"could not read server metrics of target {name!r}: {exc}")
                values = {}
            if values:
                out[name] = values
        return out

    def _drain_budget(self) -> float:
        if self.interrupted:
            return 2.0
        timeouts = [getattr(t.options, "timeout", None) for t in self.plan.targets]
        timeouts += [r.timeout for r in self.plan.requests]
        return max([float(t) for t in timeouts if t] or [DEFAULT_DRAIN_S])

    async def _drain(self, budget: float) -> None:
        pending = {t for t in self.tasks if not t.done()}
        for state in self.live:
            pending |= {t for t in state.tasks if not t.done()}
        await self._wait(pending, budget)

    async def _wait(self, tasks: set[asyncio.Task[None]], budget: float) -> None:
        if not tasks:
            return
        deadline = time.monotonic() + budget
        pending = tasks
        while pending and time.monotonic() < deadline:
            if self.interrupted:
                deadline = min(deadline, time.monotonic() + 2.0)
            _, pending = await asyncio.wait(pending, timeout=min(0.25, max(
                0.0, deadline - time.monotonic())))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
