"""What the live view shows, computed once a second from the driver's `Live`.

Two clocks, on purpose. Counts, rates and in flight come from every worker's
running totals, so they are current. Latency, TTFT and error % come from the
per-second series, which a worker seals about two seconds late (a second stays
open for late completions): they describe the last complete `INTERVAL_S`
seconds, and the view says which.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from llmscen.compile.plan import PhasePlan
from llmscen.driver import messages as m
from llmscen.driver.live import Live
from llmscen.metrics.histogram import Histogram
from llmscen.metrics.merge import merge_points
from llmscen.metrics.results import SeriesPoint

INTERVAL_S = 5          # seconds the interval figures (latency, TTFT, error %) cover
RATE_WINDOW_S = 3.0     # seconds the achieved rate is measured over


@dataclass(frozen=True)
class Percentiles:
    p50: float | None = None     # seconds
    p95: float | None = None

    @classmethod
    def of(cls, encoded: str | None) -> Percentiles:
        if not encoded:
            return cls()
        h = Histogram.decode(encoded)
        p50, p95 = h.stat("p50"), h.stat("p95")
        return cls(None if p50 is None else p50 / 1e6, None if p95 is None else p95 / 1e6)


@dataclass(frozen=True)
class WorkerFigures:
    index: int
    cpu: float               # cores
    loop_lag: float          # seconds
    schedule_lag: float      # seconds, worst this second
    in_flight: int
    users: int
    requests: int


@dataclass(frozen=True)
class Interval:
    """The last complete seconds of the series: [start, end)."""

    start: int
    end: int
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)    # by class, `check` excluded
    check_failures: int = 0
    latency: Percentiles = Percentiles()
    ttft: Percentiles = Percentiles()

    @property
    def error_share(self) -> float | None:
        return sum(self.errors.values()) / self.requests if self.requests else None


@dataclass(frozen=True)
class Frame:
    now: float                      # seconds since the run's origin (the latest report)
    settled: float                  # every worker has reported up to here
    phase: PhasePlan | None
    number: int                     # 1-based phase number (0: none yet)
    phases: int
    elapsed: float                  # seconds into the phase
    asked: float | None             # open: arrivals/s due now; closed: users due now
    sent_rate: float | None         # arrivals actually started per second, lately
    done_rate: float | None         # completions per second, lately
    users: int                      # closed phases: users running now
    in_flight: int
    counts: m.Counts                # this phase so far
    total: m.Counts                 # the run so far
    interval: Interval | None
    cpu: float                      # cores, every worker summed
    workers: list[WorkerFigures]

    @property
    def remaining(self) -> float | None:
        if self.phase is None or not self.phase.duration:
            return None
        return max(0.0, self.phase.duration - self.elapsed)


def _minus(a: m.Counts, b: m.Counts) -> m.Counts:
    errors = {k: n - b.errors.get(k, 0) for k, n in a.errors.items()}
    return m.Counts(a.requests - b.requests, a.ok - b.ok, a.check_failures - b.check_failures,
                    a.not_sent - b.not_sent, {k: n for k, n in errors.items() if n > 0})


class Figures:
    """Keeps the little history the figures need (rates, the phase's starting counts)."""

    def __init__(self, phases: int) -> None:
        self.phases = phases
        self.number = 0
        self.baseline = m.Counts()
        self.history: deque[tuple[float, int, int]] = deque()   # (now, done, in flight)

    def phase_started(self, live: Live) -> None:
        self.number += 1
        self.baseline = live.counts()
        self.history.clear()

    def frame(self, live: Live, *, detailed: bool = True) -> Frame:
        """The figures now; `detailed=False` leaves out the interval's percentiles and error
        classes, which cost milliseconds of the event loop's time that the run shares."""
        total = live.counts()
        in_flight = live.in_flight()
        reports = [v.last for v in live.workers.values() if v.last is not None]
        now = max((r.now for r in reports), default=0.0)
        current = live.phases[-1] if live.phases else None
        phase = current.phase if current is not None else None
        elapsed = max(0.0, now - current.started) if current is not None else 0.0
        self.history.append((now, total.requests, in_flight))
        while len(self.history) > 2 and now - self.history[1][0] >= RATE_WINDOW_S:
            self.history.popleft()
        sent_rate = done_rate = None
        first = self.history[0]
        if now - first[0] >= 0.5:
            span = now - first[0]
            done_rate = (total.requests - first[1]) / span
            sent_rate = max(0.0, (total.requests - first[1] + in_flight - first[2]) / span)
        workers = [WorkerFigures(r.worker, r.cpu, r.loop_lag, r.max_lag, r.in_flight, r.users,
                                 r.counts.requests) for r in sorted(reports, key=lambda r: r.worker)]
        return Frame(
            now=now, settled=min((r.now for r in reports), default=0.0), phase=phase,
            number=self.number, phases=self.phases, elapsed=elapsed,
            asked=phase.load_at(elapsed) if phase is not None else None,
            sent_rate=sent_rate, done_rate=done_rate,
            users=sum(r.users for r in reports), in_flight=in_flight,
            counts=_minus(total, self.baseline), total=total,
            interval=interval(live, phase.name if phase else None) if detailed else None,
            cpu=sum(r.cpu for r in reports), workers=workers)


def interval(live: Live, phase: str | None, seconds: int = INTERVAL_S) -> Interval | None:
    """The last `seconds` complete seconds of `phase`'s series, every worker and scope merged."""
    if phase is None:
        return None
    end = live.sealed()
    start = end - seconds
    points: list[SeriesPoint] = []
    for mine in live.points.values():
        for key, by_second in mine.items():
            if key[0] != phase and not key[0].startswith(phase + "."):   # groups: phase.group
                continue
            points += [p for t, p in by_second.items() if start <= t < end]
    if not points:
        return None
    merged = merge_points(points)
    first = min(p.t for p in points)
    return Interval(start=max(start, first), end=end, requests=merged.requests,
                    errors={k: n for k, n in merged.errors.items() if n},
                    check_failures=merged.check_failures,
                    latency=Percentiles.of(merged.latency), ttft=Percentiles.of(merged.ttft))
