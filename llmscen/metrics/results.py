"""The versioned results model: what `results.json` holds and what reporters read.

Nothing here is live: histograms are encoded strings, times are seconds since
the run started (phases, series) or UTC datetimes (meta). Bump
`SCHEMA_VERSION` on any change an older reader would misread.

    {schema_version, meta, phases: [...],
     scopes: [{phase, request, target, counters, histograms: {metric: hdr}, out_of_range}],
     series: {scopes: [{phase, request, target, points: [{t, requests, ok, errors, ...,
                                                          latency, ttft}]}],
              in_flight: [{phase, points: [[t, max]]}], users: [{phase, points}],
              resources: [{name, phase, points: [[t, value]]}]},
     resources: {interval, unavailable: {source: why}, stats: [{name, phase, min, mean, max,
                                                                samples}]},
     slos: [...], checks: [...], errors: [...], server_metrics: [...],
     requests: [...], replay: [...], outcome: {status, exit_code, reasons, cases}}

Version 2 added the outcome, the declared requests, `not_sent` counters,
checks' `unchecked` counts and SLOs that were not judged; version 1 files are
read and given an outcome from what they hold. Version 3 added the run's context
(the scenario file, the client machine, each target's resolved URL and server,
each plugin's metrics), the load each phase asked for over time, active users
per second, and errors split by status with the phases and times they occurred.
Version 4 added resource metrics sampled every second (the client's CPU and memory,
the host's, every started service's process tree, GPUs) as series and per-phase stats.
It also added `meta.cluster`: where the workers of a `--engine ray` run ran.
Version 5 added `consistency`: digests of the answers to each rendered request of an
`expect: consistent` step, by phase, judged after the workers' results are merged;
`slos[].cause` (what the telemetry showed where a failed SLO failed), `slos[].window_start`,
`slos[].fit` and the server's histograms per phase (`server_metrics[].histograms`).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

import llmscen
from llmscen.errors import InputError
from llmscen.spec.secrets import public_url

SCHEMA_VERSION = 5
MAX_SAMPLES = 5          # sample messages kept per error class / expectation
MAX_MESSAGE = 500        # characters kept of one sample message
MAX_EXCERPT = 300        # characters kept of an output excerpt


class ResultsError(InputError):
    """A results file could not be read."""


class ResultsVersionError(ResultsError):
    """A results file written by a newer llmscen."""


def excerpt(text: str, limit: int = MAX_EXCERPT) -> str:
    """`text` cut to `limit` characters, marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- meta ----------------------------------------------------------------------------


class PluginInfo(Model):
    name: str
    distribution: str | None = None
    version: str | None = None
    metrics: list[str] = Field(default_factory=list)   # what the plugin can produce


class TargetInfo(Model):
    name: str
    plugin: str
    url: str | None = None            # as resolved at run time (a service's own address)
    service: str | None = None        # the service llmscen started for it
    model: str | None = None          # the model it serves, as the scenario names it
    server: dict[str, str] = Field(default_factory=dict)   # what the server says it is
    #                                   (e.g. {"name": "vLLM", "version": "0.6.3"})
    metrics: list[str] = Field(default_factory=list)   # the Prometheus sample names its
    #                                   server exposed (or declared) before any traffic

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, url: str | None) -> str | None:
        return public_url(url)


class ClientInfo(Model):
    """The machine the load came from."""

    host: str = ""
    os: str = ""
    python: str = ""
    cpu: str = ""
    cores: int | None = None
    memory_gb: float | None = None


class NodeInfo(Model):
    """One node of a Ray cluster that ran workers (`--engine ray`)."""

    node: str                         # Ray's node id (its first 16 hex digits)
    address: str                      # the node's IP address
    workers: list[int] = Field(default_factory=list)
    pids: list[int] = Field(default_factory=list)     # of its worker actors, in that order
    clock_offset: float               # seconds: the node's monotonic clock minus the driver's,
    #                                   measured at start; every instant sent to it is moved by it
    rtt: float                        # seconds, the round trip it was measured with (± half)


class ClusterInfo(Model):
    engine: str = "ray"
    address: str                      # as given to --address, credentials hidden
    ray_version: str = ""
    driver: str = ""                  # the driver host's IP address, as Ray sees it
    nodes: list[NodeInfo] = Field(default_factory=list)


class Meta(Model):
    scenario: str
    file: str | None = None
    description: str = ""
    seed: int | None = None
    started_at: dt.datetime | None = None     # UTC
    ended_at: dt.datetime | None = None
    llmscen_version: str = llmscen.__version__
    plugins: list[PluginInfo] = Field(default_factory=list)
    targets: list[TargetInfo] = Field(default_factory=list)
    command_line: list[str] = Field(default_factory=list)
    interrupted: bool = False
    workers: int = 1
    notes: list[str] = Field(default_factory=list)   # e.g. "load generator saturated"
    client: ClientInfo | None = None
    scenario_source: str | None = None   # the scenario file as written, secrets masked
    cluster: ClusterInfo | None = None   # --engine ray: the nodes, their workers and clocks

    @field_validator("started_at", "ended_at")
    @classmethod
    def _utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("must carry a timezone (use datetime.now(timezone.utc))")
        return value.astimezone(dt.timezone.utc)


class PhaseInfo(Model):
    name: str
    kind: str                         # open | closed | pause | each | parallel
    warmup: bool = False
    started: float                    # seconds since run start
    ended: float
    planned_duration: float | None = None
    sweep: str | None = None          # the sweep (or groups) phase this one is part of
    vars: dict[str, int | float | str] = Field(default_factory=dict)   # the sweep's value
    #                                   in this step, by parameter (batch, users, arrival_rate)
    offered_rate: float | None = None    # arrivals per second asked for (open phases, mean)
    users: int | None = None          # users asked for (closed phases, at the end of a ramp)
    planned: list[tuple[float, float]] = Field(default_factory=list)   # the load asked for
    #                                   over time: (seconds since run start, arrivals/s or users)

    @property
    def wall(self) -> float:
        return max(0.0, self.ended - self.started)


# -- measurements --------------------------------------------------------------------


class Counters(Model):
    """Every scheduled request is counted once: `requests` (sent) + `not_sent`;
    and every sent one once: `ok` + the errors + `check_failures`."""

    requests: int = 0                 # sent
    not_sent: int = 0                 # scheduled but never sent (stopped, max_in_flight)
    ok: int = 0                       # no error and no failed check
    errors: dict[str, int] = Field(default_factory=dict)   # by class, `check` excluded
    check_failures: int = 0
    output_tokens: int = 0
    input_tokens: int = 0
    tokens_estimated: int = 0         # requests whose token counts were estimated
    images: int = 0
    bytes_received: int = 0
    goodput_met: int = 0              # ok requests that met every goodput objective
    content_chunks: int = 0           # content chunks of complete streamed responses
    large_chunks: int = 0             # ... longer than the scenario's `metrics.large_chunk`
    tokens_compared: int = 0          # streams with both the server's usage and a chunk count
    token_mismatches: int = 0         # ... whose usage.completion_tokens != token chunks

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())

    def add(self, other: Counters) -> None:
        add_counts(self, other)
        for name in ("input_tokens", "tokens_estimated", "images", "bytes_received",
                     "content_chunks", "large_chunks", "tokens_compared", "token_mismatches"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


class Scope(Model):
    """Everything recorded for one (phase, request, target)."""

    phase: str
    request: str
    target: str
    counters: Counters = Field(default_factory=Counters)
    histograms: dict[str, str] = Field(default_factory=dict)   # metric → encoded HDR
    out_of_range: dict[str, int] = Field(default_factory=dict)  # metric → values not recorded

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.phase, self.request, self.target)


class SeriesPoint(Model):
    """One scope's completions during second `t` (since run start)."""

    t: int
    requests: int = 0
    not_sent: int = 0
    ok: int = 0
    errors: dict[str, int] = Field(default_factory=dict)
    check_failures: int = 0
    output_tokens: int = 0
    goodput_met: int = 0
    latency: str | None = None        # encoded 2-digit HDR, µs
    ttft: str | None = None


# The counts a scope and a second of its series both keep; summed by `add_counts` only.
COUNT_FIELDS = ("requests", "not_sent", "ok", "check_failures", "output_tokens", "goodput_met")


def add_counts(into: Counters | SeriesPoint, other: Counters | SeriesPoint) -> None:
    """Add `other`'s counts (those both kinds keep, errors by class included) into `into`."""
    for name in COUNT_FIELDS:
        setattr(into, name, getattr(into, name) + getattr(other, name))
    for error, n in other.errors.items():
        into.errors[error] = into.errors.get(error, 0) + n


class ScopeSeries(Model):
    phase: str
    request: str
    target: str
    points: list[SeriesPoint] = Field(default_factory=list)   # sorted by t, sparse

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.phase, self.request, self.target)


class InFlightSeries(Model):
    phase: str | None = None
    points: list[tuple[int, int]] = Field(default_factory=list)   # (second, max in flight)


class ResourceSeries(Model):
    """One resource metric sampled every second while `phase` ran (None: between phases)."""

    name: str                         # e.g. client.cpu, host.memory, service.sim.rss,
    #                                   server.vllm:num_requests_waiting
    phase: str | None = None
    target: str | None = None         # server.* only: the target scraped
    labels: dict[str, str] = Field(default_factory=dict)   # server.* only: the series' labels
    points: list[tuple[int, float]] = Field(default_factory=list)   # (second, value in base
    #                                   units: cores, bytes, fraction, count; a server
    #                                   counter's increase per second)


class Series(Model):
    scopes: list[ScopeSeries] = Field(default_factory=list)
    in_flight: list[InFlightSeries] = Field(default_factory=list)
    users: list[InFlightSeries] = Field(default_factory=list)   # closed phases: users running
    resources: list[ResourceSeries] = Field(default_factory=list)


class ResourceStats(Model):
    """A resource metric's samples during one phase."""

    name: str
    phase: str
    target: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    min: float
    mean: float
    max: float
    samples: int


class Resources(Model):
    """What the run measured of the machines and processes it used (docs/results.md)."""

    interval: float = 1.0             # seconds between samples
    unavailable: dict[str, str] = Field(default_factory=dict)   # source (e.g. gpu) → why not
    stats: list[ResourceStats] = Field(default_factory=list)


# -- slots filled by other layers ----------------------------------------------------


class FitPoint(Model):
    phase: str                        # the sweep's step
    x: float                          # the parameter's value there
    y: float | None = None            # the metric there (base units); None: not measured


class FitResult(Model):
    """A `fit:` SLO's least-squares line through the steps of a sweep."""

    over: str                         # the parameter
    sweep: str
    points: list[FitPoint] = Field(default_factory=list)
    slope: float | None = None        # base units of the metric per unit of `over`
    intercept: float | None = None
    r2: float | None = None
    r2_min: float | None = None       # the bounds asserted
    slope_min: float | None = None
    slope_max: float | None = None


class Finding(Model):
    """One thing the telemetry showed in a failed SLO's scope (assertions/cause.py)."""

    kind: str                         # server_queue, kv_cache, preemptions, client_cpu,
    #                                   schedule_lag, service_cpu, host_cpu (stable)
    message: str
    metric: str | None = None         # what was read, e.g. server.vllm:num_requests_waiting
    value: float | None = None        # base units, as the rule compared it
    threshold: float | None = None


class Cause(Model):
    """What the telemetry showed in the scope where an SLO failed; no findings: nothing
    notable."""

    scope: str                        # e.g. `phase peak`, `window 12s–22s`
    findings: list[Finding] = Field(default_factory=list)
    checked: list[str] = Field(default_factory=list)   # every figure the rules read
    text: str                         # the sentence reports and JUnit show


class SloResult(Model):
    text: str
    metric: str | None = None
    stat: str | None = None
    op: str | None = None
    scope: dict[str, Any] = Field(default_factory=dict)   # phase/request/target/window
    measured: float | None = None     # base units: seconds, per second, fraction, count
    threshold: float | None = None
    passed: bool | None               # None: not judged (see the outcome's reasons)
    message: str = ""
    abort: bool = False               # the run stops as soon as this SLO fails
    where: str = ""                   # FILE:LINE:COL of the SLO
    fit: FitResult | None = None      # a fit across a sweep: measured is its R²
    window_start: float | None = None   # window SLOs that failed: the first window that did
    cause: Cause | None = None        # failed SLOs: what the telemetry showed in their scope


class Sample(Model):
    message: str
    output: str = ""                  # an excerpt of the model output, when relevant

    @field_validator("message")
    @classmethod
    def _short_message(cls, value: str) -> str:
        return excerpt(value, MAX_MESSAGE)

    @field_validator("output")
    @classmethod
    def _short_output(cls, value: str) -> str:
        return excerpt(value, MAX_EXCERPT)


class CheckSummary(Model):
    request: str
    expectation: str                  # e.g. `contains`, `python_syntax`
    passed: int = 0
    failed: int = 0
    unchecked: dict[str, int] = Field(default_factory=dict)  # error class → responses that
    #                                   failed before they could be checked
    samples: list[Sample] = Field(default_factory=list)   # at most MAX_SAMPLES

    @field_validator("samples")
    @classmethod
    def _bounded(cls, samples: list[Sample]) -> list[Sample]:
        return samples[:MAX_SAMPLES]


class ConsistencyRecord(Model):
    """The answers to one rendered request of an `expect: consistent` step: digests, not
    bodies, so a long run stays small; a few answers' texts for the report's example."""

    request: str                      # the step's metric name
    key: str                          # digest of the request as rendered and sent
    label: str = ""                   # an excerpt of it (secrets masked)
    answers: dict[str, dict[str, int]] = Field(default_factory=dict)   # phase → answer
    #                                   digest → how many answers were it
    texts: dict[str, str] = Field(default_factory=dict)   # answer digest → its first
    #                                   characters, for some answers (the example diff)


class ErrorSummary(Model):
    """Failed calls of one request with one error class and status."""

    request: str
    error: str                        # one of engine.protocol.ERROR_CLASSES
    status: int | None = None         # the response status they shared (HTTP, gRPC code)
    count: int = 0
    phases: list[str] = Field(default_factory=list)   # where they occurred
    first: float | None = None        # seconds since run start of the first and the last
    last: float | None = None
    samples: list[Sample] = Field(default_factory=list)   # at most MAX_SAMPLES

    @field_validator("samples")
    @classmethod
    def _bounded(cls, samples: list[Sample]) -> list[Sample]:
        return samples[:MAX_SAMPLES]


class ServerHistogram(Model):
    """What one phase did to a server's Prometheus histogram (one label set): its
    buckets' increases, so the phase's own distribution (metrics/server_histograms.py)."""

    bounds: list[float] = Field(default_factory=list)   # the buckets' upper bounds (`le`),
    #                                   ascending, +Inf left out
    counts: list[float] = Field(default_factory=list)   # observations per bucket, not
    #                                   cumulative: one per bound, then one above the last
    sum: float = 0.0                  # the observations' total (the family's unit)
    count: float = 0.0


class ServerMetrics(Model):
    """A target's Prometheus series around one phase, keyed `name` or `name{a="1",…}`."""

    phase: str
    target: str | None = None
    before: dict[str, float] = Field(default_factory=dict)
    after: dict[str, float] = Field(default_factory=dict)
    delta: dict[str, float] = Field(default_factory=dict)   # counters: what the phase did
    types: dict[str, str] = Field(default_factory=dict)   # sample name → counter | gauge |
    #                                   untyped, from the exposition's `# TYPE`; {} when the
    #                                   plugin does not say (then `delta` has every series)
    histograms: dict[str, ServerHistogram] = Field(default_factory=dict)   # histogram family
    #                                   (with its labels but `le`) → the phase's buckets

    def total(self, name: str, of: Literal["before", "after", "delta"] = "delta") -> float:
        """A sample name's value summed over its label sets (0 when absent)."""
        values = getattr(self, of)
        return sum(v for k, v in values.items() if k == name or k.startswith(name + "{"))


class FaultInfo(Model):
    """A fault of the plan, as it happened (seconds since run start)."""

    phase: str
    action: str                       # stop | unload
    subject: str                      # the service, or the model
    targets: list[str] = Field(default_factory=list)
    at: float                         # when it took effect
    undone_at: float | None = None    # when the service or model was back (ready)


class SearchStep(Model):
    value: float                      # the load tried: arrivals per second, or users
    phases: list[str] = Field(default_factory=list)   # the step's phases (one per repeat)
    passed: bool
    saturated: bool = False
    client_bound: bool = False
    served: float | None = None       # successful requests per second
    offered: float | None = None      # arrivals per second asked (open searches)
    latency_p95: float | None = None  # seconds
    failed: list[str] = Field(default_factory=list)   # objectives that did not hold


class SearchInfo(Model):
    """What a `search:` phase found."""

    phase: str
    axis: str                         # arrival_rate | users
    capacity: float | None            # the highest load that passed (None: not even min)
    ceiling: float | None             # the lowest load that failed above it
    precision: float
    converged: bool                   # capacity and ceiling are within the precision
    knee: float | None = None         # the highest load the server still followed
    steps: list[SearchStep] = Field(default_factory=list)


class ReplayInfo(Model):
    """A `replay:` phase: how faithfully it kept its trace's arrivals (docs/results.md)."""

    phase: str
    data: str                         # the trace's data set
    speed: float = 1.0
    sent: int = 0                     # arrivals sent (the others are the phase's not_sent)
    ks: float | None = None           # KS statistic, intended vs achieved arrival times
    lag_p50: float | None = None      # seconds from an arrival's intended start to its send
    lag_p99: float | None = None
    lag_max: float | None = None
    prefix_cache_hit_rate: float | None = None   # the server's, over the phase (fraction)
    intended: list[int] = Field(default_factory=list)   # µs since run start, each sent arrival
    lag: list[int] = Field(default_factory=list)        # µs, send − intended, in that order


class BaselineInfo(Model):
    """This run against the scenario's `baseline:` (the regression gate of `llmscen compare`)."""

    file: str
    verdict: str                      # REGRESSED, NO REGRESSION or NOT ENOUGH DATA
    line: str                         # the sentence `llmscen compare` would print
    regressions: list[str] = Field(default_factory=list)   # one line each
    warnings: list[str] = Field(default_factory=list)      # e.g. a different scenario


class StepInfo(Model):
    name: str                         # the metric name: `request`, or `request.step`
    expectations: list[str] = Field(default_factory=list)
    expects_error: bool = False       # `expect: {error: ...}`: errors are this step's success


class RequestInfo(Model):
    """A request the scenario declares, so every one is judged even when never sent."""

    name: str
    target: str
    steps: list[StepInfo] = Field(default_factory=list)


# -- the outcome ---------------------------------------------------------------------

Status = Literal["passed", "failed", "could_not_run", "interrupted", "invalid_measurement"]
CaseStatus = Literal["passed", "failed", "skipped", "error"]


class Reason(Model):
    """Why a run ended as it did. `kind` is stable (tools may branch on it)."""

    kind: str                         # e.g. slo_failed, service_exited, client_saturated
    message: str
    detail: dict[str, Any] = Field(default_factory=dict)


class Case(Model):
    """One test case of the run: what JUnit, pytest and the reports show."""

    kind: Literal["run", "slo", "request", "expectation", "baseline"]
    name: str
    status: CaseStatus
    message: str = ""
    request: str | None = None        # request and expectation cases
    slo: int | None = None            # index into `slos` for SLO cases


class Outcome(Model):
    status: Status
    exit_code: int
    reasons: list[Reason] = Field(default_factory=list)
    cases: list[Case] = Field(default_factory=list)


# -- the file ------------------------------------------------------------------------


class RunResults(Model):
    schema_version: int = SCHEMA_VERSION
    meta: Meta
    phases: list[PhaseInfo] = Field(default_factory=list)
    scopes: list[Scope] = Field(default_factory=list)
    series: Series = Field(default_factory=Series)
    slos: list[SloResult] = Field(default_factory=list)
    checks: list[CheckSummary] = Field(default_factory=list)
    consistency: list[ConsistencyRecord] = Field(default_factory=list)
    errors: list[ErrorSummary] = Field(default_factory=list)
    server_metrics: list[ServerMetrics] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    requests: list[RequestInfo] = Field(default_factory=list)
    faults: list[FaultInfo] = Field(default_factory=list)
    search: list[SearchInfo] = Field(default_factory=list)
    replay: list[ReplayInfo] = Field(default_factory=list)   # `replay:` phases' fidelity
    baseline: BaselineInfo | None = None
    outcome: Outcome | None = None    # None only while a run is still being judged

    @field_validator("schema_version")
    @classmethod
    def _readable(cls, version: int) -> int:
        if version > SCHEMA_VERSION:
            raise ValueError(f"schema {version} is newer than this llmscen reads "
                             f"({SCHEMA_VERSION}); upgrade llmscen")
        return version

    def phase(self, name: str) -> PhaseInfo | None:
        return next((p for p in self.phases if p.name == name), None)

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically, so a reader never sees half a file."""
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(self.to_json())
        tmp.replace(target)

    @classmethod
    def from_json(cls, data: bytes | str, source: str = "results") -> RunResults:
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise ResultsError(f"{source}: not valid JSON: {e}") from None
        version = raw.get("schema_version") if isinstance(raw, dict) else None
        if not isinstance(version, int):
            raise ResultsError(f"{source}: not an llmscen results file (no schema_version)")
        if version > SCHEMA_VERSION:
            raise ResultsVersionError(
                f"{source}: written with results schema {version} (llmscen "
                f"{raw.get('meta', {}).get('llmscen_version', '?')}); this llmscen "
                f"({llmscen.__version__}) reads schema {SCHEMA_VERSION} — upgrade llmscen")
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            raise ResultsError(f"{source}: invalid results file:\n{e}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunResults:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ResultsError(f"{path}: {e.strerror or e}") from None
        return cls.from_json(data, str(path))
