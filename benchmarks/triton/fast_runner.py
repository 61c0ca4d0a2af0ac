"""A prototype of cheaper hot paths for llmscen's triton runner, measured by micro.py.

Not used by llmscen: it subclasses `llmscen.runners.triton.TritonRunner` so the proposed
change can be measured against the current one in the same process (micro.py variants
`runner` vs `runner-fast`). What it changes, gRPC only:

unary (`_send`):
  * the serialized ModelInferRequest is built once per payload object (next to the
    InferInputs the runner already caches) and sent with a raw `channel.unary_unary`
    (identity serializers) on tritonclient's own channel: no per-call
    `_get_inference_request` (copies every input tensor and its raw contents), no stub
    serializer;
  * `bytes_received` is the length of the response bytes (what `ByteSize()` recomputes);
  * each output's raw contents are read once (every `raw_output_contents[i]` access copies
    the buffer; `as_numpy` reads it twice) and viewed with `np.frombuffer`.

streamed (`StreamPool` / `_read`):
  * a content response's text is kept as the raw BYTES buffer of its output and decoded
    once, when the call ends, instead of `as_numpy()` + `decode_text()` per response;
  * the response's tensors are built only for the last content response (as now).

Error handling, timeouts and Exchange fields are as in the runner.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from llmscen.engine.protocol import Call, Exchange
from llmscen.runners.triton import TritonRunner
from llmscen.runners.triton import stream as triton_stream

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


def bytes_elements(buf: bytes) -> list[bytes]:
    """The elements of a serialized BYTES tensor (each: 4-byte little-endian length + data)."""
    out, offset, end = [], 0, len(buf)
    while offset + 4 <= end:
        (n,) = struct.unpack_from("<I", buf, offset)
        offset += 4
        out.append(buf[offset:offset + n])
        offset += n
    return out


class FastTritonRunner(TritonRunner):
    async def start(self) -> None:
        await super().start()
        self._raw_infer = None
        self._wire: dict[int, tuple[Any, bytes]] = {}
        if self.grpc:
            from tritonclient.grpc import service_pb2
            from tritonclient.utils import triton_to_np_dtype

            self._response_type = service_pb2.ModelInferResponse
            self._np_dtype = triton_to_np_dtype
            self._raw_infer = self._client._channel.unary_unary(MODEL_INFER)
            self._metadata = tuple(self._headers.items()) if self._headers else None

    def _request_bytes(self, payload: dict[str, Any]) -> bytes:
        key = id(payload)
        hit = self._wire.get(key)
        if hit is not None and hit[0] is payload:
            return hit[1]
        from tritonclient.grpc._utils import _get_inference_request

        inputs, outputs = self._request(payload)
        request = _get_inference_request(
            model_name=self.options.model, inputs=inputs,
            model_version=self.options.model_version, request_id="", outputs=outputs,
            sequence_id=0, sequence_start=False, sequence_end=False, priority=0,
            timeout=None, parameters=payload.get("parameters"))
        data = request.SerializeToString()
        if len(self._wire) >= 256:
            self._wire.clear()
        self._wire[key] = (payload, data)
        return data

    async def _send(self, call: Call, ex: Exchange) -> None:
        if (self._raw_infer is None or self.info is None or call.stream
                or self.info.decoupled):
            if self.grpc and self._streams is None and self._client is not None:
                self._streams = FastStreamPool(self._client, self._headers)
            await super()._send(call, ex)
            return
        try:
            data = self._request_bytes(call.payload)
        except ValueError as exc:
            ex.fail("client", str(exc))
            return
        timeout = self.options.timeout if call.timeout is None else call.timeout
        ex.sent_ns = time.perf_counter_ns()
        raw = await self._raw_infer(data, timeout=timeout, metadata=self._metadata)
        ex.first_byte_ns = ex.end_ns = time.perf_counter_ns()
        ex.status = 200
        ex.bytes_received = len(raw)
        response = self._response_type.FromString(raw)
        contents = list(response.raw_output_contents)   # one copy of each buffer
        tensors = {}
        for i, out in enumerate(response.outputs):
            if i >= len(contents):
                continue
            if out.datatype == "BYTES":
                import numpy as np

                array = np.array(bytes_elements(contents[i]), dtype=np.object_)
            else:
                import numpy as np

                array = np.frombuffer(contents[i], dtype=self._np_dtype(out.datatype))
            tensors[out.name] = array.reshape(tuple(out.shape))
        ex.tensors = tensors
        images = tensors.get("images")
        if images is not None and images.ndim:
            ex.images = int(images.shape[0])
        text_name = self._text_output(call.payload)
        if text_name in tensors:
            ex.text = triton_stream.decode_text(tensors[text_name])


class FastStreamPool(triton_stream.StreamPool):
    async def call(self, request: dict[str, Any], ex: Exchange, *, decoupled: bool,
                   text_output: str | None, timeout: float) -> None:
        lane = (self._idle.pop() if self._idle
                else triton_stream.StreamLane(self._client, self._headers))
        reusable = False
        try:
            reusable = await triton_stream._within(
                timeout, _read(lane, request, ex, decoupled, text_output))
        finally:
            if reusable and len(self._idle) < self._max_idle:
                self._idle.append(lane)
            else:
                lane.close()


async def _read(lane: triton_stream.StreamLane, request: dict[str, Any], ex: Exchange,
                decoupled: bool, text_output: str | None) -> bool:
    """As triton_stream._read, but the text is decoded once, at the end, from raw buffers."""
    raw_parts: list[bytes] = []
    itl, received, last = ex.itl_us, 0, 0
    clean, last_result = False, None
    ex.sent_ns = time.perf_counter_ns()
    lane.send(request)
    try:
        while True:
            try:
                result, error = await lane.next()
            except StopAsyncIteration:
                ex.fail("protocol", "the server closed the stream before the final response")
                break
            now = time.perf_counter_ns()
            if not ex.first_byte_ns:
                ex.first_byte_ns = now
            ex.end_ns = now
            if error is not None:
                ex.fail("http", error.message())
                break
            response = result.get_response()
            received += response.ByteSize()
            outputs = response.outputs
            if outputs:
                if last:
                    itl.append((now - last) // 1000)
                else:
                    ex.first_content_ns = now
                last = now
                ex.chunks += 1
                last_result = result
                if text_output is not None:
                    for i, out in enumerate(outputs):
                        if out.name == text_output:
                            if i < len(response.raw_output_contents):
                                raw_parts.append(response.raw_output_contents[i])
                            break
            flag = response.parameters.get("triton_final_response")
            if (flag is not None and flag.bool_param) or not decoupled:
                clean = True
                break
    finally:
        if last_result is not None:
            ex.tensors = {o.name: last_result.as_numpy(o.name)
                          for o in last_result.get_response().outputs}
        ex.bytes_received = received
        ex.text = b"".join(e for part in raw_parts for e in bytes_elements(part)).decode(
            "utf-8", "replace")
        ex.output_tokens = ex.chunks
        ex.tokens_estimated = True
    if clean:
        ex.status = 200
    return clean
