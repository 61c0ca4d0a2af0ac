"""Are these runs comparable? What a reader of a comparison must be told first.

Runs of different scenarios (another name, file, phases or requests), runs
whose outcome says their measurement is unsound (interrupted, could not run,
a saturated load generator) and runs with notes can still be compared, but
the verdict means less: each becomes a warning.
"""

from __future__ import annotations

from collections.abc import Sequence

from llmscen.metrics.results import RunResults

# outcomes whose numbers do not describe the deployment (a failed SLO does not matter here)
UNSOUND = {"interrupted": "was interrupted: its results are partial",
           "could_not_run": "could not be carried out: its results are partial",
           "invalid_measurement": "is not a valid measurement"}


def _phases(run: RunResults) -> tuple[tuple[str, str, float | None], ...]:
    return tuple((p.name, p.kind, p.planned_duration) for p in run.phases)


def _requests(run: RunResults) -> frozenset[str]:
    return frozenset(s.request for s in run.scopes)


def _show_phases(phases: tuple[tuple[str, str, float | None], ...]) -> str:
    shown = [f"{name} ({kind}{f', {planned:g}s' if planned is not None else ''})"
             for name, kind, planned in phases]
    return ", ".join(shown) or "none"


def _differences(a: RunResults, b: RunResults) -> list[str]:
    """How run `b` differs from run `a` in what was run."""
    out = []
    if a.meta.scenario != b.meta.scenario:
        out.append(f"scenario {a.meta.scenario!r} vs {b.meta.scenario!r}")
    if a.meta.file != b.meta.file:
        out.append(f"file {a.meta.file or '?'} vs {b.meta.file or '?'}")
    if _phases(a) != _phases(b):
        out.append(f"phases {_show_phases(_phases(a))} vs {_show_phases(_phases(b))}")
    mine, theirs = _requests(a), _requests(b)
    if mine != theirs:
        parts = []
        if mine - theirs:
            parts.append("only in the first: " + ", ".join(sorted(mine - theirs)))
        if theirs - mine:
            parts.append("only in the second: " + ", ".join(sorted(theirs - mine)))
        out.append("requests " + "; ".join(parts))
    return out


def _label(side: str, index: int, count: int, files: Sequence[str]) -> str:
    name = f"{side} run {index + 1} of {count}" if count > 1 else f"{side} run"
    return f"{name} ({files[index]})" if index < len(files) else name


def scenario_warnings(bases: Sequence[RunResults], news: Sequence[RunResults],
                      base_files: Sequence[str] = (), new_files: Sequence[str] = ()) -> list[str]:
    """One line per reason to distrust the comparison."""
    out: list[str] = []
    first = bases[0]
    labelled = [(_label("base", i, len(bases), base_files), r) for i, r in enumerate(bases)]
    labelled += [(_label("new", i, len(news), new_files), r) for i, r in enumerate(news)]
    across = _differences(first, news[0])
    if across:
        out.append("base and new are different scenarios: " + "; ".join(across))
    for label, run in labelled[1:]:
        if run is news[0]:
            continue
        reference = first if label.startswith("base") else news[0]
        differs = _differences(reference, run)
        if differs:
            out.append(f"{label} differs from the first of its side: " + "; ".join(differs))
    for label, run in labelled:
        out += _doubts(label, run)
    return out


def _doubts(label: str, run: RunResults) -> list[str]:
    """What the run itself says is wrong with its measurement."""
    out = []
    outcome = run.outcome
    if outcome is not None and outcome.status in UNSOUND:
        why = "; ".join(r.message for r in outcome.reasons[:2]   # beyond the status itself
                        if r.kind != outcome.status and r.message not in run.meta.notes)
        out.append(f"{label} {UNSOUND[outcome.status]}" + (f" ({why})" if why else ""))
    elif run.meta.interrupted:
        out.append(f"{label} was interrupted: its results are partial")
    out += [f"{label}: {note}" for note in run.meta.notes]
    return out
