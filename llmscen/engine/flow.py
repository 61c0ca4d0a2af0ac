"""One request of the mix, from intended start to its events: render, send, check, capture.

A single call is a flow of one step. Every step is one Exchange and one
`Completed` event; a flow stops at its first failed step, since later steps
depend on what it should have returned. A step whose `if:` does not hold is
skipped: nothing is sent or counted. The think after the last step is not
waited here: `execute` returns it, and the closed model's user waits it before
its next iteration (open and test-case phases decide starts, so they drop it).

A multi-turn session (`turns:`) is a flow whose steps are its turns: one `Session`
goes with every turn's call, and the runner carries the history in it; templates
see `turn` and `session_id`.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from llmscen.assertions.expect import build_checker
from llmscen.compile.plan import GoodputObjective, RequestPlan, StepPlan
from llmscen.compile.templates import RNG, Renderer, TemplateFailed, compile_condition
from llmscen.engine.capture import compile_capture, is_missing
from llmscen.engine.events import Completed, Handler, NotSent
from llmscen.engine.feed import Feeder
from llmscen.engine.protocol import Call, Exchange, Runner, Session, unbatcher


@dataclass
class Step:
    name: str                      # metric name of the step: request, or request.step
    renderer: Renderer
    condition: Callable[[dict[str, Any]], bool] | None   # `if:`; None = always
    checker: Any                   # assertions.expect.Checker or None
    expects_error: bool
    captures: list[tuple[str, Callable[[Exchange], Any]]]
    records: list[tuple[str, Callable[[Exchange], Any]]]   # custom metric → extractor
    think: tuple[float, float]
    batch_tolerance: float | None    # `expect: batch_consistent`, checked with extra calls
    keyed: bool = False              # `expect: consistent`: events carry the request's key


def request_key(payload: dict[str, Any], session: Session | None) -> tuple[str, str]:
    """(digest, label) of a call as sent: its rendered payload and, on a session's turn,
    the history carried before it. Identical requests share a digest in every worker."""
    data = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS, default=str)
    if session is not None and session.history:
        data += b"\0" + orjson.dumps(session.history, option=orjson.OPT_SORT_KEYS, default=str)
    digest = hashlib.blake2b(data, digest_size=8).hexdigest()
    return digest, max(_strings(payload), key=len, default="")[:200]


def _strings(value: Any) -> list[str]:
    """The texts in a payload; its longest is most often the prompt, which names it best."""
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value \
        if isinstance(value, list) else ()
    return [text for item in items for text in _strings(item)]


def _goodput_check(objectives: tuple[GoodputObjective, ...]) -> Callable[[Exchange], bool]:
    """A per-request test that every goodput objective was met."""
    limits = [(o.metric, int(o.threshold * 1e9)) for o in objectives]

    def met(ex: Exchange) -> bool:
        if ex.error is not None:
            return False
        for metric, limit in limits:
            if metric == "latency":
                value = ex.end_ns - ex.intended_ns
            elif metric == "latency_sent":
                value = ex.end_ns - ex.sent_ns
            elif metric in ("ttft", "ttft_sent"):
                if not ex.first_content_ns:
                    return False
                start = ex.intended_ns if metric == "ttft" else ex.sent_ns
                value = ex.first_content_ns - start
            else:  # tpot
                tokens = ex.output_tokens or 0
                if tokens < 2 or not ex.first_content_ns:
                    continue
                value = (ex.end_ns - ex.first_content_ns) // (tokens - 1)
            if value > limit:
                return False
        return True
    return met


@dataclass(slots=True)
class Ran:
    """What one execution of a flow leaves behind."""

    context: dict[str, Any]        # what the last step saw, captures included (`before:` shares)
    rest: float = 0.0              # the think after the last step, when it ran: a closed
    #                                user waits it before its next iteration


def _record(records: list[tuple[str, Callable[[Exchange], Any]]],
            exchange: Exchange) -> list[tuple[str, str]]:
    """Take each custom metric's number from the response; one that is missing or not a
    number is a failed check (`record`), as a capture that finds nothing is."""
    values: dict[str, float] = {}
    failures = []
    for name, extract in records:
        value = extract(exchange)
        number = _number(value)
        if number is None:
            shown = "nothing" if is_missing(value) else f"{str(value)[:40]!r}, not a number"
            failures.append(("record", f"record {name.removeprefix('custom.')!r} found {shown}"))
        else:
            values[name] = number
    exchange.recorded = values or None
    if failures:
        exchange.fail("check", failures[0][1])
    return failures


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or is_missing(value):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


class Flow:
    """A request plan made ready to execute many times."""

    def __init__(self, plan: RequestPlan, runner: Runner, feeder: Feeder | None,
                 goodput: tuple[GoodputObjective, ...], handler: Handler,
                 clock_origin_ns: int, base_dir: str | None = None,
                 plugin: str = "the plugin") -> None:
        self.plan = plan
        self.plugin = plugin          # who to blame when send() raises
        self.target = plan.target
        self.runner = runner
        self.feeder = feeder
        self.handler = handler
        self.origin = clock_origin_ns
        self.goodput = _goodput_check(goodput)
        self.base_dir = base_dir
        self.shared: dict[str, Any] = {}    # what `before:` flows captured, for every call
        multi = len(plan.steps) > 1
        self.steps = [self._prepare(s, f"{plan.name}.{s.name}" if multi else plan.name)
                      for s in plan.steps]
        self.captures = frozenset(var for s in self.steps for var, _ in s.captures)

    def _prepare(self, step: StepPlan, name: str) -> Step:
        expect = step.expect
        renderer = Renderer(step.payload)
        checker = build_checker(expect, self.base_dir) if expect is not None else None
        return Step(name=name, renderer=renderer,
                    condition=compile_condition(renderer.env, step.condition)
                    if step.condition is not None else None,
                    checker=checker,
                    expects_error=checker is not None and checker.expects_error,
                    captures=[(k, compile_capture(v)) for k, v in step.capture.items()],
                    records=[(f"custom.{k}", compile_capture(v)) for k, v in step.record.items()],
                    think=(step.think_min, step.think_max),
                    batch_tolerance=getattr(getattr(expect, "batch_consistent", None),
                                            "tolerance", None),
                    keyed=getattr(expect, "consistent", None) is not None)

    async def execute(self, phase: str, intended_ns: int, context: dict[str, Any],
                      rng: random.Random) -> Ran:
        """Run every step; the first starts at `intended_ns`, later ones when due."""
        # templates' random helpers draw from the phase's RNG
        ctx = {**self.shared, **context, RNG: rng}
        arrival_ns = intended_ns   # a call that starts then is the arrival's (first) call
        if self.feeder is not None and "row" not in ctx:   # a replay hands its arrival's row
            ctx["row"] = self.feeder.next()
        session = self._session(ctx)
        last = len(self.steps) - 1
        for index, step in enumerate(self.steps):
            if session is not None:
                session.turn = ctx["turn"] = index + 1
                if index and self.plan.session is not None and \
                        self.plan.session.rows == "turn" and self.feeder is not None:
                    ctx["row"] = self.feeder.next()   # `once` data may run out: the phase ends
            if step.condition is not None:
                try:
                    wanted = step.condition(ctx)
                except Exception as exc:   # an expression can raise anything on odd values
                    self._fail_unsent(phase, step, intended_ns, intended_ns == arrival_ns,
                                      f"request {step.name!r}: `if:` failed: "
                                      f"{type(exc).__name__}: {exc}")
                    return Ran(ctx)
                if not wanted:
                    continue
            exchange = Exchange(intended_ns=intended_ns)
            failures: list[tuple[str, str]] = []
            try:
                payload = step.renderer.render(ctx)
            except TemplateFailed as exc:
                self._fail_unsent(phase, step, intended_ns, intended_ns == arrival_ns,
                                  f"request {step.name!r}: template in {exc.field} failed: "
                                  f"{type(exc.cause).__name__}: {exc.cause}")
                return Ran(ctx)
            call = Call(request=step.name, payload=payload, stream=self.plan.stream,
                        timeout=self.plan.timeout, session=session)
            key = request_key(payload, session) if step.keyed else None
            try:
                await self.runner.send(call, exchange)
            except asyncio.CancelledError:
                # the run is stopping: record what this request saw, then let go
                if not exchange.sent_ns:
                    self.not_sent(phase, step.name)
                    raise
                exchange.end_ns = exchange.end_ns or time.perf_counter_ns()
                exchange.fail("cancelled", "the run stopped while the request was in flight")
                self._emit(phase, step, exchange, [], intended_ns == arrival_ns)
                raise
            except Exception as exc:  # a plugin bug: count it against the request
                exchange.end_ns = time.perf_counter_ns()
                exchange.sent_ns = exchange.sent_ns or exchange.end_ns
                exchange.fail("client", f"{self.plugin} raised from send(): "
                                        f"{type(exc).__name__}: {exc}")
                self._emit(phase, step, exchange, [], intended_ns == arrival_ns)
                return Ran(ctx)
            failures = self._check(step, exchange)
            if step.batch_tolerance is not None and exchange.error is None:
                failures += await self._batch_consistency(step, call, exchange)
            for var, extract in step.captures:
                value = extract(exchange)
                if is_missing(value):
                    failures.append(("capture", f"capture {var!r} found nothing"))
                    exchange.fail("check", f"capture {var!r} found nothing")
                else:
                    ctx[var] = value
            if step.records and exchange.error in (None, "check"):
                failures += _record(step.records, exchange)
            self._emit(phase, step, exchange, failures, intended_ns == arrival_ns, key)
            if exchange.error is not None:
                return Ran(ctx)
            low, high = step.think
            if index == last:
                return Ran(ctx, rng.uniform(low, high) if high > 0 else 0.0)
            if high > 0:
                await asyncio.sleep(rng.uniform(low, high))
            intended_ns = time.perf_counter_ns()
        return Ran(ctx)

    def _session(self, ctx: dict[str, Any]) -> Session | None:
        """A new session for a `turns:` request: its id, for templates and the header."""
        plan = self.plan.session
        if plan is None:
            return None
        session = Session(id=uuid.uuid4().hex, header=plan.header)
        ctx["session_id"] = session.id
        return session

    def _fail_unsent(self, phase: str, step: Step, intended_ns: int, arrival: bool,
                     message: str) -> None:
        """A step that could not be built (template, `if:`): a `client` error, nothing sent."""
        exchange = Exchange(intended_ns=intended_ns)
        exchange.sent_ns = exchange.end_ns = time.perf_counter_ns()
        exchange.fail("client", message)
        self._emit(phase, step, exchange, [], arrival)

    def _emit(self, phase: str, step: Step, exchange: Exchange,
              failures: list[tuple[str, str]], arrival: bool,
              key: tuple[str, str] | None = None) -> None:
        now = (time.perf_counter_ns() - self.origin) / 1e9
        self.handler.handle(Completed(phase, step.name, self.target, exchange, failures,
                                      self.goodput(exchange), now, key,
                                      (exchange.intended_ns - self.origin) / 1e9, arrival))

    def not_sent(self, phase: str, request: str | None = None, count: int = 1,
                 why: str = "stopped") -> None:
        """Count calls of this flow (its first step unless named) that were due but never sent."""
        now = (time.perf_counter_ns() - self.origin) / 1e9
        self.handler.handle(NotSent(phase, request or self.steps[0].name, self.target, count,
                                    why, now))

    async def _batch_consistency(self, step: Step, call: Call,
                                 exchange: Exchange) -> list[tuple[str, str]]:
        """Send each item of a batch alone and compare; these calls are checks, not load,
        so they are not recorded as requests."""
        from llmscen.assertions.tensors import batch_inconsistencies  # numpy: triton extra

        splitter = unbatcher(self.runner)
        singles = splitter.unbatch(call) if splitter is not None else None
        if not singles:
            failure = ("batch_consistent", "the request is not a batch this plugin can split")
        else:
            results = []
            for single in singles:
                alone = Exchange(intended_ns=time.perf_counter_ns())
                await self.runner.send(single, alone)
                results.append(alone.tensors if alone.error is None else None)
            problems = batch_inconsistencies(exchange.tensors or {}, results,
                                             step.batch_tolerance or 0.0)
            if not problems:
                return []
            failure = ("batch_consistent", "; ".join(problems[:3]) +
                       (f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""))
        exchange.fail("check", failure[1])
        return [failure]

    @staticmethod
    def _check(step: Step, exchange: Exchange) -> list[tuple[str, str]]:
        if step.checker is None:
            return []
        failures = [(f.check, f.message) for f in step.checker.check(exchange)]
        if step.expects_error and exchange.error in step.checker.accepts and not failures:
            # a negative test got the error it expected: the request passed
            exchange.error = None
            exchange.error_message = ""
        elif failures and step.expects_error and exchange.error is not None:
            # the server did refuse, but not the way the test expects: a failed check
            exchange.error, exchange.error_message = "check", failures[0][1]
        elif failures:
            exchange.fail("check", failures[0][1])
        return failures
