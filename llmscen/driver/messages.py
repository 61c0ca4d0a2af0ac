"""What the driver and its workers say to each other: typed, picklable messages.

The same messages travel inside one process (an in-process worker), over a
multiprocessing queue (`--workers N`) and over Ray (`--engine ray`), so the
remote path is the local path. Workers send per-second `Progress` (counts,
sealed per-second series, what the client itself is doing) and periodic
`Snapshot`s of everything they measured, so a lost worker loses at most its
last interval; `Final` carries a worker's complete results.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmscen.compile.plan import PhasePlan
from llmscen.metrics.results import ScopeSeries, TargetInfo

# The live export's histogram bounds, seconds: fine enough below a second for TTFT and
# ITL, up to what an image or a long answer takes. Workers count ITL into them.
LIVE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
                1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0)

# -- driver → worker -----------------------------------------------------------------


@dataclass(frozen=True)
class StartPhase:
    index: int            # into the plan's phases
    start_ns: int         # perf_counter_ns of the shared start (one clock per machine)
    origin_ns: int        # the run's time zero: when every worker was ready
    phase: PhasePlan | None = None   # a phase made during the run (a search's step), whole:
    #                                  each worker takes its share of it
    watch: bool = False   # this worker reads the targets' metrics during the phase: the
    #                       first live one (worker 0 unless it was lost)


@dataclass(frozen=True)
class SnapshotNow:
    """Send a `Snapshot` of everything measured so far, now."""


@dataclass(frozen=True)
class Scrape:
    """Read the targets' own metrics now; record them for `phase` (the watching worker)."""

    phase: str | None     # the phase that just ended (None: the first reading)


@dataclass(frozen=True)
class Share:
    """Values a `before:` flow captured, for every call of every worker from now on."""

    values: dict[str, object]


@dataclass(frozen=True)
class FaultStarted:
    """A fault of the plan hit `targets` at `at_ns`: measure the time to the first success."""

    targets: tuple[str, ...]
    at_ns: int
    what: str


@dataclass(frozen=True)
class Stop:
    abandon: bool = False  # cancel in-flight requests now instead of after a grace


@dataclass(frozen=True)
class Finish:
    """The last phase is done: close, and send `Final`."""


Command = StartPhase | SnapshotNow | Scrape | Share | FaultStarted | Stop | Finish

# -- worker → driver -----------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    worker: int
    in_flight_cap: int    # the client's own limit on requests in flight (descriptors)
    targets: list[TargetInfo] = field(default_factory=list)   # as this worker reached them
    #                       (worker 0 only): resolved URLs, what each server says it is


@dataclass(frozen=True)
class Failed:
    """The worker cannot go on; `kind` is a run reason of assertions/verdict.py."""

    worker: int
    kind: str
    message: str


@dataclass(frozen=True)
class Counts:
    """A worker's running totals (summed over its scopes)."""

    requests: int = 0
    ok: int = 0
    check_failures: int = 0
    not_sent: int = 0
    errors: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress:
    worker: int
    now: float                       # seconds since the shared origin
    phase: str
    counts: Counts
    tick: bool                       # one of the once-a-second reports of a running phase
    in_flight: int
    max_lag: float                   # seconds, worst schedule lag this second
    loop_lag: float                  # seconds, how late the worker's timer woke
    cpu: float                       # cores used this second
    points: list[ScopeSeries] = field(default_factory=list)   # seconds sealed since the last
    connect_streak: dict[str, int] = field(default_factory=dict)  # target → consecutive
    #                                  connection failures right now
    not_sent_by: dict[str, int] = field(default_factory=dict)  # why → count, so far
    descriptors: tuple[int, int] = (0, 0)   # open file descriptors, and the limit
    emfile: int = 0                  # calls that failed with "too many open files", so far
    client_waits: int = 0            # arrivals that waited for the client's in-flight limit
    users: int = 0                   # closed phases: virtual users running now
    rss: int = 0                     # bytes, the worker process's resident memory now
    # under --prometheus (plan.run.live_export): ITL gaps since the last report by (request,
    # target), counted into LIVE_BUCKETS (one count per bound, then +Inf) with their sum in µs
    itl: dict[tuple[str, str], tuple[list[int], int]] = field(default_factory=dict)
    server: dict[tuple[str, str], float] = field(default_factory=dict)   # worker 0: the
    #                                  latest reading of known server gauges, (target, series)


@dataclass(frozen=True)
class NotTheApi:
    """The first answers of a target say it is not the API the scenario declares."""

    worker: int
    target: str
    url: str
    evidence: str


@dataclass(frozen=True)
class PhaseDone:
    worker: int
    index: int
    started: float
    ended: float
    shared: dict[str, object] = field(default_factory=dict)   # what a `before:` phase captured


@dataclass(frozen=True)
class Note:
    worker: int
    message: str


@dataclass(frozen=True)
class Snapshot:
    worker: int
    results: bytes        # RunResults JSON without series (the driver has those)
    requests: int = 0     # how many requests it holds


@dataclass(frozen=True)
class Final:
    worker: int
    results: bytes        # the worker's complete RunResults JSON


Report = Ready | Failed | Progress | NotTheApi | PhaseDone | Note | Snapshot | Final
