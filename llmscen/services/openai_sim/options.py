"""The options of the `openai-sim` service (`services.<name>.options`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmscen.spec.units import Duration, Percent


class OpenAISimOptions(BaseModel):
    """Options of the `openai-sim` service (`services.<name>.options`)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("sim-model", min_length=1, description="the one served model name")
    ttft: Duration = Field(0.05, description="time to the first content chunk")
    itl: Duration = Field(0.01, description="time between content chunks")
    output_tokens: int = Field(128, ge=0, description="tokens per reply (one chunk each), "
                                                      "capped by the request's max_tokens")
    output_tokens_spread: int = Field(0, ge=0, description="vary output_tokens uniformly by ± "
                                                           "this much, fixed per prompt and seed")
    seed: int = Field(0, description="seeds generated text, embeddings and injected faults")
    reply: str | None = Field(None, description="answer every request with exactly this text")
    echo_prompt: bool = Field(False, description="answer with the last user message")
    error_rate: Percent = Field(0.0, description="share of requests answered with error_status")
    error_status: int = Field(500, ge=400, le=599, description="HTTP status of injected errors")
    malformed_rate: Percent = Field(0.0, description="share of responses with one invalid-JSON "
                                                     "event mid-stream (or a truncated JSON body)")
    cut_rate: Percent = Field(0.0, description="share of responses cut off half-way, without "
                                               "finish_reason or [DONE]")
    cut_mode: Literal["eof", "reset"] = Field(
        "eof", description="how a cut stream ends: a clean end of body, or a dropped connection")
    stall_after: Duration | None = Field(None, description="freeze the server this long after "
                                                           "the first inference request")
    stall_for: Duration = Field(0.0, description="how long the freeze lasts")
    max_concurrency: int | None = Field(None, ge=1, description="requests beyond this many in "
                                                                "flight wait in a queue")
    batch_slowdown: Percent = Field(0.0, description="each running request beyond the first "
                                                     "lengthens every decode step (itl) by this "
                                                     "share, as a batch does in vLLM")
    prefill_per_token: Duration = Field(0.0, description="added to the TTFT per prompt token")
    embedding_dimensions: int = Field(384, ge=1, description="default length of embeddings")
    max_model_len: int = Field(32768, ge=1, description="prompt + max_tokens limit, as in vLLM")
    empty_token_rate: Percent = Field(0.0, description="share of streamed tokens sent as a chunk "
                                                       "with empty text, their text joining the "
                                                       "next token's (as vLLM streams tokens that "
                                                       "decode to no text yet)")
    reasoning_tokens: int = Field(0, ge=0, description="chat answers first think aloud: this "
                                  "many `reasoning_content` tokens (one chunk each, paced "
                                  "like the answer) before the answer's first token")
    corrupt_under_load: int | None = Field(
        None, ge=1, description="with more than this many requests running, every answer has "
        "one token replaced by another, which one chosen by the number running (as batching "
        "non-determinism or a corrupt KV cache would): a deterministic fault for `expect: "
        "consistent`")
    tool_arguments: str | None = Field(
        None, description="a chat request with `tools` calls one (the one `tool_choice` "
        "names, else the first) with arguments made from its parameters' schema; this text "
        "replaces them (e.g. JSON that does not parse)")
    check_history: bool = Field(False, description="refuse (400) a chat request whose assistant "
                                "messages are not answers this simulator gave, and count "
                                "requests by the earlier answers they carry "
                                "(openai_sim:history_answers)")

    prefix_cache: bool = Field(False, description="keep a prefix cache of prompt blocks and "
                               "count its hits in tokens (vllm:prefix_cache_queries and "
                               "vllm:prefix_cache_hits), sending each request's hits back in "
                               "the X-Sim-Prefix-Hit-Tokens header")
    prefix_block: int = Field(16, ge=1, description="tokens (words) per prefix-cache block, "
                              "as vLLM's block size")

    @model_validator(mode="after")
    def _consistent(self) -> OpenAISimOptions:
        if self.reply is not None and self.echo_prompt:
            raise ValueError("set either 'reply' or 'echo_prompt', not both")
        if self.error_rate + self.malformed_rate + self.cut_rate > 1.0 + 1e-9:
            raise ValueError("error_rate + malformed_rate + cut_rate must not exceed 100%")
        return self
