"""What a scenario may write for an `ollama` target and its requests.

Both models forbid unknown keys, so a typo is reported at its line before
anything is sent. The API key is a `SecretStr`: `llmscen plan` shows it masked.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from llmscen.plugin import Duration, Headers

Api = Literal["chat", "generate"]
API_PATHS: dict[str, str] = {"chat": "/api/chat", "generate": "/api/generate"}


class OllamaTargetOptions(BaseModel):
    """Target keys of the `ollama` plugin (besides `plugin`, `url` and `service`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="model sent in every request body that names none, "
                                   "e.g. llama3.2 or qwen2.5:0.5b")
    api: Api = Field("chat", description="default API for this target's requests")
    api_key: SecretStr | None = Field(None, description="sent as `Authorization: Bearer` (a proxy "
                                                        "in front of Ollama, or ollama.com); "
                                                        "empty means none")
    timeout: Duration = Field(120.0, description="per-request timeout")
    headers: Headers = Field(default_factory=dict, description="extra request headers")
    model_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Ollama `options` sent with every request (num_predict, temperature, seed, "
                    "...); a request's own `body.options` keys win")
    keep_alive: str | int | None = Field(None, description="Ollama `keep_alive` for every "
                                                           "request that sets none, e.g. 10m")
    verify_tls: bool = True
    max_connections: int = Field(0, ge=0, description="connection pool size; 0 = unlimited")

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: Any) -> Any:
        # `api_key: ${OLLAMA_API_KEY:-}` with the variable unset means "no key"
        return None if value in ("", None) else value


class OllamaRequestOptions(BaseModel):
    """Request (or step) keys of the `ollama` plugin."""

    model_config = ConfigDict(extra="forbid")

    api: Api | None = Field(None, description="overrides the target's `api`")
    body: dict[str, Any] = Field(default_factory=dict,
                                 description="JSON body; any keys pass through; `model`, "
                                             "`stream`, `options` and `keep_alive` are filled "
                                             "in from the target when absent")
    headers: Headers = Field(default_factory=dict, description="extra request headers")
