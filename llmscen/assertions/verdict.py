"""The outcome of a run: one function from saved results (and what the run itself saw) to a verdict.

`conclude(results, run_reasons)` is the only place that decides. `llmscen run`,
`llmscen report`, the pytest plugin and every reporter read the `Outcome` it
stores in the results, so the same results.json always gives the same status,
exit code and test cases.

The rules (docs/results.md, "Outcome"):

- What the run saw that results cannot show (a service that exited, an
  interrupt, a client that could not keep up) arrives as typed `Reason`s; each
  kind implies a status. The most severe status wins:
  could_not_run > interrupted > invalid_measurement > failed > passed.
- Every SLO, every declared request and every expectation of every step is a
  test case in every outcome. When the run could not be carried out or its
  measurement is not valid, SLO and request cases are skipped ("not judged");
  expectation cases that saw wrong answers still fail. When only the
  measurement is not valid, what the server answered is still judged: calls it
  refused with an HTTP error status fail their request as usual, and a wrong
  or refused answer makes the outcome `failed`, not `invalid_measurement` (a
  slow client does not make a server answer 400; a closed loop against a
  server that refuses everything at once always saturates its client).
- A request whose calls failed (any class but `check`) fails unless the
  scenario declares an error budget for that scope: an SLO on `error_rate`,
  `success_rate` or `goodput` covering it, or `expect: {error: ...}`.
  A failed call also counts against every expectation of its step, as
  "failed before it could be checked", under the same budget rule.
- A declared request that was never sent fails; so do scheduled requests that
  were never sent (outside warmup phases, and not because of an interrupt).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from llmscen.assertions.cause import explain
from llmscen.assertions.slo import OPS
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import (
    Case,
    CheckSummary,
    Counters,
    Outcome,
    Reason,
    RequestInfo,
    RunResults,
    SloResult,
    Status,
    StepInfo,
)
from llmscen.spec.units import show

EXIT_CODES: dict[str, int] = {"passed": 0, "failed": 1, "could_not_run": 3, "interrupted": 3,
                              "invalid_measurement": 4}
SEVERITY: tuple[Status, ...] = ("could_not_run", "interrupted", "invalid_measurement", "failed",
                                "passed")

# Reasons only the run can know, by the status each implies.
RUN_REASONS: dict[str, Status] = {
    "service_failed": "could_not_run",       # a service did not start or become ready
    "service_exited": "could_not_run",       # a service llmscen started exited mid-run
    "target_unreachable": "could_not_run",   # nothing answered at the target's address
    "target_not_ready": "could_not_run",     # something answered, but not the declared API
    "plugin_failed": "could_not_run",        # a plugin could not start
    "connection_failures": "could_not_run",  # too many consecutive connection failures
    "worker_failed": "could_not_run",        # a load-generating worker could not run
    "worker_lost": "could_not_run",          # a worker died mid-run; its last interval is lost
    "output_failed": "could_not_run",        # a report could not be written
    "fault_failed": "could_not_run",         # a fault of the plan could not be done or undone
    "unknown_server_metric": "could_not_run",  # a server.* SLO names what no target exposes
    "interrupted": "interrupted",            # Ctrl-C, SIGTERM
    "client_saturated": "invalid_measurement",   # the load generator fell behind its schedule
    "client_limit": "invalid_measurement",   # descriptors or the in-flight cap ran out
    "aborted": "failed",                     # an `abort: true` SLO failed during the run
}
# Run reasons after which SLOs are still judged on what was measured.
JUDGED_DESPITE: frozenset[str] = frozenset({"worker_lost", "output_failed", "interrupted",
                                            "aborted"})
BUDGET_METRICS: frozenset[str] = frozenset({"error_rate", "success_rate", "goodput"})


def status_of(reasons: Iterable[Reason]) -> Status:
    statuses = {RUN_REASONS.get(r.kind, "failed") for r in reasons}
    return next((s for s in SEVERITY if s in statuses), "passed")


def legacy_reasons(results: RunResults) -> list[Reason]:
    """What a schema-1 file says about its run: interrupted, or a `could not run:` note."""
    reasons = [Reason(kind="worker_failed", message=note.removeprefix("could not run: "))
               for note in results.meta.notes if note.startswith("could not run: ")]
    if results.meta.interrupted:
        reasons.append(Reason(kind="interrupted", message="the run was interrupted"))
    return reasons


def run_reasons(results: RunResults) -> list[Reason]:
    """The reasons of a saved outcome that came from the run (kept when re-judging)."""
    if results.outcome is None:
        return legacy_reasons(results)
    return [r for r in results.outcome.reasons if r.kind in RUN_REASONS]


def conclude(results: RunResults, reasons: Iterable[Reason] = ()) -> Outcome:
    """Judge `results` (SLOs already evaluated) with the run's own `reasons`; store and return
    the outcome. SLOs that cannot be judged are marked so (`passed = None`)."""
    reasons = list(reasons)
    run_status = status_of(reasons)
    blocking = [r for r in reasons if RUN_REASONS.get(r.kind) in
                ("could_not_run", "invalid_measurement") and r.kind not in JUDGED_DESPITE]
    why = ""
    if blocking:
        why = ("the load generator was the bottleneck (see the run case)"
               if RUN_REASONS[blocking[0].kind] == "invalid_measurement" else
               "the run could not be carried out (see the run case)")
    answers_only = bool(blocking) and all(RUN_REASONS[r.kind] == "invalid_measurement"
                                          for r in blocking)
    judge = _Judge(results, reasons, judged=not blocking, why=why, answers=answers_only)
    cases = judge.cases()
    derived = judge.reasons
    status = run_status
    if status == "passed" and (derived or any(c.status in ("failed", "error") for c in cases)):
        status = "failed"
    wrong = any(c.status == "failed" for c in cases
                if c.kind in ("request", "expectation", "slo"))
    if status == "invalid_measurement" and wrong:
        status = "failed"
    outcome = Outcome(status=status, exit_code=EXIT_CODES[status],
                      reasons=[*reasons, *derived], cases=cases)
    results.slos = judge.slos
    results.outcome = outcome
    return outcome


def headline(outcome: Outcome) -> str:
    """The one line a person reads first: `PASSED: ...`, `FAILED: ...`, `COULD NOT RUN: ...`."""
    word = outcome.status.replace("_", " ").upper()
    if outcome.status == "passed":
        counts = {k: sum(1 for c in outcome.cases if c.kind == k) for k in ("slo", "expectation")}
        return (f"PASSED: {counts['slo']} SLOs, {counts['expectation']} expectations, "
                f"{sum(1 for c in outcome.cases if c.kind == 'request')} requests")
    if outcome.status == "failed":
        failed = [c for c in outcome.cases if c.status in ("failed", "error")]
        parts = []
        for kind, noun in (("slo", "SLO"), ("expectation", "expectation"), ("request", "request")):
            n = sum(1 for c in failed if c.kind == kind)
            total = sum(1 for c in outcome.cases if c.kind == kind)
            if n:
                parts.append(f"{n} of {total} {noun}{'s' if total != 1 else ''} failed")
        aborted = next((r for r in outcome.reasons if r.kind == "aborted"), None)
        if aborted is not None:
            parts.insert(0, aborted.message)
        if any(RUN_REASONS.get(r.kind) == "invalid_measurement" for r in outcome.reasons):
            parts.append("the client was also the bottleneck, so SLOs were not judged "
                         "(see the run case)")
        return "FAILED: " + ("; ".join(parts) or "see the test cases")
    run = [r for r in outcome.reasons if r.kind in RUN_REASONS]
    return f"{word}: " + "; ".join(r.message for r in run)


# -- the judge -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Budget:
    """An SLO that declares how many failed calls a scope may have."""

    text: str
    phase: str | None
    request: str | None
    target: str | None

    def covers(self, phase: str, sweep: str | None, request: str, target: str) -> bool:
        return (self.phase in (None, phase, sweep) and
                (self.request is None or request == self.request or
                 request.startswith(self.request + ".")) and
                self.target in (None, target))


class _Judge:
    def __init__(self, results: RunResults, reasons: list[Reason], *, judged: bool,
                 why: str, answers: bool = False) -> None:
        self.results = results
        self.judged = judged
        self.answers = answers      # not judged, except for what the server answered
        self.why = why
        self.interrupted = any(r.kind in ("interrupted", "aborted") for r in reasons)
        self.run_reasons = [r for r in reasons if r.kind in RUN_REASONS]
        self.reasons: list[Reason] = []
        self.budgets = [_Budget(s.text, s.scope.get("phase"), s.scope.get("request"),
                                s.scope.get("target"))
                        for s in results.slos if s.metric in BUDGET_METRICS]
        self.phases = {p.name: p for p in results.phases}
        self.slos = [self._slo(s) for s in results.slos]

    # SLOs ---------------------------------------------------------------------------
    def _slo(self, slo: SloResult) -> SloResult:
        if not self.judged:
            refused = self._refused_budget(slo) if self.answers else None
            if refused is not None:
                return refused
            return slo.model_copy(update={"passed": None, "cause": None,
                                          "message": f"not judged: {self.why}"})
        # a failed SLO says what the telemetry showed where it failed (assertions/cause.py)
        return slo.model_copy(update={"cause": explain(self.results, slo)
                                      if slo.passed is False else None})

    def _refused_budget(self, slo: SloResult) -> SloResult | None:
        """An error budget the server's own refusals (HTTP error statuses) already exceed:
        failed whatever the client added, so judged although the client was the
        bottleneck. None when it cannot be told (then the SLO is not judged)."""
        if slo.metric not in ("error_rate", "success_rate") or slo.scope.get("window") or \
                slo.op is None or slo.threshold is None:
            return None
        scope = slo.scope
        counters = aggregate(self.results, scope.get("phase"), scope.get("request"),
                             scope.get("target")).counters
        if not counters.requests:
            return None
        refused = counters.errors.get("http", 0) / counters.requests
        # the server refused at least this share; the client's own errors can only add
        bound = refused if slo.metric == "error_rate" else 1 - refused
        still = OPS[slo.op](bound, slo.threshold)
        worse = slo.op in ("<", "<=", "==") if slo.metric == "error_rate" else \
            slo.op in (">", ">=", "==")
        if still or not worse:
            return None
        word = "at least" if slo.metric == "error_rate" else "at most"
        return slo.model_copy(update={
            "passed": False, "measured": bound,
            "message": f"{slo.metric} was {word} {show(slo.metric, bound)} from the calls the "
                       f"server refused with an HTTP error status alone, expected {slo.op} "
                       f"{show(slo.metric, slo.threshold)}: failed however the client's own "
                       "delay is counted"})

    # cases --------------------------------------------------------------------------
    def cases(self) -> list[Case]:
        cases = [self._run_case()]
        for index, slo in enumerate(self.slos):
            cases.append(self._slo_case(index, slo))
        if self.results.baseline is not None:
            cases.append(self._baseline_case())
        requests = self.results.requests or _requests_seen(self.results)
        for request in requests:
            cases.append(self._request_case(request))
            for step in request.steps:
                for expectation in step.expectations:
                    cases.append(self._expectation_case(request, step, expectation))
        return cases

    def _run_case(self) -> Case:
        """An error when the run could not be carried out, was cut short or measured the
        client; failed when an `abort: true` SLO stopped it."""
        run = [r for r in self.run_reasons if RUN_REASONS[r.kind] != "failed"]
        if run:
            return Case(kind="run", name="run", status="error",
                        message="; ".join(r.message for r in run))
        aborted = [r for r in self.run_reasons if r.kind == "aborted"]
        if aborted:
            return Case(kind="run", name="run", status="failed", message=aborted[0].message)
        return Case(kind="run", name="run", status="passed", message="the run completed")

    def _baseline_case(self) -> Case:
        base = self.results.baseline
        assert base is not None
        name = f"baseline {base.file}"
        if not self.judged:
            return Case(kind="baseline", name=name, status="skipped",
                        message=f"not judged: {self.why}")
        if base.regressions:
            self.reasons.append(Reason(kind="regressed", message=base.line,
                                       detail={"baseline": base.file,
                                               "regressions": base.regressions}))
            return Case(kind="baseline", name=name, status="failed",
                        message=base.line + "\n" + "\n".join(base.regressions))
        return Case(kind="baseline", name=name, status="passed", message=base.line)

    def _slo_case(self, index: int, slo: SloResult) -> Case:
        name = _slo_name(slo)
        if slo.passed is None:
            return Case(kind="slo", name=name, status="skipped", message=slo.message, slo=index)
        if not slo.passed:
            self.reasons.append(Reason(kind="slo_failed", message=slo.message,
                                       detail={"slo": slo.text, "where": slo.where}))
        partial = " (partial results: the run was stopped early)" if self.interrupted else ""
        cause = f"\n{slo.cause.text}" if slo.cause is not None else ""
        return Case(kind="slo", name=name, status="passed" if slo.passed else "failed",
                    message=slo.message + partial + cause, slo=index)

    def _scopes(self, name: str) -> list[tuple[str, str | None, str, Counters]]:
        """(phase, sweep, target, counters) of `name`'s scopes outside warmup phases."""
        out = []
        for scope in self.results.scopes:
            if scope.request != name:
                continue
            phase = self.phases.get(scope.phase)
            if phase is not None and phase.warmup:
                continue
            out.append((scope.phase, phase.sweep if phase else None, scope.target,
                        scope.counters))
        return out

    def _unbudgeted(self, step: StepInfo) -> tuple[dict[str, int], str | None]:
        """Failed calls of `step` no budget covers (by class), and the budget that covers
        the rest (for the message)."""
        if step.expects_error:
            return {}, "expect.error"
        loose: dict[str, int] = {}
        covering: str | None = None
        for phase, sweep, target, counters in self._scopes(step.name):
            errors = {k: n for k, n in counters.errors.items()
                      if n and not (k == "cancelled" and self.interrupted)}
            if not errors:
                continue
            budget = next((b for b in self.budgets if b.covers(phase, sweep, step.name, target)),
                          None)
            if budget is not None:
                covering = covering or budget.text
                continue
            for k, n in errors.items():
                loose[k] = loose.get(k, 0) + n
        return loose, covering

    def _request_case(self, request: RequestInfo) -> Case:
        name = request.name
        first = request.steps[0] if request.steps else StepInfo(name=name)
        every = [s for s in self.results.scopes if s.request == first.name]
        sent = sum(s.counters.requests for s in every)
        if not self.judged:
            refused = self._refused(request) if self.answers else ""
            if refused:
                return Case(kind="request", name=name, request=name, status="failed",
                            message=refused)
            return Case(kind="request", name=name, request=name, status="skipped",
                        message=f"not judged: {self.why}")
        if sent == 0:
            total = sum(s.counters.requests for s in self.results.scopes if "." not in s.request)
            message = (f"never sent: the run sent {total:,} requests and none was {name!r} "
                       "(choose it in a phase, or give it a larger weight)")
            self.reasons.append(Reason(kind="never_sent", message=f"{name}: {message}",
                                       detail={"request": name}))
            return Case(kind="request", name=name, request=name, status="failed", message=message)
        problems: list[str] = []
        notes: list[str] = []
        for step in request.steps or [first]:
            counters = Counters()
            for _, _, _, c in self._scopes(step.name):
                counters.add(c)
            label = step.name if len(request.steps) > 1 else name
            loose, covering = self._unbudgeted(step)
            if loose:
                failed = sum(loose.values())
                text = (f"{label}: {failed:,} of {counters.requests:,} calls failed "
                        f"({_classes(loose)}{self._example(step.name)}) and the scenario "
                        "declares no error budget for them (an SLO on error_rate, success_rate "
                        "or goodput, or expect.error)")
                problems.append(text)
                self.reasons.append(Reason(kind="unbudgeted_errors", message=text,
                                           detail={"request": step.name, "errors": loose}))
            elif counters.error_total and covering:
                notes.append(f"{counters.error_total:,} failed calls within the error budget "
                             f"({covering})")
            if counters.not_sent and not self.interrupted:
                text = (f"{label}: {counters.not_sent:,} of "
                        f"{counters.requests + counters.not_sent:,} scheduled requests were "
                        "never sent (the in-flight limit was reached, or the phase ended "
                        "before they could start)")
                problems.append(text)
                self.reasons.append(Reason(kind="not_sent", message=text,
                                           detail={"request": step.name,
                                                   "not_sent": counters.not_sent}))
        if problems:
            return Case(kind="request", name=name, request=name, status="failed",
                        message="; ".join(problems))
        ok = sum(s.counters.ok for s in every)
        message = f"{sent:,} sent, {ok:,} ok" + (f"; {'; '.join(notes)}" if notes else "")
        return Case(kind="request", name=name, request=name, status="passed", message=message)

    def _refused(self, request: RequestInfo) -> str:
        """Calls the server refused with an HTTP error status that no budget covers."""
        problems = []
        for step in request.steps or [StepInfo(name=request.name)]:
            loose, _ = self._unbudgeted(step)
            if loose.get("http"):
                problems.append(f"{step.name}: {loose['http']:,} calls were refused with an "
                                f"HTTP error status{self._example(step.name)}, and the scenario "
                                "declares no error budget for them (judged although the "
                                "client was the bottleneck: it was the server's answer)")
        for text in problems:
            self.reasons.append(Reason(kind="unbudgeted_errors", message=text,
                                       detail={"request": request.name}))
        return "; ".join(problems)

    def _example(self, request: str) -> str:
        for error in self.results.errors:
            if error.request == request and error.samples:
                return f"; e.g. {error.error}: {error.samples[0].message}"
        return ""

    def _expectation_case(self, request: RequestInfo, step: StepInfo, expectation: str) -> Case:
        name = f"{step.name}: {expectation}"
        check = next((c for c in self.results.checks
                      if c.request == step.name and c.expectation == expectation), None)
        check = check or CheckSummary(request=step.name, expectation=expectation)
        if check.failed:
            first = check.samples[0].message if check.samples else ""
            total = check.passed + check.failed
            message = f"{check.failed:,} of {total:,} responses failed {expectation}: {first}"
            self.reasons.append(Reason(kind="expectation_failed", message=f"{name}: {message}",
                                       detail={"request": step.name, "expectation": expectation}))
            return Case(kind="expectation", name=name, request=request.name, status="failed",
                        message=message)
        unchecked = {k: n for k, n in check.unchecked.items()
                     if n and not (k == "cancelled" and self.interrupted)}
        loose, covering = self._unbudgeted(step)
        if not self.judged:
            if self.answers and unchecked.get("http") and loose.get("http"):
                message = (f"{check.passed:,} passed, {unchecked['http']:,} refused with an "
                           "HTTP error status before they could be checked")
                self.reasons.append(Reason(kind="expectation_failed",
                                           message=f"{name}: {message}",
                                           detail={"request": step.name,
                                                   "expectation": expectation,
                                                   "unchecked": {"http": unchecked["http"]}}))
                return Case(kind="expectation", name=name, request=request.name,
                            status="failed", message=message)
            return Case(kind="expectation", name=name, request=request.name, status="skipped",
                        message=f"not judged: {self.why}")
        if unchecked and loose:
            n = sum(unchecked.values())
            message = (f"{check.passed:,} passed, {n:,} failed before they could be checked "
                       f"({_classes(unchecked)})")
            self.reasons.append(Reason(kind="expectation_failed", message=f"{name}: {message}",
                                       detail={"request": step.name, "expectation": expectation,
                                               "unchecked": unchecked}))
            return Case(kind="expectation", name=name, request=request.name, status="failed",
                        message=message)
        if check.passed == 0:
            message = (f"never checked: no response to {step.name!r} arrived"
                       if not unchecked else
                       f"never checked: every call failed first ({_classes(unchecked)}), "
                       f"within the error budget ({covering})")
            self.reasons.append(Reason(kind="expectation_failed", message=f"{name}: {message}",
                                       detail={"request": step.name, "expectation": expectation}))
            return Case(kind="expectation", name=name, request=request.name, status="failed",
                        message=message)
        message = f"{check.passed:,} of {check.passed:,} responses passed"
        if unchecked:
            message += (f"; {sum(unchecked.values()):,} failed before they could be checked, "
                        f"within the error budget ({covering})")
        return Case(kind="expectation", name=name, request=request.name, status="passed",
                    message=message)


def _classes(errors: dict[str, int]) -> str:
    return ", ".join(f"{k} ×{n:,}" for k, n in sorted(errors.items(), key=lambda kv: -kv[1]))


def _slo_name(slo: SloResult) -> str:
    scope = ", ".join(f"{k}={v}" for k, v in slo.scope.items() if v is not None)
    return f"{slo.text} [{scope}]" if scope else slo.text


def _requests_seen(results: RunResults) -> list[RequestInfo]:
    """For files that do not list their requests (schema 1): the ones that were measured."""
    steps: dict[str, list[StepInfo]] = {}
    targets: dict[str, str] = {}
    expectations: dict[str, list[str]] = {}
    for check in results.checks:
        expectations.setdefault(check.request, []).append(check.expectation)
    for scope in results.scopes:
        flow = scope.request.split(".", 1)[0]
        targets.setdefault(flow, scope.target)
        names = [s.name for s in steps.setdefault(flow, [])]
        if scope.request not in names:
            steps[flow].append(StepInfo(name=scope.request,
                                        expectations=expectations.get(scope.request, [])))
    return [RequestInfo(name=n, target=targets[n], steps=s) for n, s in steps.items()]
