"""The compiled plan: what a run will do, frozen and printable.

Everything here is resolved: sweeps expanded, names checked, units in base
units (seconds, per second, fractions). Plugin options are the plugin's own
validated pydantic models, so secrets stay `SecretStr` and dump as `**********`.
`Plan.secrets` holds every concrete secret the plan carries (spec/secrets.py says
which), so each process of a run builds the same `Scrubber`; it is never dumped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, SerializeAsAny, field_serializer

from llmscen.spec.secrets import Scrubber, masked, public_url


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class ServicePlan(Frozen):
    name: str
    kind: str                      # `openai-sim`, `triton-sim`, `command`, or a plugin service
    options: SerializeAsAny[BaseModel]   # the service's own options model (dumped whole)


class TargetPlan(Frozen):
    name: str
    plugin: str
    service: str | None = None
    url: str | None = None         # filled from the service at run time unless given
    options: SerializeAsAny[BaseModel]   # the plugin's own target options model (dumped whole)

    @field_serializer("url")
    def _public_url(self, url: str | None) -> str | None:
        return public_url(url)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, public_url(value) if name == "url" else value


class SyntheticPlan(Frozen):
    """Prompts made at the start of the run, of token lengths counted by `tokenizer`."""

    input_tokens: Any                      # spec.models.LengthSpec
    output_tokens: Any = None              # spec.models.LengthSpec or None
    tokenizer: Literal["server", "words", "file"] = "server"
    tokenizer_file: str = ""               # `file`: the tokenizer.json, absolute
    api: Literal["chat", "completions"] = "chat"
    target: str                            # whose tokenizer counts
    prefix_tokens: int = 0                 # 0: no shared prefix
    prefix_share: float = 0.0
    prefix_count: int = 1
    seed: int


class TracePlan(Frozen):
    """A trace's prompts, made at the start of the run to each arrival's input length,
    requests sharing hash ids sharing those blocks of their prompts."""

    block_tokens: int = 512
    tokenizer: Literal["server", "words", "file"] = "server"
    tokenizer_file: str = ""               # `file`: the tokenizer.json, absolute
    api: Literal["chat", "completions"] = "chat"
    target: str | None = None              # whose tokenizer counts; None: no request takes
    #                                        the trace's rows (counted as words)
    seed: int


class DataPlan(Frozen):
    name: str
    file: str = ""                 # absolute path; "" for synthetic data
    format: Literal["csv", "jsonl", "mooncake", "llmscen"] = "jsonl"
    order: Literal["sequential", "random", "once"]
    columns: tuple[str, ...]
    rows: int
    synthetic: SyntheticPlan | None = None
    trace: TracePlan | None = None         # format mooncake or llmscen


class FaultPlan(Frozen):
    at: float                              # seconds after the phase starts
    action: Literal["stop", "unload"]
    subject: str                           # the service, or the model
    target: str | None = None              # unload: the Triton target
    duration: float                        # seconds until it is undone
    targets: tuple[str, ...] = ()          # the targets it affects


class SearchPlan(Frozen):
    axis: Literal["arrival_rate", "users"]
    low: float
    high: float
    precision: float                       # relative
    step: float                            # seconds per try
    max_steps: int
    repeats: int
    tolerance: float                       # served may fall this far short of offered
    objectives: tuple[SLOPlan, ...] = ()


class PhasePlan(Frozen):
    name: str
    kind: Literal["open", "closed", "pause", "each", "parallel", "search"]
    duration: float | None = None          # seconds
    max_requests: int | None = None
    warmup: bool = False
    seed: int
    sweep: str | None = None               # the sweep phase this step came from
    vars: dict[str, int | float | str] = Field(default_factory=dict)   # the sweep's value
    #                                        for this step, by parameter: templates read it
    # open model
    rate: float | None = None              # per second at the start
    ramp_to: float | None = None           # per second at the end (linear)
    arrival: Literal["constant", "poisson", "gamma"] = "constant"
    burstiness: float = 1.0                # gamma shape; 1 = poisson
    max_in_flight: int | None = None
    stride: tuple[int, int] = (0, 1)       # (worker, workers): this worker sends arrival k of
    #                                        the phase's one schedule when k % workers == worker
    replay: str | None = None              # the trace data whose timestamps are the arrivals
    speed: float = 1.0                     # replay: times faster than recorded
    # closed model
    users: int | None = None
    users_ramp_to: int | None = None
    spawn_rate: float | None = None        # users started per second
    think_min: float = 0.0
    think_max: float = 0.0
    expected_requests: int | None = None   # estimate shown by `llmscen plan`
    # traffic
    mix: tuple[tuple[str, float], ...] | None = None   # (request, weight); None: all requests
    # test cases (`each`): every request of `cases` `times` times, in order or all at once
    cases: tuple[str, ...] = ()
    times: int = 1
    concurrent: bool = False
    # several load models at once (`groups`): each a phase of its own, `parent` this one
    groups: tuple[PhasePlan, ...] = ()
    parent: str | None = None
    role: Literal["load", "before", "after"] = "load"   # `before:`/`after:` flows run once
    faults: tuple[FaultPlan, ...] = ()
    search: SearchPlan | None = None       # kind search: the driver runs its steps as phases

    # -- the load asked for, over the phase (the live view and the report draw it) --------
    def user_start(self, uid: int) -> float:
        """Seconds after the phase's start when closed-model user `uid` starts: as the spawn
        rate and the users ramp both allow."""
        users = self.users or 0
        final = self.users_ramp_to if self.users_ramp_to is not None else users
        at = uid / self.spawn_rate if self.spawn_rate else 0.0
        if uid >= users and self.duration:
            at = max(at, self.duration * (uid - users + 1) / (final - users + 1))
        return at

    def load_at(self, t: float) -> float | None:
        """The load asked for `t` seconds into the phase: arrivals per second (open) or
        users (closed); None for other kinds (pause, each, parallel groups). A worker's
        share of an open phase (`stride`) asks for its part of the arrivals."""
        if self.kind == "open":
            rate = self.rate or 0.0
            if self.ramp_to is not None and self.duration:
                rate += (self.ramp_to - rate) * min(1.0, max(0.0, t / self.duration))
            return rate / self.stride[1]
        if self.kind == "closed":
            users = self.users or 0
            total = max(users, self.users_ramp_to if self.users_ramp_to is not None else users)
            lo, hi = 0, total     # users started by t: user_start is non-decreasing in uid
            while lo < hi:
                mid = (lo + hi) // 2
                if self.user_start(mid) <= t:
                    lo = mid + 1
                else:
                    hi = mid
            return float(lo)
        return None

    def planned_curve(self, points: int = 60) -> list[tuple[float, float]]:
        """`load_at` sampled over the phase: (seconds into the phase, load); [] for other
        kinds than open and closed, or a phase with no duration."""
        if self.kind not in ("open", "closed") or not self.duration:
            return []
        if self.kind == "open":
            ends = (0.0, self.duration)
            return [(t, v) for t in ends if (v := self.load_at(t)) is not None]
        step = self.duration / points
        return [(i * step, self.load_at(i * step) or 0.0) for i in range(points + 1)]


class StepPlan(Frozen):
    """One call of a flow; `payload` holds the plugin's request options (templates unrendered)."""

    name: str
    payload: Annotated[dict[str, Any], PlainSerializer(masked)]   # dumps hide credentials
    condition: str | None = None           # `if:`: the step runs only when this holds
    capture: dict[str, str] = Field(default_factory=dict)
    record: dict[str, str] = Field(default_factory=dict)   # custom metric → capture expression
    think_min: float = 0.0
    think_max: float = 0.0
    expect: Any = None                     # spec.expect.Expect or None

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, masked(value) if name == "payload" else value


class SessionPlan(Frozen):
    """A multi-turn session: the request's call made `turns` times, each turn carrying the
    earlier turns' messages and answers (the steps are `turn1` .. `turnN`)."""

    turns: int
    rows: Literal["session", "turn"] = "session"   # a new data row per turn, or one
    header: str | None = None                      # carries the session id on every turn


class RequestPlan(Frozen):
    name: str
    target: str
    weight: float = 1.0
    data: str | None = None
    stream: bool = False
    timeout: float | None = None
    steps: tuple[StepPlan, ...]            # a single call is a flow of one step
    expect: Any = None                     # spec.expect.Expect for single calls
    session: SessionPlan | None = None     # `turns:` a multi-turn session


class FitPlan(Frozen):
    """A `fit:` SLO: the metric in each step of `sweep` against the parameter `over`."""

    over: str
    sweep: str
    points: tuple[tuple[str, float], ...]  # (step phase, parameter value), in sweep order
    r2: float | None = None                # the least R²
    slope_min: float | None = None         # base units of the metric per unit of `over`
    slope_max: float | None = None


class SLOPlan(Frozen):
    text: str                              # as the user wrote it, or a fit's canonical text
    metric: str
    stat: str | None
    op: Literal["<", "<=", ">", ">=", "=="]
    threshold: float                       # base units: seconds, per second, fraction, count
    phase: str | None = None
    request: str | None = None
    target: str | None = None
    window: float | None = None            # seconds
    abort: bool = False                    # stop the run as soon as it fails (window SLOs)
    where: str = ""                        # FILE:LINE:COL of the SLO
    fit: FitPlan | None = None             # a fit across a sweep: op/threshold hold its R²


class GoodputObjective(Frozen):
    metric: str                            # a per-request duration metric, e.g. ttft
    threshold: float                       # seconds; a request meets it when value <= threshold


class BaselinePlan(Frozen):
    file: str                              # absolute path of the earlier results.json
    max_regression: float
    alpha: float


class RunSettings(Frozen):
    connect_failures: int = 20             # consecutive, per target; 0: never stop for them
    on_worker_lost: Literal["continue", "stop"] = "continue"
    large_chunk: int = 20                  # characters past which a content chunk is large
    server_interval: float = 1.0           # seconds between server-metric scrapes in a phase
    live_export: bool = False              # set by the driver under --prometheus: workers
    #                                        also report what only the live export shows


class Plan(Frozen):
    name: str
    description: str = ""
    file: str
    seed: int
    services: tuple[ServicePlan, ...]
    targets: tuple[TargetPlan, ...]
    data: tuple[DataPlan, ...]
    phases: tuple[PhasePlan, ...]
    requests: tuple[RequestPlan, ...]
    slos: tuple[SLOPlan, ...]
    goodput: tuple[GoodputObjective, ...] = ()
    run: RunSettings = RunSettings()
    baseline: BaselinePlan | None = None   # an earlier run to compare with
    before: tuple[str, ...] = ()           # requests run once before the phases (setup)
    after: tuple[str, ...] = ()            # ... and once after them (teardown)
    notes: tuple[str, ...] = ()            # things the user should know before running
    secrets: frozenset[str] = Field(default=frozenset(), exclude=True, repr=False)

    def scrubber(self) -> Scrubber:
        """What hides this plan's secrets (and credential-shaped text) in any output."""
        return Scrubber(self.secrets)

    def target(self, name: str) -> TargetPlan:
        return next(t for t in self.targets if t.name == name)

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dump with secrets masked, for `llmscen plan --json`."""
        scrubbed: dict[str, Any] = self.scrubber().data(masked(self.model_dump(mode="json")))
        return scrubbed


SearchPlan.model_rebuild()   # objectives are SLOPlans, defined after it
PhasePlan.model_rebuild()
