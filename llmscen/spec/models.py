"""The scenario format of SPEC §1–§6 as pydantic models.

Targets, services and requests carry plugin-specific keys; those are kept here
(`extra="allow"`) and validated by the compiler against each plugin's own
options model, so one mistake gets one message whichever layer finds it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from llmscen.spec.expect import Expect
from llmscen.spec.paths import DirPath, FilePath
from llmscen.spec.units import Duration, Percent, Rate, parse_duration

# Names other parts of the file refer to (targets, services, data): identifier-like.
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)]


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError(f"a name is printable text on one line; {value!r} has a tab, a line "
                         "break or a control character")
    if value != value.strip():
        raise ValueError(f"a name does not start or end with spaces: {value!r}")
    return value


# Names that only label output (phases, requests, steps): any printable text, spaces included.
Label = Annotated[str, StringConstraints(min_length=1, max_length=120),
                  AfterValidator(_printable),
                  WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 120,
                                  "pattern": r"^\S(.*\S)?$",
                                  "description": "printable text; spaces allowed inside"})]


def parse_think(value: Any) -> tuple[float, float]:
    """`1s`, `1s..3s`, `[1s, 3s]` or `{min: 1s, max: 3s}` → (min, max) seconds."""
    if isinstance(value, dict) and set(value) <= {"min", "max"} and value:
        low, high = value.get("min", 0), value.get("max", value.get("min", 0))
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        low, high = value
    elif isinstance(value, str) and ".." in value:
        low, high = value.split("..", 1)
    else:
        low = high = value
    lo, hi = parse_duration(low), parse_duration(high)
    if lo > hi:
        raise ValueError(f"think range {value!r} runs backwards: the minimum is above the maximum")
    return lo, hi


Think = Annotated[tuple[float, float], BeforeValidator(parse_think), WithJsonSchema({
    "anyOf": [{"type": "number", "minimum": 0}, {"type": "string"},
              {"type": "array", "items": {"type": ["number", "string"]}, "minItems": 2,
               "maxItems": 2},
              {"type": "object", "properties": {"min": {}, "max": {}},
               "additionalProperties": False}],
    "description": "think time: 1s, a range 1s..3s, [1s, 3s] or {min: 1s, max: 3s}"})]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Open(BaseModel):
    """Keeps plugin keys for the compiler to check."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ReadySpec(Strict):
    http: str | None = Field(None, description="a path polled until it answers 2xx, e.g. /health")
    tcp: bool = Field(False, description="wait until the port accepts connections")


class ServiceSpec(Strict):
    builtin: str | None = Field(None, description="a bundled service: openai-sim, triton-sim")
    command: str | list[str] | None = Field(None, description="a process to run; {port} is "
                                                              "replaced by a free port, "
                                                              "{python} by the Python that "
                                                              "runs llmscen")
    options: dict[str, Any] = Field(default_factory=dict)
    ready: ReadySpec | None = None
    startup_timeout: Duration = 60.0
    env: dict[str, str] = Field(default_factory=dict)
    cwd: DirPath | None = Field(None, description="working folder of the command, relative to "
                                                  "the scenario file; default: its folder")
    url: str | None = Field(None, description="where a command listens; default "
                                              "http://127.0.0.1:{port}")

    @model_validator(mode="after")
    def _one_kind(self) -> ServiceSpec:
        if (self.builtin is None) == (self.command is None):
            raise ValueError("a service takes exactly one of `builtin:` or `command:`")
        if self.builtin is not None and (self.ready or self.env or self.cwd or self.url):
            raise ValueError("`ready`, `env`, `cwd` and `url` apply to `command:` services only")
        if self.command is not None and self.options:
            raise ValueError("`options` apply to `builtin:` services; put a command's options "
                             "on its command line")
        return self


class TargetSpec(Open):
    plugin: str
    service: Name | None = None
    url: str | None = None
    base_url: str | None = None

    @model_validator(mode="after")
    def _one_url(self) -> TargetSpec:
        if self.url is not None and self.base_url is not None:
            raise ValueError("give `url` or `base_url`, not both")
        return self


class DataSpec(Strict):
    file: FilePath = Field(description="relative to the scenario file")
    order: Literal["sequential", "random", "once"] = "sequential"
    format: Literal["csv", "jsonl"] | None = None


class SweepSpec(Strict):
    users: list[PositiveInt] | None = None
    arrival_rate: list[Rate] | None = None

    @model_validator(mode="after")
    def _one_axis(self) -> SweepSpec:
        if (self.users is None) == (self.arrival_rate is None):
            raise ValueError("a sweep varies exactly one of `users:` or `arrival_rate:`")
        values = self.users if self.users is not None else self.arrival_rate
        if not values:
            raise ValueError("a sweep needs at least one value")
        return self


def parse_mix(value: Any) -> tuple[tuple[str, float], ...]:
    """`[a, b]`, `[a, {b: 3}]` or `{a: 1, b: 3}` → ((name, weight), ...); weight 1 unless given."""
    items: list[tuple[str, float]] = []
    entries = list(value.items()) if isinstance(value, dict) else value
    if not isinstance(entries, list) or not entries:
        raise ValueError("`mix` lists the requests a phase sends: [chat, {health: 0.5}] or "
                         "{chat: 3, health: 1}")
    for entry in entries:
        if isinstance(entry, str):
            items.append((entry, 1.0))
        elif isinstance(entry, tuple) and len(entry) == 2:
            items.append((str(entry[0]), float(entry[1])))
        elif isinstance(entry, dict) and len(entry) == 1:
            (name, weight), = entry.items()
            items.append((str(name), float(weight)))
        else:
            raise ValueError(f"a `mix` entry is a request name or {{name: weight}}, "
                             f"got {entry!r}")
    for name, weight in items:
        if not weight > 0:
            raise ValueError(f"the weight of {name!r} in `mix` must be above 0, got {weight:g}")
    return tuple(items)


Mix = Annotated[tuple[tuple[str, float], ...], BeforeValidator(parse_mix), WithJsonSchema({
    "anyOf": [{"type": "array", "items": {"anyOf": [
        {"type": "string"}, {"type": "object", "additionalProperties": {"type": "number"},
                             "minProperties": 1, "maxProperties": 1}]}, "minItems": 1},
              {"type": "object", "additionalProperties": {"type": "number",
                                                          "exclusiveMinimum": 0}}],
    "description": "the requests this phase sends, with weights: [chat, {health: 0.5}] or "
                   "{chat: 3, health: 1}; without it, every request by its own weight"})]

_OPEN_KEYS = ("ramp_to", "arrival", "burstiness", "max_in_flight")
_CLOSED_KEYS = ("spawn_rate", "think")
_EACH_KEYS = ("times", "concurrent")
_MODELS = ("arrival_rate", "users", "pause", "sweep", "each", "groups", "search")


class SearchRange(Strict):
    min: float = Field(gt=0, description="the lowest load to consider")
    max: float = Field(gt=0, description="the highest load to consider")

    @model_validator(mode="after")
    def _ordered(self) -> SearchRange:
        if self.max <= self.min:
            raise ValueError("`max` must be above `min`")
        return self


class SearchSpec(Strict):
    """Find the largest load at which objectives hold (`search:`)."""

    arrival_rate: SearchRange | None = Field(None, description="search arrivals per second "
                                             "(an open model)")
    users: SearchRange | None = Field(None, description="search a number of users (closed)")
    precision: Percent = Field(0.05, description="how close the answer must be: the highest "
                               "load that passed and the lowest that failed end this close")
    step: Duration = Field(10.0, description="how long each load is tried")
    max_steps: PositiveInt = Field(10, description="the most loads tried")
    repeats: PositiveInt = Field(1, description="runs of each load, judged on their data pooled")
    tolerance: Percent | None = Field(None, description="how far the served rate may fall short "
                                      "of the offered one before a step counts as saturated "
                                      "(default: a fifth of the precision, at least 1%)")
    objectives: list[str | SLOSpec] = Field(min_length=1, description="SLOs each step must "
                                            "meet, e.g. latency.p95 < 400ms, error_rate < 1%")

    @model_validator(mode="after")
    def _one_axis(self) -> SearchSpec:
        if (self.arrival_rate is None) == (self.users is None):
            raise ValueError("a search varies exactly one of `arrival_rate:` or `users:`, "
                             "each as {min: ..., max: ...}")
        return self


class GroupSpec(Strict):
    """One load model of a phase that runs several at once (`groups:`)."""

    arrival_rate: Rate | None = None
    ramp_to: float | str | None = None
    arrival: Literal["constant", "poisson", "gamma"] | None = None
    burstiness: PositiveFloat | None = None
    max_in_flight: PositiveInt | None = None
    users: PositiveInt | None = None
    spawn_rate: Rate | None = None
    think: Think | None = None
    requests: PositiveInt | None = Field(None, description="stop this group after this many")
    mix: Mix | None = None

    @model_validator(mode="after")
    def _one_model(self) -> GroupSpec:
        if (self.arrival_rate is None) == (self.users is None):
            raise ValueError("a group is exactly one of `arrival_rate` (open) or `users` "
                             "(closed)")
        if self.users is not None:
            wrong = [k for k in _OPEN_KEYS if getattr(self, k) is not None and k != "ramp_to"]
        else:
            wrong = [k for k in _CLOSED_KEYS if getattr(self, k) is not None]
        if wrong:
            raise ValueError(f"{', '.join(f'`{k}`' for k in wrong)} do not apply to this group's "
                             "load model")
        return self


class FaultSpec(Strict):
    """Something done to the system under test during a phase (`faults:`)."""

    at: Duration = Field(description="when, after the phase starts")
    stop: str | None = Field(None, description="a service llmscen started: stop it, and start "
                                               "it again on the same address after `for`")
    unload: str | None = Field(None, description="a model of a Triton `target`: unload it "
                                                 "through the repository API, load it after `for`")
    target: str | None = Field(None, description="the Triton target of `unload`")
    for_: Duration = Field(alias="for", description="how long the fault lasts")

    @model_validator(mode="after")
    def _one_action(self) -> FaultSpec:
        if (self.stop is None) == (self.unload is None):
            raise ValueError("a fault does exactly one of `stop: SERVICE` or `unload: MODEL`")
        if self.unload is not None and self.target is None:
            raise ValueError("`unload` needs the Triton `target` that serves the model")
        if self.stop is not None and self.target is not None:
            raise ValueError("`target` goes with `unload`; `stop` names a service")
        return self


class PhaseSpec(Strict):
    name: Label | None = None
    duration: Duration | None = None
    requests: PositiveInt | None = None
    warmup: bool = False
    seed: int | None = None
    # open model
    arrival_rate: Rate | None = None
    ramp_to: float | str | None = Field(None, description="final rate (open) or users (closed)")
    arrival: Literal["constant", "poisson", "gamma"] | None = None
    burstiness: PositiveFloat | None = Field(None, description="gamma shape; below 1 is burstier")
    max_in_flight: PositiveInt | None = None
    # closed model
    users: PositiveInt | None = None
    spawn_rate: Rate | None = Field(None, description="users started per second")
    think: Think | None = None
    # others
    pause: Duration | None = None
    sweep: SweepSpec | None = None
    each: Literal["all"] | list[str] | None = Field(
        None, description="a test-case phase: send each listed request (or `all`) `times` "
                          "times, in order, or all at once with `concurrent: true`")
    times: PositiveInt | None = Field(None, description="how often `each` sends every request")
    concurrent: bool | None = Field(None, description="`each`: send them all at once")
    groups: dict[str, GroupSpec] | None = Field(
        None, description="several load models at once, each with its own mix, e.g. users "
                          "on chat beside an open stream of health checks")
    mix: Mix | None = None
    search: SearchSpec | None = Field(None, description="find the largest load meeting "
                                      "`objectives`; assert it with `capacity >= 40/s`")
    faults: list[FaultSpec] = Field(default_factory=list, description="act on the system "
                                    "under test during the phase; `time_to_recover` measures "
                                    "each from the fault to the first success after it")

    @model_validator(mode="after")
    def _one_model(self) -> PhaseSpec:
        given = [k for k in _MODELS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a phase is exactly one of: `arrival_rate` (open model), `users` "
                             "(closed model), `pause`, `sweep`, `each` (test cases), "
                             "`groups` (several at once) or `search` (find the limit)" +
                             (f"; this one has {', '.join(given)}" if given else ""))
        kind = given[0]
        swept = None
        if self.sweep is not None:
            swept = "users" if self.sweep.users is not None else "arrival_rate"
        if self.search is not None:
            swept = "users" if self.search.users is not None else "arrival_rate"
        is_open = kind == "arrival_rate" or swept == "arrival_rate"
        is_closed = kind == "users" or swept == "users"
        misplaced = [k for k in _OPEN_KEYS if getattr(self, k) is not None and not is_open
                     and not (k == "ramp_to" and kind == "users")]
        misplaced += [k for k in _CLOSED_KEYS if getattr(self, k) is not None and not is_closed]
        misplaced += [k for k in _EACH_KEYS if getattr(self, k) is not None and kind != "each"]
        if kind in ("each", "groups", "pause") and self.mix is not None:
            misplaced.append("mix")
        if misplaced:
            model = {"arrival_rate": "an open (arrival_rate)", "users": "a closed (users)",
                     "pause": "a pause", "sweep": "this sweep", "each": "a test-case (each)",
                     "groups": "a groups", "search": "this search"}[kind]
            names = ", ".join(f"`{k}`" for k in misplaced)
            raise ValueError(f"{names} {'does' if len(misplaced) == 1 else 'do'} not apply to "
                             f"{model} phase")
        if kind == "pause":
            if self.duration is not None or self.requests is not None:
                raise ValueError("a pause phase takes its length from `pause:`; drop `duration`"
                                 " and `requests`")
        elif kind == "each":
            if self.duration is not None or self.requests is not None:
                raise ValueError("a test-case phase (`each`) ends when every case was sent "
                                 "`times` times; drop `duration` and `requests`")
        elif kind == "search":
            if self.duration is not None or self.requests is not None:
                raise ValueError("a search runs `max_steps` steps of `step` each; drop "
                                 "`duration` and `requests`")
        elif kind == "groups":
            if not self.groups:
                raise ValueError("`groups` needs at least one group")
            if self.duration is None and not all(g.requests for g in self.groups.values()):
                raise ValueError("a phase with `groups` needs a `duration`, or `requests` on "
                                 "every group, to know when to stop")
        elif self.duration is None and self.requests is None:
            raise ValueError("the phase needs `duration` and/or `requests` to know when to stop")
        if self.arrival == "gamma" and self.burstiness is None:
            self.burstiness = 1.0
        if self.burstiness is not None and self.arrival not in (None, "gamma"):
            raise ValueError("`burstiness` applies to `arrival: gamma`")
        return self


class StepSpec(Open):
    name: Label | None = None
    if_: str | None = Field(None, alias="if", description="run the step only when this "
                            "expression over captured values holds, e.g. `created_id is "
                            "defined`; braces optional")
    capture: dict[str, str] = Field(default_factory=dict)
    record: dict[str, str] = Field(default_factory=dict, description="custom metrics: a name → "
                                   "a capture expression whose number each response records "
                                   "into the histogram `custom.NAME`, e.g. {cart_items: "
                                   "json.count}")
    think: Think | None = None
    expect: Expect | None = None


class RequestSpec(Open):
    name: Label
    target: Name
    weight: PositiveFloat = 1.0
    data: Name | None = None
    stream: bool = False
    timeout: Duration | None = None
    expect: Expect | None = None
    record: dict[str, str] = Field(default_factory=dict, description="custom metrics of a "
                                   "single call (in a flow, `record:` goes in its steps)")
    steps: list[StepSpec] | None = None


class SLOSpec(Strict):
    assert_: str = Field(alias="assert")
    phase: str | None = None
    request: str | None = None
    target: str | None = None
    window: Duration | None = None
    abort: bool = Field(False, description="stop the run as soon as this SLO fails (k6's "
                                           "abortOnFail); needs a `window`")


class RunSpec(Strict):
    """How the run itself behaves when things go wrong (`run:`)."""

    connect_failures: int = Field(20, ge=0, description="consecutive connection failures to "
                                  "one target that stop the run as could_not_run (0: never)")


class BaselineSpec(Strict):
    """Judge the run against an earlier one (`baseline:`): `llmscen compare` inside `run`."""

    file: str = Field(description="the earlier run's results.json (relative to the scenario)")
    max_regression: Percent = Field(0.1, description="how much worse a value may get before it "
                                    "counts, if the change is also significant")
    alpha: Percent = Field(0.05, description="the significance level of the statistical tests")


class MetricsSpec(Strict):
    """How some metrics are measured (`metrics:`)."""

    large_chunk: int = Field(20, ge=1, description="characters past which a content chunk "
                             "counts as large, for `large_chunk_share`")
    server_interval: Duration = Field(1.0, description="how often the targets' Prometheus "
                                      "metrics are read while a phase runs (0: only when phases "
                                      "start and end)")


class Scenario(Strict):
    version: Literal[1] = 1
    name: Name | None = None
    description: str = ""
    seed: int = Field(1, description="base seed: phases derive theirs from it unless given")
    services: dict[Name, ServiceSpec] = Field(default_factory=dict)
    targets: dict[Name, TargetSpec] = Field(min_length=1)
    data: dict[Name, DataSpec] = Field(default_factory=dict)
    phases: list[PhaseSpec] = Field(min_length=1)
    requests: list[RequestSpec] = Field(min_length=1)
    slos: list[str | SLOSpec] = Field(default_factory=list)
    goodput: dict[str, Duration] = Field(default_factory=dict,
                                         description="per-request objectives, e.g. ttft: 500ms")
    run: RunSpec = Field(default_factory=RunSpec)
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    baseline: BaselineSpec | None = Field(None, description="an earlier run this one must not "
                                          "be significantly worse than (docs/compare.md)")
    before: list[str] = Field(default_factory=list, description="requests (flows) run once, "
                              "in order, before the first phase; what they capture (a login "
                              "token) is available to every request")
    after: list[str] = Field(default_factory=list, description="requests run once, in order, "
                             "after the last phase (delete what the run created)")


SearchSpec.model_rebuild()   # its objectives are SLOSpecs, defined above after it
PhaseSpec.model_rebuild()

# Keys a request or step takes whatever its plugin; the rest belong to the plugin.
def _keys(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(f.alias or name for name, f in model.model_fields.items())


REQUEST_COMMON_KEYS = _keys(RequestSpec)
STEP_COMMON_KEYS = _keys(StepSpec)
TARGET_COMMON_KEYS = _keys(TargetSpec)
