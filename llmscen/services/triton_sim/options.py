"""What a scenario may set on a `triton-sim` service (`services: {x: {builtin: triton-sim}}`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmscen.spec.units import Duration, Size


class TritonSimOptions(BaseModel):
    """Options of the bundled Triton simulator; durations accept `80ms`, `1.5s` or seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # flux: a simulated text-to-image pipeline
    image_size: int = Field(1024, ge=8, le=4096, description="default height and width of `images`")
    allowed_sizes: tuple[int, ...] | None = Field(
        None, description="heights/widths a request may ask for; default: only image_size")
    step_delay: Duration = Field(0.0, description="simulated time per denoising step, per batch")
    max_batch_size: int = Field(8, ge=1, le=1024, description="prompts per batch (request and server)")
    max_queue_delay: Duration = Field(0.001, description="dynamic batcher's wait for a fuller batch")
    max_prompt_chars: int = Field(2000, ge=1, description="longer prompts are refused with "
                                                          "INVALID_ARGUMENT")
    max_steps: int = Field(50, ge=1, description="largest num_inference_steps accepted")
    memory_per_image: Size = Field(0, ge=0, le=2**30, description="memory `flux` allocates, "
                                   "touches and holds per image of a request while it is "
                                   "computed (512KB, 16MB): the server's RSS follows the batch")
    memory_growth: Literal["linear", "quadratic"] = Field(
        "linear", description="how that memory grows with the batch N: N × memory_per_image, "
                              "or N² × memory_per_image (a planted super-linear leak)")
    # llm_stream: a decoupled token streamer
    ttft: Duration = Field(0.05, description="time to first token")
    itl: Duration = Field(0.01, description="time between tokens")
    output_tokens: int = Field(32, ge=1, description="tokens per reply, capped by max_tokens")
    # the server process
    host: str = Field("127.0.0.1", description="address the server binds")
    grpc_port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    http_port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    metrics_port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    startup_timeout: Duration = Field(60.0, description="how long tritonserver may take to "
                                                        "load the models")
    stop_timeout: Duration = Field(10.0, description="SIGTERM → SIGKILL grace period")
    log_verbose: int = Field(0, ge=0, description="tritonserver --log-verbose level")

    @model_validator(mode="after")
    def _check_sizes(self) -> TritonSimOptions:
        for size in self.allowed_sizes or ():
            if not 8 <= size <= 4096:
                raise ValueError(f"allowed_sizes: {size} is outside 8..4096")
        ports = [p for p in (self.grpc_port, self.http_port, self.metrics_port) if p]
        if len(ports) != len(set(ports)):
            raise ValueError("grpc_port, http_port and metrics_port must differ")
        return self

    @property
    def sizes(self) -> tuple[int, ...]:
        """Every size `flux` accepts for height and width, image_size included, sorted."""
        return tuple(sorted({self.image_size, *(self.allowed_sizes or ())}))
