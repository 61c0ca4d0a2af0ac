"""`expect: consistent` judged on merged results: identical requests, identical answers.

Each rendered request's reference is its most common answer in the reference phase
(`reference:`, else the first phase it was answered in); every answer to it, in every
phase, is compared with the reference by digest. The step's check summary then holds
the compared answers as passed and, when more differ than `max_differing` allows, the
differing ones as failed, with one example: the request, the phase, and where the two
answers part (escaped). It runs where every worker's answers meet, after the merge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmscen.assertions.expect import show
from llmscen.compile.plan import Plan
from llmscen.metrics.consistency import MAX_TEXT
from llmscen.metrics.results import CheckSummary, ConsistencyRecord, RunResults, Sample
from llmscen.spec.expect import Consistent

NAME = "consistent"


def consistency_specs(plan: Plan) -> dict[str, Consistent]:
    """The `consistent` expectation of every step that has one, by the step's metric name."""
    out = {}
    for request in plan.requests:
        multi = len(request.steps) > 1
        for step in request.steps:
            spec = getattr(step.expect, NAME, None)
            if spec is not None:
                out[f"{request.name}.{step.name}" if multi else request.name] = spec
    return out


@dataclass
class _Tally:
    compared: dict[str, int] = field(default_factory=dict)     # phase → answers compared
    differing: dict[str, int] = field(default_factory=dict)    # phase → ... that differ
    unreferenced: int = 0        # answers to requests never answered in the reference phase
    # (phase, record, answer, reference phase, reference answer) of differing answers
    examples: list[tuple[str, ConsistencyRecord, str, str, str]] = field(default_factory=list)


def _tally(records: list[ConsistencyRecord], spec: Consistent, order: dict[str, int]) -> _Tally:
    tally = _Tally()
    for record in records:
        phase = spec.reference or min(record.answers, key=lambda p: order.get(p, len(order)))
        counts = record.answers.get(phase)
        if not counts:
            tally.unreferenced += sum(n for c in record.answers.values() for n in c.values())
            continue
        reference = max(sorted(counts), key=lambda answer: counts[answer])
        for seen, answers in record.answers.items():
            for answer, n in answers.items():
                tally.compared[seen] = tally.compared.get(seen, 0) + n
                if answer != reference:
                    tally.differing[seen] = tally.differing.get(seen, 0) + n
                    tally.examples.append((seen, record, answer, phase, reference))
    return tally


def difference(reference: str | None, got: str | None) -> str:
    """Where two answers part, both quoted (escaped) around the first differing character."""
    if reference is None or got is None:
        return "the answers' digests differ (their texts were not kept)"
    at = next((i for i, (a, b) in enumerate(zip(reference, got, strict=False)) if a != b),
              min(len(reference), len(got)))
    if reference == got:    # both cut at MAX_TEXT: they part further on
        return f"the first {len(got):,} characters agree; the answers differ after them"
    start = max(0, at - 20)
    return (f"they part at character {at}: reference {show(reference[start:at + 30], 60)}, "
            f"got {show(got[start:at + 30], 60)}")


def _example(step: str, tally: _Tally, order: dict[str, int]) -> tuple[str, str]:
    """(message, the differing answer's excerpt) for the phase with most differences."""
    worst = max(sorted(tally.differing, key=lambda p: order.get(p, 0)),
                key=lambda p: tally.differing[p])
    there = [e for e in tally.examples if e[0] == worst]
    phase, record, answer, ref_phase, reference = next(
        (e for e in there if e[2] in e[1].texts and e[4] in e[1].texts), there[0])
    got = record.texts.get(answer)
    by_phase = ", ".join(f"{p} {tally.differing.get(p, 0):,}/{n:,}" for p, n in
                         sorted(tally.compared.items(), key=lambda kv: order.get(kv[0], 0)))
    message = (f"in phase {phase!r}, {tally.differing[phase]:,} of {tally.compared[phase]:,} "
               f"answers differ from the reference answer to the same request (its most "
               f"common answer in phase {ref_phase!r}); e.g. request {step!r} "
               f"[{record.key[:8]}] {show(record.label, 60)}: "
               f"{difference(record.texts.get(reference), got)} (differing/compared by "
               f"phase: {by_phase})")
    return message, got or ""


def judge_consistency(results: RunResults, specs: dict[str, Consistent]) -> None:
    """Fill the `consistent` check summary of every step in `specs` from `results.consistency`."""
    order = {p.name: i for i, p in enumerate(results.phases)}
    for step, spec in specs.items():
        tally = _tally([r for r in results.consistency if r.request == step], spec, order)
        summary = next((c for c in results.checks
                        if c.request == step and c.expectation == NAME), None)
        if summary is None:
            summary = CheckSummary(request=step, expectation=NAME)
            results.checks.append(summary)
        compared = sum(tally.compared.values())
        differing = sum(tally.differing.values())
        summary.passed, summary.failed, summary.samples = compared, 0, []
        notes = []
        if not compared and tally.unreferenced:
            summary.failed = tally.unreferenced
            summary.samples = [Sample(message=(
                f"none of the {tally.unreferenced:,} answers could be compared: their requests "
                f"were never answered in the reference phase {spec.reference!r}"))]
        elif differing and differing > spec.max_differing * compared:
            message, got = _example(step, tally, order)
            summary.passed, summary.failed = compared - differing, differing
            summary.samples = [Sample(message=message, output=got[:MAX_TEXT])]
        elif differing:
            notes.append(f"{step}: {differing:,} of {compared:,} answers differed from their "
                         f"reference, within max_differing {spec.max_differing:.2%}")
        if compared and tally.unreferenced:
            notes.append(f"{step}: {tally.unreferenced:,} answers were not compared for "
                         f"consistency: their requests were never answered in phase "
                         f"{spec.reference!r} (with --workers N, a phase of fewer users than "
                         "workers leaves the data rows of the idle workers out of it)")
        results.meta.notes = list(dict.fromkeys([*results.meta.notes, *notes]))
