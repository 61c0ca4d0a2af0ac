"""The scenario format of SPEC §1–§6 as pydantic models.

Targets, services and requests carry plugin-specific keys; those are kept here
(`extra="allow"`) and validated by the compiler against each plugin's own
options model, so one mistake gets one message whichever layer finds it.
"""

from __future__ import annotations

import re
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
              {"type": "object", "properties": {
                  "min": {"description": "the shortest think (a duration)"},
                  "max": {"description": "the longest think (a duration)"}},
               "additionalProperties": False}],
    "description": "think time: 1s, a range 1s..3s, [1s, 3s] or {min: 1s, max: 3s}",
    "examples": ["1s", "1s..3s"]})]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Open(BaseModel):
    """Keeps plugin keys for the compiler to check."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ReadySpec(Strict):
    http: str | None = Field(None, description="a path polled until it answers 2xx, e.g. /health",
                             examples=["/health", "/v1/models"])
    tcp: bool = Field(False, description="wait until the port accepts connections")


class ServiceSpec(Strict):
    builtin: str | None = Field(None, description="a bundled service: openai-sim, triton-sim",
                                examples=["openai-sim", "triton-sim"])
    command: str | list[str] | None = Field(None, description="a process to run; {port} is "
                                                              "replaced by a free port, "
                                                              "{python} by the Python that "
                                                              "runs llmscen")
    options: dict[str, Any] = Field(default_factory=dict, description="options of a `builtin:` "
                                    "service (docs/services.md)")
    ready: ReadySpec | None = Field(None, description="when a `command:` service is ready: "
                                    "{http: /health} or {tcp: true} (the default)")
    startup_timeout: Duration = Field(60.0, description="how long a `command:` service may "
                                      "take to become ready")
    env: dict[str, str] = Field(default_factory=dict, description="environment variables of a "
                                "`command:` service, added to llmscen's; {port} is replaced")
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
    plugin: str = Field(description="the protocol plugin: openai, vllm, triton, http or an "
                        "installed one (`llmscen plugins`)")
    service: Name | None = Field(None, description="a service of `services:` whose address "
                                 "is this target's URL (unless `url` is given)")
    url: str | None = Field(None, description="where the server listens, e.g. "
                            "http://127.0.0.1:8000; replaced by --target NAME=URL",
                            examples=["http://127.0.0.1:8000", "127.0.0.1:8001"])
    base_url: str | None = Field(None, description="another name for `url`")

    @model_validator(mode="after")
    def _one_url(self) -> TargetSpec:
        if self.url is not None and self.base_url is not None:
            raise ValueError("give `url` or `base_url`, not both")
        return self


class LengthSpec(Strict):
    """A token length drawn per row: uniform over [min, max], or normal (`mean`, `stdev`)
    clipped to [min, max]; `value` for a fixed length."""

    value: PositiveInt | None = Field(None, description="a fixed length")
    min: PositiveInt | None = Field(None, description="the shortest (uniform; clips a normal)")
    max: PositiveInt | None = Field(None, description="the longest (uniform; clips a normal)")
    mean: PositiveFloat | None = Field(None, description="the mean of a normal length")
    stdev: float | None = Field(None, ge=0, description="the standard deviation of a normal "
                                "length")

    @model_validator(mode="after")
    def _one_shape(self) -> LengthSpec:
        if self.value is not None:
            if any(v is not None for v in (self.min, self.max, self.mean, self.stdev)):
                raise ValueError("a fixed length (`value`) takes no other key")
        elif self.mean is not None:
            if self.stdev is None:
                raise ValueError("a normal length needs `stdev` beside `mean`")
        elif self.stdev is not None:
            raise ValueError("`stdev` goes with `mean`")
        elif self.min is None or self.max is None:
            raise ValueError("a length is a number (128), {min: 64, max: 256} (uniform) or "
                             "{mean: 128, stdev: 16} (normal, optionally clipped by min/max)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


def parse_length(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return {"value": value}
    return value


Length = Annotated[LengthSpec, BeforeValidator(parse_length), WithJsonSchema({
    "anyOf": [{"type": "integer", "minimum": 1}, LengthSpec.model_json_schema()],
    "description": "tokens: 128, {min: 64, max: 256} (uniform) or {mean: 128, stdev: 16} "
                   "(normal)"})]


class PrefixSpec(Strict):
    """Shared prefixes: `share` of the prompts start with one of `count` prefixes."""

    tokens: PositiveInt = Field(description="the length of each shared prefix, in tokens")
    share: Percent = Field(1.0, description="the share of prompts that start with a prefix")
    count: PositiveInt = Field(1, description="how many different prefixes")


class SyntheticSpec(Strict):
    """Prompts of exact token length, counted by a tokenizer (`synthetic:`)."""

    input_tokens: Length = Field(description="the prompt's length in tokens")
    output_tokens: Length | None = Field(None, description="a length per row, for "
                                         "`max_tokens: \"{{ row.output_tokens }}\"`")
    tokenizer: str = Field(
        "server", min_length=1,
        description="`server`: the target's own /tokenize endpoint; `words`: "
                    "whitespace-separated words (openai-sim's count), offline; else a "
                    "tokenizer file (a Hugging Face tokenizer.json) relative to the scenario "
                    "file, read offline with the `tokenizers` package (extra "
                    "`llmscen[tokenizer]`)",
        examples=["server", "words", "models/tokenizer.json"])
    api: Literal["chat", "completions"] | None = Field(
        None, description="how the prompt is sent, so it is counted as the server will: as "
                          "one user message (its chat template's tokens included) or as a "
                          "completions prompt; default: the API of the requests using it")
    target: Name | None = Field(None, description="whose tokenizer counts; default the "
                                "target of the requests that use this data")
    prefix: PrefixSpec | None = Field(None, description="shared prefixes: {tokens: 64, share: "
                                      "50%, count: 1}")
    rows: PositiveInt = Field(100, le=100_000, description="how many prompts to make")
    seed: int | None = Field(None, description="default: the scenario's seed")


class DataSpec(Strict):
    file: FilePath | None = Field(None, description="relative to the scenario file")
    order: Literal["sequential", "random", "once"] = Field(
        "sequential", description="sequential: row after row, from the top again at the end; "
        "random: a seeded random row each time; once: every row once, then the phase ends")
    format: Literal["csv", "jsonl", "mooncake", "llmscen"] | None = Field(
        None, description="default: from the file name (.csv, .tsv, .jsonl, .ndjson); a trace "
        "to replay (`replay:` phases): `mooncake` (JSONL: timestamp ms, input_length, "
        "output_length, hash_ids) or `llmscen` (a --log-requests file)")
    synthetic: SyntheticSpec | None = Field(None, description="generated prompts of exact "
                                            "token length instead of a file "
                                            "(docs/workloads.md)")
    # a trace's prompts are made as synthetic ones are (docs/workloads.md#trace-replay)
    block_tokens: PositiveInt = Field(512, description="trace: tokens per hash id; "
                                             "requests sharing hash ids share these blocks "
                                             "of their prompts (default 512, Mooncake's)")
    tokenizer: str = Field(
        "server", description="trace: who counts its prompts' tokens, as for `synthetic:` "
                              "(`server`, `words`, or a tokenizer file)",
        examples=["server", "words", "models/tokenizer.json"])
    api: Literal["chat", "completions"] | None = Field(
        None, description="trace: how its prompts are sent, as for `synthetic:`")
    target: Name | None = Field(None, description="trace: whose tokenizer counts, as for "
                                "`synthetic:`")

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.file is None) == (self.synthetic is None):
            raise ValueError("data comes from exactly one of `file:` or `synthetic:`")
        if self.synthetic is not None and self.format is not None:
            raise ValueError("`format` applies to `file:` data")
        trace_keys = [k for k in ("block_tokens", "tokenizer", "api", "target")
                      if k in self.model_fields_set]
        if trace_keys and self.format not in TRACE_FORMATS:
            raise ValueError(f"{', '.join(f'`{k}`' for k in trace_keys)} apply to a trace "
                             f"(`format: mooncake` or `llmscen`)")
        return self


SweepValue = int | float | str
TRACE_FORMATS = ("mooncake", "llmscen")


class SweepSpec(Strict):
    users: list[PositiveInt] | None = Field(None, description="one closed phase per number "
                                            "of users", examples=[[1, 5, 10, 20, 50]])
    arrival_rate: list[Rate] | None = Field(None, description="one open phase per rate "
                                            "(per second, or with a unit: 300/min)",
                                            examples=[[10, 20, 40]])
    vars: dict[str, list[SweepValue]] | None = Field(
        None, description="one phase per value of a request parameter, on the phase's own "
                          "`users` or `arrival_rate`; templates read it by name "
                          "({{ batch }}), and `fit:` SLOs fit metrics against it",
        examples=[{"batch": [1, 2, 4, 8]}])

    @model_validator(mode="after")
    def _one_axis(self) -> SweepSpec:
        axes = [k for k in ("users", "arrival_rate", "vars") if getattr(self, k) is not None]
        if len(axes) != 1:
            raise ValueError("a sweep varies exactly one of `users:`, `arrival_rate:` or "
                             "`vars:` (a request parameter)")
        if self.vars is not None:
            if len(self.vars) != 1:
                raise ValueError("`vars:` sweeps one parameter: {batch: [1, 2, 4, 8]}")
            name, values = next(iter(self.vars.items()))
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in SWEEP_RESERVED:
                raise ValueError(f"sweep parameter {name!r}: use letters, digits and '_' (not "
                                 "starting with a digit), not one of the templates' own names ("
                                 f"{', '.join(sorted(SWEEP_RESERVED))})")
            if len({str(v) for v in values}) != len(values):
                raise ValueError(f"sweep parameter {name!r} repeats a value")
        counts = [len(v) for v in (self.users, self.arrival_rate, *(self.vars or {}).values())
                  if v is not None]
        if not all(counts):
            raise ValueError("a sweep needs at least one value")
        return self

    @property
    def axis(self) -> str:
        """The swept parameter: `users`, `arrival_rate` or the one name of `vars`."""
        if self.vars is not None:
            return next(iter(self.vars))
        return "users" if self.users is not None else "arrival_rate"


# Names a template already has (compile.templates.BUILTIN_VARS), and `row`.
SWEEP_RESERVED = frozenset({"phase", "request", "user", "iteration", "seq", "row"})


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
_MODELS = ("arrival_rate", "users", "pause", "sweep", "each", "groups", "search", "replay")

# Keys a phase and a group share, described once.
_ARRIVAL_RATE = "open model: requests started per second, finished or not (50, 50/s, 300/min)"
_RAMP_TO = "final rate (open) or users (closed), reached linearly over the phase"
_ARRIVAL = "open model: gaps between arrivals: constant (default), poisson or gamma"
_BURSTINESS = "gamma shape for `arrival: gamma`; below 1 is burstier than poisson"
_MAX_IN_FLIGHT = ("open model: at most this many requests in flight (default 1024); "
                  "later arrivals wait")
_USERS = "closed model: virtual users, each sending, waiting for the answer, thinking"
_SPAWN_RATE = "closed model: users started per second (default: all at once)"
_THINK = "closed model: each user's pause after an answer: 1s or a range 1s..3s"
_MIX = ("the requests this phase sends, with weights: [chat, {health: 0.5}] or "
        "{chat: 3, health: 1}; default: every request by its own weight")


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

    arrival_rate: Rate | None = Field(None, description=_ARRIVAL_RATE)
    ramp_to: float | str | None = Field(None, description=_RAMP_TO)
    arrival: Literal["constant", "poisson", "gamma"] | None = Field(None, description=_ARRIVAL)
    burstiness: PositiveFloat | None = Field(None, description=_BURSTINESS)
    max_in_flight: PositiveInt | None = Field(None, description=_MAX_IN_FLIGHT)
    users: PositiveInt | None = Field(None, description=_USERS)
    spawn_rate: Rate | None = Field(None, description=_SPAWN_RATE)
    think: Think | None = Field(None, description=_THINK)
    requests: PositiveInt | None = Field(None, description="stop this group after this many")
    mix: Mix | None = Field(None, description=_MIX)

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
    name: Label | None = Field(None, description="the phase's name in results and SLO "
                               "scopes; default phase1, phase2, ...")
    duration: Duration | None = Field(None, description="how long the phase sends")
    requests: PositiveInt | None = Field(None, description="stop after this many requests "
                                         "(with `duration`: whichever comes first)")
    warmup: bool = Field(False, description="recorded, but left out of whole-run figures and "
                         "SLOs unless an SLO names the phase")
    seed: int | None = Field(None, description="arrivals and data order repeat exactly from "
                             "it; default: derived from the scenario's seed")
    # open model
    arrival_rate: Rate | None = Field(None, description=_ARRIVAL_RATE)
    ramp_to: float | str | None = Field(None, description=_RAMP_TO)
    arrival: Literal["constant", "poisson", "gamma"] | None = Field(None, description=_ARRIVAL)
    burstiness: PositiveFloat | None = Field(None, description=_BURSTINESS)
    max_in_flight: PositiveInt | None = Field(None, description=_MAX_IN_FLIGHT)
    # closed model
    users: PositiveInt | None = Field(None, description=_USERS)
    spawn_rate: Rate | None = Field(None, description=_SPAWN_RATE)
    think: Think | None = Field(None, description=_THINK)
    # others
    pause: Duration | None = Field(None, description="send nothing for this long")
    sweep: SweepSpec | None = Field(None, description="one phase per value, each `duration` "
                                    "long, named <name>-<value>; a `vars:` sweep (a request "
                                    "parameter) on this phase's `users` or `arrival_rate`")
    each: Literal["all"] | list[str] | None = Field(
        None, description="a test-case phase: send each listed request (or `all`) `times` "
                          "times, in order, or all at once with `concurrent: true`")
    times: PositiveInt | None = Field(None, description="how often `each` sends every request")
    concurrent: bool | None = Field(None, description="`each`: send them all at once")
    groups: dict[str, GroupSpec] | None = Field(
        None, description="several load models at once, each with its own mix, e.g. users "
                          "on chat beside an open stream of health checks")
    mix: Mix | None = Field(None, description=_MIX)
    search: SearchSpec | None = Field(None, description="find the largest load meeting "
                                      "`objectives`; assert it with `capacity >= 40/s`")
    faults: list[FaultSpec] = Field(default_factory=list, description="act on the system "
                                    "under test during the phase; `time_to_recover` measures "
                                    "each from the fault to the first success after it")
    replay: Name | None = Field(None, description="an open phase at a trace's own times: the "
                                "data set (`format: mooncake` or `llmscen`) whose timestamps "
                                "are the arrivals, each sending its row")
    speed: PositiveFloat | None = Field(None, description="`replay`: how much faster than "
                                        "recorded (2 = twice as fast; default 1)")

    @model_validator(mode="after")
    def _one_model(self) -> PhaseSpec:
        given = [k for k in _MODELS if getattr(self, k) is not None]
        if self.sweep is not None and self.sweep.vars is not None:
            # a parameter sweep runs on the phase's own load model
            load = [k for k in ("users", "arrival_rate") if k in given]
            if len(load) != 1:
                raise ValueError("a `sweep: {vars: ...}` phase also gives its load: exactly "
                                 "one of `users` or `arrival_rate` (the same in every step)")
            given.remove(load[0])
        if len(given) != 1:
            raise ValueError("a phase is exactly one of: `arrival_rate` (open model), `users` "
                             "(closed model), `pause`, `sweep`, `each` (test cases), "
                             "`groups` (several at once), `search` (find the limit) or "
                             "`replay` (a trace's arrivals)" +
                             (f"; this one has {', '.join(given)}" if given else ""))
        kind = given[0]
        swept = None
        if self.sweep is not None:
            swept = "users" if self.sweep.users is not None or self.users is not None \
                else "arrival_rate"
        if self.search is not None:
            swept = "users" if self.search.users is not None else "arrival_rate"
        is_open = kind == "arrival_rate" or swept == "arrival_rate"
        is_closed = kind == "users" or swept == "users"
        misplaced = [k for k in _OPEN_KEYS if getattr(self, k) is not None and not is_open
                     and not (k == "ramp_to" and kind == "users")
                     and not (k == "max_in_flight" and kind == "replay")]
        if self.speed is not None and kind != "replay":
            misplaced.append("speed")
        misplaced += [k for k in _CLOSED_KEYS if getattr(self, k) is not None and not is_closed]
        misplaced += [k for k in _EACH_KEYS if getattr(self, k) is not None and kind != "each"]
        if kind in ("each", "groups", "pause") and self.mix is not None:
            misplaced.append("mix")
        if misplaced:
            model = {"arrival_rate": "an open (arrival_rate)", "users": "a closed (users)",
                     "pause": "a pause", "sweep": "this sweep", "each": "a test-case (each)",
                     "groups": "a groups", "search": "this search",
                     "replay": "a replay"}[kind]
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
        elif kind == "replay":
            pass   # the trace ends it; `duration` and `requests` may cut it short
        elif self.duration is None and self.requests is None:
            raise ValueError("the phase needs `duration` and/or `requests` to know when to stop")
        if self.arrival == "gamma" and self.burstiness is None:
            self.burstiness = 1.0
        if self.burstiness is not None and self.arrival not in (None, "gamma"):
            raise ValueError("`burstiness` applies to `arrival: gamma`")
        return self


class StepSpec(Open):
    name: Label | None = Field(None, description="the step's name; measured as "
                               "<request>.<step>; default step1, step2, ...")
    if_: str | None = Field(None, alias="if", description="run the step only when this "
                            "expression over captured values holds, e.g. `created_id is "
                            "defined`; braces optional")
    capture: dict[str, str] = Field(default_factory=dict, description="values taken from the "
                                    "response for later steps: {token: $.access_token}, "
                                    "header:NAME or regex:PATTERN")
    record: dict[str, str] = Field(default_factory=dict, description="custom metrics: a name → "
                                   "a capture expression whose number each response records "
                                   "into the histogram `custom.NAME`, e.g. {cart_items: "
                                   "json.count}")
    think: Think | None = Field(None, description="a pause after this step: 1s or 1s..3s")
    expect: Expect | None = Field(None, description="checks on this step's response "
                                  "(docs/expect.md)")


class TurnsSpec(Strict):
    """A multi-turn session (`turns:`): one chat call repeated, its history carried along."""

    count: PositiveInt = Field(description="turns in one session")
    think: Think | None = Field(None, description="the user's pause between turns: 1s, 1s..3s")
    rows: Literal["session", "turn"] = Field(
        "session", description="`session`: one data row for the whole session; `turn`: each "
                               "turn takes the next row")
    header: str | None = Field(None, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
                               description="an HTTP header that carries the session's id on "
                                           "every turn (router affinity), e.g. X-Session-ID")


def parse_turns(value: Any) -> Any:
    """`turns: 3` is `turns: {count: 3}`."""
    if isinstance(value, bool) or not isinstance(value, (int, dict)):
        raise ValueError("`turns` is a number of turns (3) or {count: 3, think: 1s, rows: "
                         f"turn, header: X-Session-ID}}, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"a session has at least 1 turn, got {value}")
        return {"count": value}
    return value


Turns = Annotated[TurnsSpec, BeforeValidator(parse_turns), WithJsonSchema({
    "anyOf": [{"type": "integer", "minimum": 1}, TurnsSpec.model_json_schema()],
    "description": "a multi-turn chat session: `3`, or {count: 3, think: 1s, rows: turn, "
                   "header: X-Session-ID}"})]


class RequestSpec(Open):
    name: Label = Field(description="the request's name in results, reports and SLO scopes")
    target: Name = Field(description="the target (of `targets:`) it is sent to")
    weight: PositiveFloat = Field(1.0, description="its share of the traffic mix: each arrival "
                                  "picks a request with probability weight / sum of weights")
    data: Name | None = Field(None, description="a data set (of `data:`): each request takes "
                              "a row, {{ row.<column> }} in templates")
    stream: bool = Field(False, description="ask for a streamed answer (SSE, or Triton's "
                         "decoupled gRPC stream); needed for ttft, itl and chunks")
    timeout: Duration | None = Field(None, description="for this request, instead of the "
                                     "target's `timeout`")
    expect: Expect | None = Field(None, description="checks on every response; a failure "
                                  "counts as class `check` (docs/expect.md)")
    record: dict[str, str] = Field(default_factory=dict, description="custom metrics of a "
                                   "single call (in a flow, `record:` goes in its steps)")
    steps: list[StepSpec] | None = Field(None, description="a flow: several calls in order on "
                                         "the same target, sharing captured values "
                                         "(docs/flows.md)")
    turns: Turns | None = Field(
        None, description="a multi-turn chat session: `3`, or {count: 3, think: 1s, rows: "
                          "turn, header: X-Session-ID} (docs/workloads.md)")


class SLOSpec(Strict):
    assert_: str = Field(alias="assert", description="the SLO: METRIC[.STAT] OP THRESHOLD"
                         "[UNIT] (docs/slo.md)")
    phase: str | None = Field(None, description="judge only this phase (a sweep or groups "
                              "phase: all its parts); names a warmup phase to include it")
    request: str | None = Field(None, description="judge only this request (a flow's step: "
                                "flow.step)")
    target: str | None = Field(None, description="judge only the requests to this target")
    window: Duration | None = Field(None, description="must hold in every window of this "
                                    "length, not only over the whole scope")
    abort: bool = Field(False, description="stop the run as soon as this SLO fails (k6's "
                                           "abortOnFail); needs a `window`")


class LinearSpec(Strict):
    """What a linear fit must show (`linear:` of a `fit:` SLO)."""

    r2: float | None = Field(None, ge=0, le=1, description="the least R² (coefficient of "
                             "determination) of the least-squares line, e.g. 0.95")
    slope: str | None = Field(None, description="LOW..HIGH: the line's slope, in the metric's "
                              "unit per unit of the parameter, e.g. 8MB..40MB (either side may "
                              "be left out: ..40MB)")

    @model_validator(mode="after")
    def _something(self) -> LinearSpec:
        if self.r2 is None and self.slope is None:
            raise ValueError("`linear:` asserts `r2:`, `slope:` or both, e.g. "
                             "{r2: 0.95, slope: 8MB..40MB}")
        return self


class FitSpec(Strict):
    """An SLO across the steps of a sweep: a metric per step against the swept parameter."""

    fit: str = Field(description="METRIC.STAT taken in each step of the sweep, e.g. "
                                 "service.triton.rss.max or latency.p95")
    over: str = Field(description="the swept parameter: a `vars:` name (batch), `users` or "
                                  "`arrival_rate`")
    sweep: str | None = Field(None, description="the sweep phase; default: the one sweep over "
                                                "`over`")
    linear: LinearSpec = Field(description="the metric is a line in the parameter: "
                                           "{r2: 0.95, slope: 8MB..40MB}")


class RunSpec(Strict):
    """How the run itself behaves when things go wrong (`run:`)."""

    connect_failures: int = Field(20, ge=0, description="consecutive connection failures to "
                                  "one target that stop the run as could_not_run (0: never)")
    on_worker_lost: Literal["continue", "stop"] = Field(
        "continue", description="a worker (process or Ray actor) lost mid-run: the others go "
                                "on to the end (`continue`) or the run stops (`stop`); either "
                                "way the outcome is could_not_run and names it")


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
    """An llmscen scenario: services, targets, data, phases, requests and SLOs."""

    version: Literal[1] = Field(1, description="the format's version: 1")
    name: Name | None = Field(None, description="the run's name in reports; default: the "
                              "file's stem")
    description: str = Field("", description="free text shown in reports")
    seed: int = Field(1, description="base seed: phases derive theirs from it unless given")
    services: dict[Name, ServiceSpec] = Field(default_factory=dict, description="processes "
                                              "llmscen starts before the run and stops after: "
                                              "bundled simulators or any command")
    targets: dict[Name, TargetSpec] = Field(min_length=1, description="the servers under "
                                            "test, by name: a protocol plugin and its options")
    data: dict[Name, DataSpec] = Field(default_factory=dict, description="data files (CSV, "
                                       "JSONL) whose rows requests take")
    phases: list[PhaseSpec] = Field(min_length=1, description="the shape of the load, one "
                                    "phase after another (docs/phases.md)")
    requests: list[RequestSpec] = Field(min_length=1, description="the traffic mix: each "
                                        "arrival picks one request by weight")
    slos: list[str | SLOSpec | FitSpec] = Field(
        default_factory=list, description="objectives judged after the run: latency.p95 < 5s, "
        "a mapping with `assert:` and scopes, or a `fit:` across a sweep (docs/slo.md)")
    goodput: dict[str, Duration] = Field(default_factory=dict,
                                         description="per-request objectives, e.g. ttft: 500ms")
    run: RunSpec = Field(default_factory=RunSpec, description="how the run behaves when "
                         "things go wrong")
    metrics: MetricsSpec = Field(default_factory=MetricsSpec, description="how some metrics "
                                 "are measured")
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
