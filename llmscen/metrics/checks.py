"""Is a results file sound? Checked when a user's file is read (`llmscen report`, `compare`).

The model (metrics/results.py) checks shapes and types; this checks what it cannot:
histograms that decode, counts that are not negative and add up (sent = ok + errors +
check failures), phases that do not end before they start. Every problem names the
scope and the field, so a hand-edited or truncated file is easy to mend.
"""

from __future__ import annotations

from llmscen.metrics.histogram import Histogram
from llmscen.metrics.results import COUNT_FIELDS, Counters, ResultsError, RunResults, SeriesPoint

MAX_PROBLEMS = 10


def _negative(where: str, counts: Counters | SeriesPoint) -> list[str]:
    out = [f"{where}: {name} is {getattr(counts, name)}, a count cannot be negative"
           for name in COUNT_FIELDS if getattr(counts, name) < 0]
    out += [f"{where}: errors.{k} is {n}, a count cannot be negative"
            for k, n in counts.errors.items() if n < 0]
    return out


def _decodes(where: str, text: str) -> str | None:
    try:
        Histogram.decode(text)
    except Exception as exc:  # hdrh raises several kinds on corrupt input
        return f"{where}: not a readable HDR histogram ({type(exc).__name__}: {exc})"
    return None


def check_results(results: RunResults, source: str) -> None:
    """Raise `ResultsError` listing what is wrong with `results`; nothing when it is sound."""
    problems: list[str] = []
    for i, phase in enumerate(results.phases):
        if phase.ended < phase.started:
            problems.append(f"phases[{i}] ({phase.name}): ended {phase.ended:g}s is before "
                            f"started {phase.started:g}s")
    timed = {p.name: p.wall for p in results.phases}
    for i, scope in enumerate(results.scopes):
        where = (f"scopes[{i}] (phase {scope.phase}, request {scope.request}, "
                 f"target {scope.target})")
        c = scope.counters
        problems += _negative(f"{where}: counters", c)
        for name in ("input_tokens", "tokens_estimated", "images", "bytes_received"):
            if getattr(c, name) < 0:
                problems.append(f"{where}: counters.{name} is {getattr(c, name)}, a count "
                                "cannot be negative")
        if c.requests != c.ok + c.error_total + c.check_failures:
            problems.append(f"{where}: counters.requests is {c.requests}, but ok + errors + "
                            f"check_failures is {c.ok + c.error_total + c.check_failures}")
        if c.requests and scope.phase in timed and timed[scope.phase] <= 0:
            problems.append(f"{where}: the phase sent {c.requests} requests in a wall time of "
                            f"{timed[scope.phase]:g}s")
        for metric, text in scope.histograms.items():
            problem = _decodes(f"{where}: histograms.{metric}", text)
            if problem:
                problems.append(problem)
        if len(problems) >= MAX_PROBLEMS:
            break
    for i, series in enumerate(results.series.scopes):
        for point in series.points:
            where = f"series.scopes[{i}] (phase {series.phase}, request {series.request}) t={point.t}"
            problems += _negative(where, point)
            for name in ("latency", "ttft"):
                text = getattr(point, name)
                problem = _decodes(f"{where}: {name}", text) if text else None
                if problem:
                    problems.append(problem)
            if len(problems) >= MAX_PROBLEMS:
                break
    if problems:
        shown = problems[:MAX_PROBLEMS]
        more = "\n  (and more)" if len(problems) > MAX_PROBLEMS else ""
        raise ResultsError(f"{source}: not a sound results file:\n  " + "\n  ".join(shown) + more)
