"""KServe v2 gRPC inference as bytes: requests serialized once per payload, responses read once.

tritonclient rebuilds a `ModelInferRequest` on every call (copying every input tensor
and its raw contents) and reads each output's raw contents twice in `as_numpy` (a copy
each under upb). Here the request is built from the public protobuf module
(`tritonclient.grpc.service_pb2`) once per payload and sent on a grpc.aio channel of
the runner's own, with `ModelInfer` and `ModelStreamInfer` as raw-bytes calls; each
output's contents are read once and viewed with numpy. gRPC errors arrive as
`grpc.aio.AioRpcError`, which errors.py classifies by code and details.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
MODEL_STREAM_INFER = "/inference.GRPCInferenceService/ModelStreamInfer"


class GrpcWire:
    """One grpc.aio channel to a Triton server, with its two inference calls."""

    def __init__(self, address: str, ssl: bool, headers: dict[str, str] | None) -> None:
        import grpc
        from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions, service_pb2

        keepalive = KeepAliveOptions()      # tritonclient's channel, option for option
        options = [
            ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
            ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ]
        if ssl:
            self.channel = grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(),
                                                   options=options)
        else:
            self.channel = grpc.aio.insecure_channel(address, options=options)
        self.metadata = tuple(headers.items()) if headers else None
        self._infer = self.channel.unary_unary(MODEL_INFER)
        self._stream = self.channel.stream_stream(
            MODEL_STREAM_INFER,
            response_deserializer=service_pb2.ModelStreamInferResponse.FromString)
        self.response_type = service_pb2.ModelInferResponse

    async def infer(self, request: bytes, timeout: float) -> bytes:
        """One unary call: the serialized response."""
        raw: bytes = await self._infer(request, timeout=timeout, metadata=self.metadata)
        return raw

    def stream(self) -> Any:
        """A bidirectional `ModelStreamInfer` call: `write` serialized requests, `read`
        responses."""
        return self._stream(metadata=self.metadata)

    async def close(self) -> None:
        await self.channel.close()


def encode_request(model: str, version: str, tensors: Sequence[tuple[str, str, list[int], bytes]],
                   outputs: Sequence[str] | None, parameters: dict[str, Any] | None) -> bytes:
    """A serialized `ModelInferRequest`, as tritonclient builds it for these inputs."""
    from tritonclient.grpc import service_pb2
    from tritonclient.utils import (
        TRITON_RESERVED_REQUEST_PARAMS,
        TRITON_RESERVED_REQUEST_PARAMS_PREFIX,
    )

    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    for name, datatype, shape, raw in tensors:
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(raw)
    for name in outputs or ():
        request.outputs.add(name=name)
    for key, value in (parameters or {}).items():
        if key in TRITON_RESERVED_REQUEST_PARAMS or \
                key.startswith(TRITON_RESERVED_REQUEST_PARAMS_PREFIX):
            raise ValueError(f"parameters.{key}: a reserved parameter, it cannot be given")
        slot = request.parameters[key]
        if isinstance(value, str):
            slot.string_param = value
        elif isinstance(value, bool):
            slot.bool_param = value
        elif isinstance(value, int):
            slot.int64_param = value
        else:
            slot.double_param = float(value)
    data: bytes = request.SerializeToString()
    return data


def raw_contents(array: Any, datatype: str) -> bytes:
    """The raw input contents of a numpy array, as `InferInput.set_data_from_numpy` makes them."""
    if datatype == "BYTES":
        from tritonclient.utils import serialize_byte_tensor

        serialized = serialize_byte_tensor(array)
        return serialized.item() if serialized.size > 0 else b""
    data: bytes = array.tobytes()
    return data


def tensors_of(response: Any) -> dict[str, Any]:
    """Every output of a `ModelInferResponse` as numpy, as `InferResult.as_numpy` gives it
    (raw contents read once; BYTES elements as bytes objects)."""
    import numpy as np
    from tritonclient.utils import triton_to_np_dtype

    contents = list(response.raw_output_contents)   # each access would copy the buffer
    tensors: dict[str, Any] = {}
    for i, output in enumerate(response.outputs):
        datatype = output.datatype
        if i < len(contents):
            if datatype == "BYTES":
                array = np.array(bytes_elements(contents[i]), dtype=np.object_)
            else:
                array = np.frombuffer(contents[i], dtype=triton_to_np_dtype(datatype))
        elif len(output.contents.bytes_contents) != 0:
            array = np.array(output.contents.bytes_contents, copy=False)
        else:
            array = np.empty(0, dtype=triton_to_np_dtype(datatype))
        tensors.setdefault(output.name, array.reshape(list(output.shape)))
    return tensors


def bytes_elements(buf: bytes) -> list[bytes]:
    """The elements of a serialized BYTES tensor (each: 4-byte little-endian length + data)."""
    out, offset, end = [], 0, len(buf)
    unpack = struct.unpack_from
    while offset + 4 <= end:
        (n,) = unpack("<I", buf, offset)
        offset += 4
        out.append(buf[offset:offset + n])
        offset += n
    return out
