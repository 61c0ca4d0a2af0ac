"""The contract between the engine and protocol plugins (plugin API version 1).

A plugin is an object registered under the entry-point group `llmscen.plugins`.
It declares its options models and builds a `Runner` from a target's plan alone
(so a runner can be rebuilt inside a worker process). The engine stamps the
intended start of every call; the runner stamps the rest on the same clock
(`time.perf_counter_ns`) and never raises for a misbehaving server: it
classifies the failure into `Exchange.error` and returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel

from llmscen.errors import RunError

PLUGIN_API_VERSION = 1

ErrorClass = Literal[
    "connect",    # could not connect / connection reset before a response
    "timeout",    # the per-request timeout expired
    "http",       # a response with a non-success status
    "protocol",   # a malformed or cut response (bad SSE, bad JSON, early EOF)
    "check",      # the response arrived but an expectation failed
    "cancelled",  # the run stopped while the request was in flight
    "client",     # the request could not be built (template error, bad data row)
]
ERROR_CLASSES: tuple[str, ...] = ("connect", "timeout", "http", "protocol", "check", "cancelled",
                                  "client")


@dataclass(slots=True)
class ToolCall:
    """One tool call of an answer: a stream's fragments joined (OpenAI `tool_calls`)."""

    name: str = ""
    arguments: str = ""         # as the model wrote it: JSON text, unparsed
    id: str = ""


@dataclass(slots=True)
class Exchange:
    """Everything one call observed. Times are `time.perf_counter_ns()` values."""

    intended_ns: int
    sent_ns: int = 0
    first_byte_ns: int = 0
    first_content_ns: int = 0   # first chunk carrying generated content
    first_answer_ns: int = 0    # first chunk carrying answer text (not reasoning, tool calls)
    end_ns: int = 0
    itl_us: list[int] = field(default_factory=list)  # gaps between consecutive content chunks
    status: int | None = None
    error: str | None = None    # one of ERROR_CLASSES
    error_message: str = ""
    text: str = ""              # generated text (joined content chunks, or the response text)
    chunks: int = 0             # content chunks of a streamed response
    output_tokens: int | None = None
    input_tokens: int | None = None
    tokens_estimated: bool = False
    reasoning_tokens: int | None = None   # of output_tokens, the reasoning ("thinking") ones
    finish_reason: str | None = None
    body: Any = None            # the parsed JSON body of a non-streamed response
    headers: dict[str, str] | None = None
    tensors: dict[str, Any] | None = None   # output name → numpy array (tensor plugins)
    bytes_received: int = 0
    images: int = 0
    chunk_chars: list[int] | None = None   # characters of each content chunk (streams)
    recorded: dict[str, float] | None = None   # custom metric → value (a step's `record:`)
    tool_calls: list[ToolCall] | None = None   # the tool calls of the answer, assembled

    def fail(self, error: str, message: str) -> None:
        """Record the first failure; later ones (e.g. a timeout after a protocol error) don't hide it."""
        if self.error is None:
            self.error = error
            self.error_message = message


@dataclass(slots=True)
class Session:
    """One multi-turn session (`turns:`), shared by the calls of its turns.

    `history` belongs to the runner: it adds the earlier turns to a call and, when the
    call succeeds, appends this turn (the messages sent and the answer) to it. The
    engine only carries it from turn to turn, on one virtual user.
    """

    id: str
    turn: int = 1                     # 1-based number of the turn being sent
    header: str | None = None         # a header that carries `id` on every turn
    history: list[Any] = field(default_factory=list)


@dataclass(slots=True)
class Call:
    """One rendered request, ready for a runner.

    `payload` holds the plugin's request options with every template rendered
    (for openai: `api`, `body`, ...). `stream` is the request's streaming flag.
    `session` is set on the turns of a multi-turn session.
    """

    request: str
    payload: dict[str, Any]
    stream: bool = False
    timeout: float | None = None
    session: Session | None = None


class Runner(Protocol):
    """Speaks one protocol to one target for one run."""

    async def start(self) -> None:
        """Open connections; wait for readiness if the plugin supports it."""

    async def preflight(self, calls: Sequence[Call]) -> list[str]:
        """Check the target before traffic (model exists, input names and shapes).

        Returns problems as messages naming the request and field; empty when fine.
        """

    async def send(self, call: Call, exchange: Exchange) -> None:
        """Send one call, filling `exchange`; must not raise for server misbehaviour."""

    async def stop(self) -> None:
        """Close connections. Called once, also after a failed start."""

    async def server_metrics(self) -> dict[str, float]:
        """The server's own counters (e.g. Prometheus), or {} when it has none."""



# -- optional capabilities -------------------------------------------------------------
# What the engine and the driver use when a plugin offers it. Each is declared here and
# read through the function beside it, never by probing attributes elsewhere.


@runtime_checkable
class Unbatching(Protocol):
    """A runner that can split a batched call into one call per item, for
    `expect: batch_consistent` (the triton runner)."""

    def unbatch(self, call: Call) -> list[Call] | None: ...


@runtime_checkable
class Reconnecting(Protocol):
    """A runner that re-sends a call on a fresh connection when the server closed a
    kept-alive one before any response byte, and counts how often (reported as a note)."""

    reconnects: int


def unbatcher(runner: Runner) -> Unbatching | None:
    return runner if isinstance(runner, Unbatching) else None


def reconnects(runner: Runner) -> int:
    return int(runner.reconnects) if isinstance(runner, Reconnecting) else 0


@runtime_checkable
class Describing(Protocol):
    """A runner that can say what its server is, for the reports: e.g. {"name": "vLLM",
    "version": "0.6.3"} from vLLM's `/version`, or Triton's server metadata. Asked once,
    after `start`, by the first worker; {} when the server does not say."""

    async def server_info(self) -> dict[str, str]: ...


def describer(runner: Runner) -> Describing | None:
    return runner if isinstance(runner, Describing) else None


@dataclass(frozen=True)
class Exposed:
    """A server's Prometheus metrics as exposed: each series with its labels, each sample
    name with its family's type, so counters are not taken for gauges."""

    values: dict[str, float]   # `name` or `name{a="1",b="2"}` (labels sorted) → value
    types: dict[str, str]      # sample name → counter | gauge | untyped (a histogram's
    #                            `_sum` and `_count` are counters)
    declared: dict[str, str] = field(default_factory=dict)   # `# TYPE` family → type, also
    #                            of families with no samples yet (labels not used so far)
    buckets: dict[str, float] = field(default_factory=dict)   # histograms' cumulative
    #                            buckets: `name_bucket{le="0.1",…}` → count (kept apart: they
    #                            are read per phase, not every second)

    def names(self) -> list[str]:
        """Every sample name the server exposes or has declared (a counter family `x` may
        be sampled as `x` or `x_total`, a histogram's as `x_sum` and `x_count`)."""
        out = set(self.types)
        for family, kind in self.declared.items():
            out.add(family)
            if kind == "counter":
                out.add(family + "_total")
            elif kind in ("histogram", "summary", "gaugehistogram"):
                out.update((family + "_sum", family + "_count"))
        return sorted(out)


@runtime_checkable
class Exposing(Protocol):
    """A runner that reads its server's Prometheus metrics with their labels and types.
    Without it, `server_metrics()` (summed over labels, untyped) is all there is."""

    async def exposed_metrics(self) -> Exposed | None: ...


def exposing(runner: Runner) -> Exposing | None:
    return runner if isinstance(runner, Exposing) else None


@runtime_checkable
class Tokenizing(Protocol):
    """A runner that can ask its server how many tokens a prompt is, as the server will
    count it in `usage.prompt_tokens` (`data: {synthetic: {tokenizer: server}}`): the
    prompt as one user message of a chat (`chat=True`) or as a completions prompt. Raises
    `RunError` with a readable message when the server cannot say."""

    async def count_tokens(self, text: str, chat: bool) -> int: ...


def tokenizer(runner: Runner) -> Tokenizing | None:
    return runner if isinstance(runner, Tokenizing) else None


@runtime_checkable
class Synthesizing(Protocol):
    """A plugin that knows how to send a `synthetic:` data row when the request gives no
    body of its own: the request keys (templates over `row`) to use. Read by the compiler
    as `Plugin.synthetic_payload`."""

    def synthetic_payload(self, target_options: BaseModel, request_options: BaseModel,
                          output_tokens: bool) -> dict[str, Any]: ...


@runtime_checkable
class Conversing(Protocol):
    """A plugin whose runners hold multi-turn sessions (`turns:`): they read and extend
    `Call.session`. `session_problem` says, at compile time, why a request of these
    options cannot be a session (e.g. not a chat API), or None when it can. (The
    compiler, which may not import the engine, reads it as `Plugin.session_problem`.)"""

    def session_problem(self, target_options: BaseModel,
                        request_options: BaseModel) -> str | None: ...


# Target options a plugin may declare in its `target_options` model:
#   timeout: float | None       the per-call limit; the longest one bounds a phase's drain
#   protocol: str               which of a started service's URLs the target uses (its
#                               scheme in `Endpoint.urls`, e.g. "grpc"); default "http"
#   <scheme>_url: str | None    left unset, filled from the service's URL of that scheme
#                               (e.g. `metrics_url` from a service's "metrics" URL)

def target_timeout(options: BaseModel) -> float | None:
    value = getattr(options, "timeout", None)
    return float(value) if value else None


def target_protocol(options: BaseModel) -> str:
    return str(getattr(options, "protocol", "http"))


def service_urls_to_fill(options: BaseModel, urls: dict[str, str]) -> dict[str, str]:
    """The `<scheme>_url` options left unset that a service's `urls` can fill."""
    return {f"{name}_url": url for name, url in urls.items()
            if f"{name}_url" in type(options).model_fields and
            getattr(options, f"{name}_url") is None}


@runtime_checkable
class Plugin(Protocol):
    """What an entry point in `llmscen.plugins` resolves to."""

    name: str
    api_version: int
    description: str
    target_options: type[BaseModel]   # target keys besides `plugin` and `service`
    request_options: type[BaseModel]  # request keys besides the common ones
    metrics: frozenset[str]           # SPEC §5 metrics it can produce

    def create_runner(self, target: Any) -> Runner:
        """Build a runner from a `compile.plan.TargetPlan`."""


@dataclass(frozen=True)
class Endpoint:
    """Where a started service listens. `urls` by scheme, e.g. {"http": ..., "grpc": ...}.

    `exited`, when the service kind can tell, returns None while the service runs and
    a description (exit code or signal, its log's last lines) once it has stopped:
    the driver polls it and ends the run when a service dies under it. `pid`, when the
    service is a process, returns its process id (None while stopped): the driver
    samples the CPU and memory of the process tree under it.
    """

    url: str
    urls: dict[str, str] = field(default_factory=dict)
    exited: Callable[[], str | None] | None = field(default=None, compare=False)
    pid: Callable[[], int | None] | None = field(default=None, compare=False)
    control: ServiceControl | None = field(default=None, compare=False)

    def url_for(self, scheme: str) -> str:
        return self.urls.get(scheme, self.url)


class ServiceControl(Protocol):
    """What a service kind offers when the scenario may stop and start it again mid-run
    (`faults: [{stop: NAME, for: 3s}]`): same address, same options."""

    async def stop(self) -> None: ...

    async def start(self) -> None:
        """Start it again and wait until it is ready; raises `ServiceError` if it is not."""


class ServiceKind(Protocol):
    """What an entry point in `llmscen.services` resolves to."""

    name: str
    description: str
    options: type[BaseModel]

    def launch(self, plan: Any, log_dir: str | None) -> AbstractAsyncContextManager[Endpoint]:
        """Start the service described by a `compile.plan.ServicePlan`; stop it on exit.

        Raises `ServiceError` with a readable message (and the log's last lines)
        when the service cannot start or become ready.
        """


class ServiceError(RunError):
    """A service failed to start, become ready, or stop."""

    def __init__(self, message: str, kind: str = "service_failed") -> None:
        super().__init__(message, kind)
