"""The `triton` plugin: KServe v2 inference over gRPC (default) or HTTP, with tritonclient.

    targets:
      flux: {plugin: triton, url: 127.0.0.1:8001, model: flux}        # protocol: grpc
    requests:
      - target: flux
        inputs:
          prompt: {datatype: BYTES, shape: [1], data: ["{{ row.prompt }}"]}
        outputs: [images]                                             # optional

tritonclient (`grpc.aio` or `http.aio`) and numpy are imported when a runner
starts, never at plugin discovery. `start()` waits until the server and the
model are ready and reads the model's metadata and config; `preflight()`
checks every request's inputs against them. Input tensors are built once per
payload object (a payload without templates is the same object every call).

Over gRPC a request is serialized once per payload object and sent on the runner's
own channel (wire.py); the response's outputs are read once. Decoupled models, and
any request with `stream: true`, go over a gRPC stream:
each response with outputs is a content chunk (TTFT, ITL, chunks, text from
`text_output` or the first BYTES output); the response flagged
`triton_final_response` ends the call. Unary calls have no separate first byte.

Errors: an error from the server is class `http`, with the server's message and
`status` as an HTTP code (gRPC codes mapped the grpc-gateway way, e.g.
INVALID_ARGUMENT → 400, UNAVAILABLE → 503); a deadline is `timeout`; a
refused or lost connection is `connect`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmscen.engine.protocol import PLUGIN_API_VERSION, Call, Exchange, Exposed
from llmscen.runners.guard import describe
from llmscen.runners.secrets import Headers, Scrubber
from llmscen.runners.triton.errors import classify
from llmscen.runners.triton.stream import StreamPool, decode_text
from llmscen.runners.triton.wire import GrpcWire, encode_request, raw_contents, tensors_of
from llmscen.spec.units import Duration

if TYPE_CHECKING:
    from llmscen.compile.plan import TargetPlan
    from llmscen.runners.triton.tensors import ModelInfo

INSTALL_HINT = "pip install 'llmscen[triton]'"
METRICS = frozenset({
    "latency", "latency_sent", "ttft", "ttft_sent", "itl", "tpot", "schedule_lag",
    "output_tokens", "chunks", "bytes_received", "throughput", "output_token_throughput",
    "images_per_second", "goodput", "error_rate", "check_failure_rate", "success_rate",
})
Datatype = Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                   "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES"]


class TritonTargetOptions(BaseModel):
    """Target keys of the `triton` plugin."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="the model every request of this target calls")
    protocol: Literal["grpc", "http"] = Field("grpc", description="KServe v2 over gRPC or HTTP")
    model_version: str = Field("", description="empty: the server's choice")
    timeout: Duration = Field(60.0, description="per-request timeout")
    ready_timeout: Duration = Field(30.0, description="how long start() waits for readiness")
    headers: Headers = Field(default_factory=dict, description="extra request headers")
    metrics_url: str | None = Field(None, description="Prometheus endpoint scraped for nv_* "
                                                      "counters, e.g. http://host:8002/metrics")


class TensorData(BaseModel):
    """One input tensor of a request."""

    model_config = ConfigDict(extra="forbid")

    datatype: Datatype = Field(description="KServe v2 datatype, e.g. BYTES, INT32, FP32")
    shape: list[int | str] | str = Field(
        description="without the batch dimension is fine for a batching model: batch 1 is "
                    "added; a size may be a template: [\"{{ batch }}\"]")
    data: list[Any] | str | int | float | bool = Field(description="values, flat or nested; "
                                                                   "strings parse as numbers")

    @model_validator(mode="after")
    def _count_matches_shape(self) -> TensorData:
        dims = [self.shape] if isinstance(self.shape, str) else self.shape
        for d in dims:
            if isinstance(d, str) and not _templated(d):
                raise ValueError(f"shape {self.shape} holds {d!r}: a size is a number or a "
                                 "template such as \"{{ batch }}\"")
        if isinstance(self.shape, str) or any(isinstance(d, str) for d in self.shape) or \
                (isinstance(self.data, str) and _templated(self.data)):
            return self     # known when the template renders, checked on send
        if any(d < 0 for d in self.shape):   # type: ignore[operator]
            raise ValueError(f"shape {self.shape} must not hold negative sizes")
        count = 1
        for d in self.shape:
            count *= d   # type: ignore[assignment]
        given = _count(self.data)
        if given != count:
            raise ValueError(f"shape {self.shape} holds {count} values but data has {given}")
        return self


def _templated(text: str) -> bool:
    return "{{" in text or "{%" in text


def _item(data: Any, index: int, batch: int) -> Any:
    """Item `index` of data whose first dimension is `batch`, flat or nested."""
    if isinstance(data, list) and len(data) == batch:
        return [data[index]]
    flat = data if isinstance(data, list) else [data]
    per = len(flat) // batch
    return flat[index * per:(index + 1) * per]


def _count(data: Any) -> int:
    return sum(_count(d) for d in data) if isinstance(data, list) else 1


class TritonRequestOptions(BaseModel):
    """Request (or step) keys of the `triton` plugin."""

    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, TensorData] = Field(description="input tensors by name")
    outputs: list[str] | None = Field(None, description="outputs to ask for; default: all")
    parameters: dict[str, str | int | float | bool] | None = Field(
        None, description="KServe request parameters, passed through")


class TritonUnavailable(ConnectionError):
    """The server or model did not become ready, or tritonclient is missing."""


def _client_module(protocol: str) -> Any:
    try:
        if protocol == "grpc":
            import tritonclient.grpc.aio as module
        else:
            import tritonclient.http.aio as module
    except ImportError as exc:
        raise TritonUnavailable(f"the triton plugin needs tritonclient ({exc}); "
                                f"{INSTALL_HINT}") from None
    return module


def _address(url: str) -> tuple[str, bool]:
    """`host:port` for tritonclient from `host:port`, `grpc://…` or `http(s)://…[/]`."""
    ssl = url.startswith(("https://", "grpcs://"))
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0], ssl


class TritonRunner:
    """Runner for one model on one Triton server; build it with `TritonPlugin.create_runner`."""

    def __init__(self, target: TargetPlan) -> None:
        options = target.options
        if not isinstance(options, TritonTargetOptions):
            raw = options.model_dump() if isinstance(options, BaseModel) else options
            options = TritonTargetOptions.model_validate(raw)
        self.target = target
        self.options = options
        self.address, self.ssl = _address(target.url or "")
        self.grpc = options.protocol == "grpc"
        self.info: ModelInfo | None = None
        self._module: Any = None
        self._client: Any = None
        self._built: dict[int, tuple[Any, list[Any], list[Any] | None]] = {}
        self._encoded: dict[int, tuple[Any, bytes]] = {}
        self._wire: GrpcWire | None = None
        self._text_outputs: dict[int, str | None] = {}
        self._headers = dict(options.headers) or None
        self._scrubber = Scrubber.of(target)
        self._session: Any = None   # aiohttp, for metrics_url
        self._streams: StreamPool | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        from llmscen.runners.triton.tensors import ModelInfo

        name, model = self.target.name, self.options.model
        if not self.address:
            raise TritonUnavailable(f"target {name!r} has no URL (give `url:` or a `service:`)")
        self._module = _client_module(self.options.protocol)
        if self.grpc:
            self._client = self._module.InferenceServerClient(self.address, ssl=self.ssl)
            self._wire = GrpcWire(self.address, self.ssl, self._headers)
        else:
            self._client = self._module.InferenceServerClient(self.address, ssl=self.ssl,
                                                              conn_timeout=self.options.timeout)
        await self._wait_ready()
        version, headers = self.options.model_version, self._headers
        try:
            meta = await self._client.get_model_metadata(model, version, headers=headers,
                                                         **self._as_json())
            config = await self._client.get_model_config(model, version, headers=headers,
                                                         **self._as_json())
        except Exception as exc:
            raise TritonUnavailable(f"target {name!r}: cannot read model {model!r} at "
                                    f"{self.address}: {describe(exc)}") from None
        self.info = ModelInfo.from_json(meta, config)

    def _as_json(self) -> dict[str, bool]:
        return {"as_json": True} if self.grpc else {}

    async def _wait_ready(self) -> None:
        model, version = self.options.model, self.options.model_version
        deadline = time.monotonic() + self.options.ready_timeout
        last = "no answer yet"
        while True:
            try:
                if not await self._client.is_server_ready(headers=self._headers):
                    last = "the server is not ready"
                elif await self._client.is_model_ready(model, version, headers=self._headers):
                    return
                else:
                    last = f"model {model!r} is not ready (is it in the model repository?)"
            except Exception as exc:
                last = describe(exc)
            if time.monotonic() >= deadline:
                raise TritonUnavailable(
                    f"target {self.target.name!r}: Triton at {self.address} "
                    f"({self.options.protocol}) was not ready within "
                    f"{self.options.ready_timeout:g}s: {last}")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._streams is not None:
            self._streams.close()
            self._streams = None
        for resource in (self._client, self._session, self._wire):
            if resource is not None:
                await resource.close()
        self._client = self._session = self._wire = None

    async def server_info(self) -> dict[str, str]:
        """What the server says it is (for reports): Triton's server metadata."""
        info: dict[str, str] = {}
        try:
            meta = await self._client.get_server_metadata(headers=self._headers,
                                                          **self._as_json())
        except Exception:   # best effort: a report without the version is still a report
            meta = {}
        if isinstance(meta, dict):
            info.update({k: str(meta[k]) for k in ("name", "version") if meta.get(k)})
        return info

    async def server_metrics(self) -> dict[str, float]:
        """Triton's `nv_*` Prometheus metrics summed over labels, when `metrics_url` is set."""
        from llmscen.runners.prometheus import summed

        exposed = await self.exposed_metrics()
        return summed(exposed) if exposed is not None else {}

    async def exposed_metrics(self) -> Exposed | None:
        """Triton's `nv_*` series with labels (`model`, `version`) and types; None without
        a `metrics_url` or on failure."""
        if not self.options.metrics_url:
            return None
        import aiohttp

        from llmscen.runners.prometheus import parse_exposition

        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            url = self.options.metrics_url
            if "/" not in url.split("://", 1)[-1]:   # a bare host:port: Triton serves /metrics
                url = url.rstrip("/") + "/metrics"
            async with self._session.get(url,
                                         timeout=aiohttp.ClientTimeout(total=5)) as resp:
                if resp.status != 200:
                    return None
                text = await resp.text(errors="replace")
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return None
        return parse_exposition(text, "nv_")

    # -- preflight -------------------------------------------------------------------------

    async def preflight(self, calls: Sequence[Call]) -> list[str]:
        from llmscen.runners.triton.tensors import check_request

        if self.info is None:
            return [f"target {self.target.name!r}: runner not started"]
        problems, seen = [], set()
        for call in calls:
            if call.request in seen:
                continue
            seen.add(call.request)
            where = f"target {self.target.name!r}, request {call.request!r}"
            problems += [f"{where}: {p}" for p in check_request(
                self.info, call.payload, protocol=self.options.protocol, stream=call.stream)]
        return problems

    # -- sending ---------------------------------------------------------------------------

    async def send(self, call: Call, exchange: Exchange) -> None:
        try:
            await self._send(call, exchange)
        except asyncio.CancelledError:
            exchange.end_ns = exchange.end_ns or time.perf_counter_ns()
            exchange.fail("cancelled", "the run stopped while the request was in flight")
            raise
        except Exception as exc:  # classified, never raised: a bad server must not stop the run
            exchange.end_ns = exchange.end_ns or time.perf_counter_ns()
            limit = self.options.timeout if call.timeout is None else call.timeout
            error, status, message = classify(exc, limit, bool(exchange.first_byte_ns))
            if status is not None:
                exchange.status = status
            exchange.fail(error, message)
        finally:   # a server may echo the target's or the request's credentials
            if exchange.error_message:
                exchange.error_message = self._scrubber.with_secrets_of(call.payload)(
                    exchange.error_message)

    def unbatch(self, call: Call) -> list[Call] | None:
        """One call per batch item: inputs whose first dimension is the batch size are
        sliced, the others (e.g. a step count of shape [1]) are sent as they are."""
        inputs = call.payload.get("inputs") or {}
        sizes = {spec["shape"][0] for spec in inputs.values() if spec.get("shape")}
        batch = max(sizes, default=1)
        if batch < 2:
            return None
        calls = []
        for i in range(batch):
            single = {}
            for name, spec in inputs.items():
                shape = list(spec["shape"])
                data = spec["data"]
                if shape and shape[0] == batch:
                    data = _item(data, i, batch)
                    shape[0] = 1
                single[name] = {**spec, "shape": shape, "data": data}
            calls.append(Call(request=call.request, payload={**call.payload, "inputs": single},
                              stream=call.stream, timeout=call.timeout))
        return calls

    async def _send(self, call: Call, ex: Exchange) -> None:
        if self._client is None or self.info is None:
            raise RuntimeError("runner used before start()")
        timeout = self.options.timeout if call.timeout is None else call.timeout
        if self._wire is not None:
            try:
                request = self._serialized(call.payload)
            except ValueError as exc:
                ex.fail("client", str(exc))
                return
            if call.stream or self.info.decoupled:
                if self._streams is None:
                    self._streams = StreamPool(self._wire)
                await self._streams.call(request, ex, decoupled=self.info.decoupled,
                                         text_output=self._text_output(call.payload),
                                         timeout=timeout)
                return
            ex.sent_ns = time.perf_counter_ns()
            raw = await self._wire.infer(request, timeout)
            ex.first_byte_ns = ex.end_ns = time.perf_counter_ns()
            ex.status = 200
            ex.bytes_received = len(raw)
            tensors = tensors_of(self._wire.response_type.FromString(raw))
        else:
            found = await self._send_http(call, ex, timeout)
            if found is None:
                return
            tensors = found
        ex.tensors = tensors
        images = tensors.get("images")
        if images is not None and images.ndim:
            ex.images = int(images.shape[0])
        text_name = self._text_output(call.payload)
        if text_name in tensors:
            ex.text = decode_text(tensors[text_name])

    async def _send_http(self, call: Call, ex: Exchange, timeout: float
                         ) -> dict[str, Any] | None:
        try:
            inputs, outputs = self._request(call.payload)
        except ValueError as exc:
            ex.fail("client", str(exc))
            return None
        ex.sent_ns = time.perf_counter_ns()
        result = await asyncio.wait_for(self._client.infer(
            self.options.model, inputs, model_version=self.options.model_version,
            outputs=outputs, headers=self._headers, parameters=call.payload.get("parameters")),
            timeout)
        ex.first_byte_ns = ex.end_ns = time.perf_counter_ns()
        ex.status = 200
        response = result.get_response()
        outputs_json = response.get("outputs", [])
        ex.bytes_received = sum(int((o.get("parameters") or {}).get("binary_data_size", 0))
                                for o in outputs_json)
        return {o["name"]: result.as_numpy(o["name"]) for o in outputs_json}

    def _serialized(self, payload: dict[str, Any]) -> bytes:
        """The gRPC request bytes for a payload, built once per payload object."""
        key = id(payload)
        hit = self._encoded.get(key)
        if hit is not None and hit[0] is payload:
            return hit[1]
        from llmscen.runners.triton.tensors import TensorDataError, to_array

        assert self.info is not None
        tensors = []
        for name, spec in (payload.get("inputs") or {}).items():
            try:
                array = to_array(spec["datatype"], spec["shape"], spec["data"])
            except TensorDataError as exc:
                raise ValueError(f"inputs.{name}: {exc}") from None
            array = array.reshape(self.info.wire_shape(name, array.shape))
            tensors.append((name, spec["datatype"], list(array.shape),
                            raw_contents(array, spec["datatype"])))
        data = encode_request(self.options.model, self.options.model_version, tensors,
                              payload.get("outputs"), payload.get("parameters"))
        if len(self._encoded) >= 256:   # templated payloads are new objects each call
            self._encoded.clear()
        self._encoded[key] = (payload, data)
        return data

    def _request(self, payload: dict[str, Any]) -> tuple[list[Any], list[Any] | None]:
        """InferInputs and requested outputs for a payload, built once per payload object."""
        key = id(payload)
        hit = self._built.get(key)
        if hit is not None and hit[0] is payload:
            return hit[1], hit[2]
        from llmscen.runners.triton.tensors import TensorDataError, to_array

        assert self.info is not None
        module, inputs = self._module, []
        for name, spec in (payload.get("inputs") or {}).items():
            try:
                array = to_array(spec["datatype"], spec["shape"], spec["data"])
            except TensorDataError as exc:
                raise ValueError(f"inputs.{name}: {exc}") from None
            array = array.reshape(self.info.wire_shape(name, array.shape))
            tensor = module.InferInput(name, list(array.shape), spec["datatype"])
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        wanted = payload.get("outputs")
        outputs = [module.InferRequestedOutput(n) for n in wanted] if wanted else None
        if len(self._built) >= 256:   # templated payloads are new objects each call
            self._built.clear()
            self._text_outputs.clear()
        self._built[key] = (payload, inputs, outputs)
        return inputs, outputs

    def _text_output(self, payload: dict[str, Any]) -> str | None:
        key = id(payload)
        if key not in self._text_outputs:
            assert self.info is not None
            self._text_outputs[key] = self.info.text_output(payload.get("outputs"))
        return self._text_outputs[key]

class TritonPlugin:
    """Entry point `triton` in `llmscen.plugins`."""

    name: ClassVar[str] = "triton"
    api_version: ClassVar[int] = PLUGIN_API_VERSION
    description: ClassVar[str] = ("Triton / KServe v2 inference over gRPC or HTTP (tritonclient): "
                                  "typed tensors, batching, decoupled streaming models")
    target_options: type[BaseModel] = TritonTargetOptions
    request_options: type[BaseModel] = TritonRequestOptions
    metrics: frozenset[str] = METRICS

    def create_runner(self, target: TargetPlan) -> TritonRunner:
        return TritonRunner(target)


plugin = TritonPlugin()
