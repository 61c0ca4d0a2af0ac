"""Was the load generator the bottleneck? The rules behind `invalid_measurement`.

Latencies count from each request's intended start, so a client that falls
behind its schedule inflates them and the server would be blamed. A phase's
measurement is invalid when (docs/results.md, "Outcome"):

- open phases: in at least 3 seconds of the phase (every second of a shorter
  one, by its planned duration), and at least a tenth of them, the client got to a request more than
  LAG_BOUND after its intended time (its own lag: waiting for an in-flight slot
  the phase's `max_in_flight` allows is not the client's fault, and latency
  counts that wait anyway), or arrivals were dropped because the client could
  not start them in time;
- any phase: a worker's event loop woke more than LOOP_LAG_BOUND late in at
  least two seconds (a wake-up k seconds late counts for the k + 1 seconds it
  spans: a loop too busy to report is not a quiet one), or a worker used
  ≥ 95 % of a core for at least half of the phase's seconds (and 2 of them):
  a client out of CPU delays reading answers too, which latency would charge
  to the server;
- any phase: requests waited or were dropped because the client's own
  in-flight limit (its open-file descriptors) was reached, or calls failed with
  "too many open files".

A short spike (a garbage collection, a burst) that the schedule absorbs does
not count, and a phase that delivered the asked rate is never called saturated.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from llmscen.metrics.query import aggregate
from llmscen.metrics.results import PhaseInfo, Reason, RunResults
from llmscen.spec.units import show, show_value

LAG_BOUND = 0.05          # seconds
LOOP_LAG_BOUND = 0.1      # seconds
CPU_BOUND = 0.95          # cores
ADVICE = ("lower the rate, add --workers (this machine has {cores} cores) or machines "
          "(--engine ray); measured latencies would include the client's own delay")


@dataclass
class ClientFigures:
    """What the workers said about themselves during one phase."""

    seconds: int = 0
    cpu: dict[int, list[float]] = field(default_factory=dict)        # worker → per second
    loop_lag: dict[int, list[float]] = field(default_factory=dict)
    lag: dict[int, list[float]] = field(default_factory=dict)        # client lag, per second

    @property
    def late_seconds(self) -> int:
        return max((sum(1 for x in v if x > LAG_BOUND) for v in self.lag.values()), default=0)

    @property
    def max_lag(self) -> float:
        return max((x for v in self.lag.values() for x in v), default=0.0)

    def busiest(self) -> tuple[int, float] | None:
        means = {w: sum(v) / len(v) for w, v in self.cpu.items() if v}
        if not means:
            return None
        worker = max(means, key=lambda w: means[w])
        return worker, means[worker]


def _cpu_text(figures: ClientFigures) -> str:
    busiest = figures.busiest()
    if busiest is None:
        return ""
    worker, mean = busiest
    peak = max(figures.cpu[worker], default=0.0)
    who = f"worker {worker}" if len(figures.cpu) > 1 else "the client"
    return f"; {who} used {mean * 100:.0f}% of a core on average ({peak * 100:.0f}% at most)"


def judge_phase(results: RunResults, phase: PhaseInfo, figures: ClientFigures,
                dropped: int) -> Reason | None:
    """A `client_saturated` reason for `phase`, or None when the client kept up."""
    agg = aggregate(results, phase=phase.name)
    sent = agg.counters.requests
    cores = os.cpu_count() or 1
    if phase.kind == "open":
        seconds = max((len(v) for v in figures.lag.values()), default=0)
        late = figures.late_seconds
        short = max(1, math.ceil(phase.planned_duration or seconds or 1))
        lagging = late >= min(3, short) and late >= seconds / 10
        asked = phase.offered_rate
        # a client behind its schedule sends past the planned end: the rate is over the
        # time the sending really took
        took = max(phase.wall, phase.planned_duration or 0.0) or 1.0
        rate = (f"; asked {show_value('rate', asked)}, sent {sent:,} in {took:.3g}s "
                f"({show_value('rate', sent / took)})" if asked else "")
        if not (lagging or dropped):
            # its loop stalled (the seconds it did report say too little), or it sent on
            # time with no CPU to spare: then answers wait in their sockets, unmeasured
            p99 = agg.value("schedule_lag", "p99")
            kept = (f"; it kept its schedule (lag p99 {show('schedule_lag', p99)}), but a "
                    "client out of CPU is late reading answers too" if p99 is not None else "")
            return _busy(phase, figures, cores, rate, kept)
        drop = f"; {dropped:,} due requests could not be started at all" if dropped else ""
        # the per-second reports miss what started after the last one, and an in-flight
        # slot wait comes after the client's own lag: the histogram has the whole delay
        worst = max(agg.value("schedule_lag", "max") or 0.0, figures.max_lag)
        sent_late = (f" and sent them up to {show('schedule_lag', worst)} after it"
                     if worst > figures.max_lag * 1.1 else "")
        return Reason(kind="client_saturated", message=(
            f"the load generator was the bottleneck in phase {phase.name!r}: it got to "
            f"requests up to {show('schedule_lag', figures.max_lag)} after their intended "
            f"time{sent_late}, over {show('schedule_lag', LAG_BOUND)} late in {late} of "
            f"{seconds} seconds{rate}{drop}{_cpu_text(figures)} — "
            + ADVICE.format(cores=cores)),
            detail={"phase": phase.name, "client_lag_max": figures.max_lag,
                    "schedule_lag_max": worst, "late_seconds": late, "seconds": seconds,
                    "asked_rate": asked, "sent": sent, "seconds_sending": took,
                    "dropped": dropped})
    if phase.kind == "closed":
        return _busy(phase, figures, cores)
    return None


def _busy(phase: PhaseInfo, figures: ClientFigures, cores: int, rate: str = "",
          kept: str = "") -> Reason | None:
    """A worker whose loop stalled, or whose CPU was at its limit, for much of the phase;
    `rate` says what an open phase asked and sent, `kept` how well it kept its schedule
    (said when the CPU is the reason)."""
    # a wake-up k seconds late stands for the k + 1 seconds it spans, unreported
    stalls = {w: sum(1 + int(x) for x in v if x > LOOP_LAG_BOUND)
              for w, v in figures.loop_lag.items()}
    pegged = {w: sum(1 for x in v if x >= CPU_BOUND) for w, v in figures.cpu.items()}
    stalled = any(n >= 2 for n in stalls.values())
    busy = any(n >= 2 and n >= len(figures.cpu[w]) / 2 for w, n in pegged.items())
    if not (stalled or busy):
        return None
    why = ("its event loop woke over " + show("schedule_lag", LOOP_LAG_BOUND) +
           " late in " + str(max(stalls.values())) + " seconds") if stalled else \
        "a worker's CPU was at its limit"
    return Reason(kind="client_saturated", message=(
        f"the load generator was the bottleneck in phase {phase.name!r}: {why}"
        f"{_cpu_text(figures)}{rate}{'' if stalled else kept} — " + ADVICE.format(cores=cores)),
        detail={"phase": phase.name})


def client_limit(descriptors: tuple[int, int], limited: int, waited: int,
                 emfile: int) -> Reason | None:
    """A `client_limit` reason when the client ran out of descriptors or in-flight room."""
    if not (limited or waited or emfile):
        return None
    used, limit = descriptors
    parts = []
    if waited:
        parts.append(f"{waited:,} requests waited because the client's in-flight limit (its "
                     "open-file limit) was reached")
    if limited:
        parts.append(f"{limited:,} requests were dropped for the same reason")
    if emfile:
        parts.append(f"{emfile:,} calls failed with 'too many open files'")
    return Reason(kind="client_limit", message=(
        "the load generator ran out of file descriptors: " + "; ".join(parts) +
        f" (limit {limit:,}, {used:,} open at the last report) — raise `ulimit -n`, set "
        "max_in_flight, or spread the load over more workers or machines"),
        detail={"not_sent": limited, "emfile": emfile, "limit": limit})
