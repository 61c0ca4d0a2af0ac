"""`expect:` — what every response to a request must look like (SPEC §4).

Models only: values are validated here (regexes compile, schemas are valid JSON
Schema, ranges are ordered) so a mistake is reported with the scenario's other
errors. `assertions/expect.py` compiles an `Expect` into a checker.
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
    field_validator,
    model_validator,
)

from llmscen.spec.paths import FilePath
from llmscen.spec.units import Percent

# KServe v2 / Triton tensor datatypes.
DATATYPES: tuple[str, ...] = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16",
                              "INT32", "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES")

Texts = str | list[str]


def _check_status(value: int | list[int]) -> int | list[int]:
    codes = [value] if isinstance(value, int) else value
    if not codes:
        raise ValueError("list at least one status code")
    for code in codes:
        if not 100 <= code <= 599:
            raise ValueError(f"{code} is not an HTTP status code (100–599)")
    return value


Status = Annotated[int | list[int], AfterValidator(_check_status)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CountRange(_Frozen):
    """Inclusive bounds on a per-response count."""

    min: int | None = Field(None, ge=0, description="at least this many")
    max: int | None = Field(None, ge=0, description="at most this many")

    @model_validator(mode="after")
    def _ordered(self) -> CountRange:
        if self.min is None and self.max is None:
            raise ValueError("give `min`, `max` or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class ErrorExpect(_Frozen):
    """A negative test: the request passes when the server refuses it this way (or,
    with `timeout: true`, when it does not answer within the request's timeout)."""

    status: Status | None = Field(None, description="the error status (or one of them)")
    contains: Texts | None = Field(None, description="text the error message or body contains")
    timeout: bool = Field(False, description="expect the request to time out")

    @model_validator(mode="after")
    def _one_outcome(self) -> ErrorExpect:
        if self.timeout and (self.status is not None or self.contains is not None):
            raise ValueError("a request that times out has no status or message: `timeout: "
                             "true` takes no `status` or `contains`")
        return self


class Similarity(_Frozen):
    """Compare a tensor with a reference array or image."""

    file: FilePath = Field(description="reference: .npy, or .png with Pillow installed; "
                                       "relative to the scenario file")
    metric: Literal["ssim", "psnr", "mae"] = Field(
        "ssim", description="ssim (structural similarity), psnr (dB) or mae (mean error)")
    min_similarity: float | None = Field(
        None, description="ssim: lowest accepted index (≤ 1); psnr: lowest accepted dB")
    max_error: float | None = Field(None, ge=0, description="mae: highest accepted mean error")

    @field_validator("file")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if not value.lower().endswith((".npy", ".png")):
            raise ValueError(f"reference {value!r} must be a .npy or .png file")
        return value

    @model_validator(mode="after")
    def _bound_fits_metric(self) -> Similarity:
        if self.metric == "mae":
            if self.max_error is None or self.min_similarity is not None:
                raise ValueError("metric mae takes `max_error` (and not `min_similarity`)")
        elif self.min_similarity is None or self.max_error is not None:
            raise ValueError(f"metric {self.metric} takes `min_similarity` (and not `max_error`)")
        elif self.metric == "ssim" and not -1.0 <= self.min_similarity <= 1.0:
            raise ValueError("an SSIM lies between -1 and 1; min_similarity is usually 0.8–0.99")
        return self


class TensorExpect(_Frozen):
    """Checks on one named output tensor."""

    shape: list[int | Literal["*"]] | None = Field(
        None, description="dimensions; -1 or '*' matches any size")
    datatype: str | None = Field(None, description="KServe datatype: " + " ".join(DATATYPES))
    min: float | None = Field(None, description="no value below this")
    max: float | None = Field(None, description="no value above this")
    not_constant: bool = Field(False, description="fail when every value is the same")
    finite: bool = Field(False, description="fail on NaN or infinity")
    similar_to: Similarity | None = Field(None, description="close to a reference array or "
                                          "image")

    @field_validator("shape")
    @classmethod
    def _dims(cls, value: list[int | str] | None) -> list[int | str] | None:
        for dim in value or []:
            if isinstance(dim, int) and dim < -1:
                raise ValueError(f"dimension {dim} is negative; use -1 or '*' for any size")
        return value

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, value: str | None) -> str | None:
        if value is None or value.upper() in DATATYPES:
            return None if value is None else value.upper()
        raise ValueError(f"unknown datatype {value!r}; one of: {' '.join(DATATYPES)}")

    @model_validator(mode="after")
    def _consistent(self) -> TensorExpect:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        numeric = self.min is not None or self.max is not None or self.finite or self.similar_to
        if self.datatype == "BYTES" and numeric:
            raise ValueError("min, max, finite and similar_to need a numeric datatype, not BYTES")
        return self


class BatchConsistent(_Frozen):
    """The same input gives the same output whether sent alone or in a batch."""

    tolerance: float = Field(0.0, ge=0, description="largest accepted absolute difference")


def _valid_schema(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None:
        from jsonschema import exceptions, validators

        try:
            validators.validator_for(value).check_schema(value)
        except exceptions.SchemaError as err:
            where = "/".join(str(p) for p in err.absolute_path) or "the top level"
            raise ValueError(f"invalid JSON Schema at {where}: {err.message}") from None
    return value


Schema = Annotated[dict[str, Any], AfterValidator(_valid_schema)]


class ToolArguments(_Frozen):
    """What a tool call's arguments must be: JSON, matching a schema."""

    schema_: Schema | None = Field(None, alias="schema", description="a JSON Schema the "
                                   "arguments, parsed as JSON, must match")


class ToolCallExpect(_Frozen):
    """The answer calls a tool: by this name, with arguments that are JSON (and match a
    schema). The first call to `name` is checked (the first call, when no name is given)."""

    name: Texts | None = Field(None, description="the tool's name (or one of them)")
    arguments: ToolArguments | None = Field(None, description="{schema: ...}: the arguments "
                                            "are JSON matching this JSON Schema (without it, "
                                            "they only need to be JSON)")


class Consistent(_Frozen):
    """Identical requests get identical answers, at low load and under load.

    Judged after the run, where every worker's answers meet: each rendered request's
    reference is its most common answer in the `reference` phase (default: the first
    phase it was answered in), and every answer to it in any phase is compared with it.
    """

    reference: str | None = Field(None, description="the phase whose answers are the "
                                  "reference (a low-load one); default: for each rendered "
                                  "request, the first phase it was answered in")
    max_differing: Percent = Field(0.0, description="the share of compared answers that "
                                   "may differ from their reference")


def _consistent_shorthand(value: Any) -> Any:
    return {} if value is True else value


# What only a successful response can satisfy; not combinable with `error:`.
SUCCESS_CHECKS: tuple[str, ...] = (
    "status", "contains", "not_contains", "regex", "equals", "json_schema", "python_syntax",
    "finish_reason", "output_tokens", "chunks", "outputs", "batch_consistent", "consistent",
    "tool_call")


class Expect(_Frozen):
    """Checked on every response; a failure makes the request fail with class `check`."""

    status: Status | None = Field(None, description="accepted status code(s)")
    contains: Texts | None = Field(None, description="the output contains each of these")
    not_contains: Texts | None = Field(None, description="the output contains none of these")
    regex: Texts | None = Field(None, description="each pattern matches somewhere in the output "
                                                  "(re.search; use (?s) for . to match newlines)")
    equals: Any = Field(None, description="a string: the output is exactly this; anything else: "
                                          "the output (or body) parsed as JSON equals it")
    json_schema: Schema | None = Field(
        None, description="a JSON Schema the output parsed as JSON (or the body) must match")
    python_syntax: bool = Field(False, description="fenced ```python blocks (or the whole "
                                                   "output) compile; nothing is executed")
    finish_reason: Texts | None = Field(None, description="accepted finish reason(s)")
    output_tokens: CountRange | None = Field(None, description="tokens generated (the "
                                             "server's usage, else counted chunks)")
    input_tokens: CountRange | None = Field(None, description="prompt tokens, by the server's "
                                            "usage (e.g. for synthetic prompts of exact length)")
    chunks: CountRange | None = Field(None, description="content chunks of a streamed response")
    error: ErrorExpect | None = Field(None, description="expect the request to be refused")
    outputs: dict[str, TensorExpect] | None = Field(None, description="output tensors by name")
    batch_consistent: BatchConsistent | None = Field(
        None, description="each item of a batch equals the answer to it sent alone (Triton)")
    tool_call: ToolCallExpect | None = Field(
        None, description="the answer calls a tool: {name: get_weather, arguments: {schema: "
                          "{...}}}")
    # `true` is read as {} (the BeforeValidator); the union lets the JSON Schema say so
    consistent: Annotated[Consistent | Literal[True] | None,
                          BeforeValidator(_consistent_shorthand)] = Field(
        None, description="identical requests get identical answers in every phase, e.g. at "
                          "low load and under load: `true` or {reference: PHASE, "
                          "max_differing: 1%}")

    @field_validator("status")
    @classmethod
    def _success_status(cls, value: int | list[int] | None) -> int | list[int] | None:
        codes = [value] if isinstance(value, int) else value or []
        if codes and all(code >= 400 for code in codes):
            raise ValueError(f"status {value} is an error; to expect it write "
                             f"`error: {{status: {value}}}`")
        return value

    @field_validator("contains", "not_contains", "finish_reason")
    @classmethod
    def _not_empty(cls, value: Texts | None) -> Texts | None:
        if value == "" or (isinstance(value, list) and "" in value):
            raise ValueError("an empty string says nothing; remove it")
        return value

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: Texts | None) -> Texts | None:
        for pattern in [value] if isinstance(value, str) else value or []:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"invalid regex {pattern!r}: {err}") from None
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Expect:
        if self.error is not None:
            mixed = [name for name in SUCCESS_CHECKS if name in self.model_fields_set
                     and getattr(self, name) not in (None, False)]
            if mixed:
                raise ValueError(f"`error:` expects the request to be refused, so "
                                 f"{', '.join(mixed)} could never be checked; remove them")
        return self
