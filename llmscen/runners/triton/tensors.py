"""What the `triton` runner knows about tensors: request data → numpy, model metadata, checks.

Pure functions, no network. Imported by the runner when it starts (numpy is
part of the `triton` extra), never at plugin discovery.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

NUMPY_TYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
    "BF16": np.float32,   # tritonclient takes float32 arrays for BF16 and narrows them
    "BYTES": np.object_,
}
_FALSE = {"false", "0", "no", "off", ""}
_TRUE = {"true", "1", "yes", "on"}


class TensorDataError(ValueError):
    """Request data that cannot become the tensor it claims to be."""


def flatten(data: Any) -> list[Any]:
    """Nested lists → one flat list; a scalar is a list of one."""
    if not isinstance(data, (list, tuple)):
        return [data]
    out: list[Any] = []
    for item in data:
        out.extend(flatten(item))
    return out


def to_array(datatype: str, shape: Iterable[int], data: Any) -> np.ndarray:
    """The numpy array for one input; template-rendered strings are parsed as numbers."""
    shape = _dims(shape)
    values = flatten(data)
    if len(values) != math.prod(shape):
        raise TensorDataError(f"shape {list(shape)} holds {math.prod(shape)} values but data has "
                              f"{len(values)}")
    if datatype == "BYTES":
        array = np.array([v if isinstance(v, bytes) else str(v).encode() for v in values],
                         dtype=np.object_)
    elif datatype == "BOOL":
        array = np.array([_boolean(v) for v in values], dtype=np.bool_)
    else:
        dtype = np.dtype(NUMPY_TYPES[datatype])
        try:
            numbers = np.array([_number(v) for v in values])
            if dtype.kind in "iu" and numbers.dtype.kind == "f" and \
                    not np.array_equal(numbers, np.floor(numbers)):
                raise TensorDataError(f"data has fractions but {datatype} holds integers")
            array = numbers.astype(dtype)
        except (TypeError, ValueError, OverflowError) as exc:
            if isinstance(exc, TensorDataError):
                raise
            raise TensorDataError(f"data is not {datatype}: {exc}") from None
    return array.reshape(shape)


def _dims(shape: Any) -> tuple[int, ...]:
    """A shape as rendered: sizes may come from templates (`["{{ batch }}"]`)."""
    items = shape if isinstance(shape, (list, tuple)) else [shape]
    try:
        dims = tuple(int(_number(d)) for d in items)
    except (TensorDataError, TypeError, ValueError):
        raise TensorDataError(f"shape {list(items)} is not a list of sizes") from None
    if any(d < 0 for d in dims):
        raise TensorDataError(f"shape {list(dims)} must not hold negative sizes")
    return dims


def _number(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                raise TensorDataError(f"{value!r} is not a number") from None
    return value


def _boolean(value: Any) -> bool:
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise TensorDataError(f"{value!r} is not a boolean")
    return bool(value)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]   # as the server reports it; -1 = any; includes the batch dim
    optional: bool = False

    def text(self) -> str:
        return f"{self.datatype} {list(self.shape)}"


@dataclass(frozen=True)
class ModelInfo:
    """A model's metadata and the parts of its config that matter to a client."""

    name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    max_batch_size: int = 0
    decoupled: bool = False

    @classmethod
    def from_json(cls, metadata: Mapping[str, Any], config: Mapping[str, Any]) -> ModelInfo:
        """From `get_model_metadata(as_json)` and `get_model_config(as_json)` (gRPC or HTTP)."""
        config = config.get("config", config)   # gRPC wraps the config
        optional = {i["name"] for i in config.get("input", []) if i.get("optional")}

        def specs(items: Iterable[Mapping[str, Any]]) -> dict[str, TensorSpec]:
            return {t["name"]: TensorSpec(t["name"], t["datatype"],
                                          tuple(int(d) for d in t.get("shape", [])),
                                          t["name"] in optional) for t in items}

        policy = config.get("model_transaction_policy") or {}
        return cls(name=str(metadata.get("name", "")), inputs=specs(metadata.get("inputs", [])),
                   outputs=specs(metadata.get("outputs", [])),
                   max_batch_size=int(config.get("max_batch_size", 0) or 0),
                   decoupled=bool(policy.get("decoupled", False)))

    def wire_shape(self, name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        """A request shape as sent: for a batching model, a shape without the batch
        dimension (one rank short, like perf_analyzer's input files) gets batch 1."""
        spec = self.inputs.get(name)
        if spec is not None and self.max_batch_size > 0 and len(shape) == len(spec.shape) - 1:
            return (1, *shape)
        return shape

    def text_output(self, wanted: Iterable[str] | None = None) -> str | None:
        """The output holding generated text: `text_output`, else the first BYTES output."""
        names = list(wanted) if wanted else list(self.outputs)
        if "text_output" in names and "text_output" in self.outputs:
            return "text_output"
        return next((n for n in names if n in self.outputs and
                     self.outputs[n].datatype == "BYTES"), None)


def _shape_fits(shape: tuple[int, ...], wanted: tuple[int, ...]) -> bool:
    return len(shape) == len(wanted) and all(w == -1 or s == -1 or w == s
                                             for s, w in zip(shape, wanted, strict=True))


def check_request(info: ModelInfo, payload: Mapping[str, Any], *, protocol: str,
                  stream: bool) -> list[str]:
    """Problems with one request's inputs/outputs for this model, each naming the field."""
    model = f"model {info.name!r}"
    problems = []
    inputs: Mapping[str, Any] = payload.get("inputs") or {}
    for name, tensor in inputs.items():
        spec = info.inputs.get(name)
        if spec is None:
            near = difflib.get_close_matches(name, list(info.inputs), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            problems.append(f"inputs.{name}: {model} has no input {name!r}; it takes "
                            f"{', '.join(info.inputs) or 'none'}{hint}")
            continue
        datatype = tensor.get("datatype")
        if datatype != spec.datatype:
            problems.append(f"inputs.{name}.datatype: {datatype} but {model} takes "
                            f"{spec.datatype}")
        raw = tensor.get("shape") or ()
        if isinstance(raw, str):
            continue      # a template: checked when it renders
        # a size from a template is known only on send
        shape = info.wire_shape(name, tuple(d if isinstance(d, int) else -1 for d in raw))
        if not _shape_fits(shape, spec.shape):
            problems.append(f"inputs.{name}.shape: {list(tensor.get('shape') or [])} does not "
                            f"fit {list(spec.shape)} of {model}")
        elif info.max_batch_size and shape and shape[0] > info.max_batch_size:
            problems.append(f"inputs.{name}.shape: batch {shape[0]} is more than the "
                            f"max_batch_size {info.max_batch_size} of {model}")
    for name, spec in info.inputs.items():
        if name not in inputs and not spec.optional:
            problems.append(f"inputs: {model} needs input {name!r} ({spec.text()})")
    for name in payload.get("outputs") or ():
        if name not in info.outputs:
            problems.append(f"outputs: {model} has no output {name!r}; it has "
                            f"{', '.join(info.outputs) or 'none'}")
    if protocol == "http" and (stream or info.decoupled):
        why = "is decoupled (streams its responses)" if info.decoupled else "is asked to stream"
        problems.append(f"stream: {model} {why}, which needs protocol: grpc")
    return problems
