"""llmscen plugin for Ollama's native API: `POST /api/chat` and `/api/generate`.

Registered under the entry-point group `llmscen.plugins` as `ollama`
(pyproject.toml), so a scenario target says `plugin: ollama`. Streams are
NDJSON; TTFT, ITL, chunks and tokens are measured as the openai plugin does,
with Ollama's own `eval_count` / `prompt_eval_count` as the token counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel

from llmscen.plugin import PLUGIN_API_VERSION
from llmscen_ollama.options import OllamaRequestOptions, OllamaTargetOptions
from llmscen_ollama.runner import OllamaRunner

if TYPE_CHECKING:
    from llmscen.plugin import TargetPlan

__version__ = "0.1.0"
__all__ = ["OllamaPlugin", "OllamaRequestOptions", "OllamaRunner", "OllamaTargetOptions",
           "plugin"]

METRICS = frozenset({
    "latency", "latency_sent", "ttft", "ttft_sent", "itl", "tpot", "schedule_lag",
    "output_tokens", "input_tokens", "chunks", "bytes_received", "throughput",
    "output_token_throughput", "goodput", "error_rate", "check_failure_rate", "success_rate",
})


class OllamaPlugin:
    """Entry point `ollama` in `llmscen.plugins`."""

    name: ClassVar[str] = "ollama"
    api_version: ClassVar[int] = PLUGIN_API_VERSION
    description: ClassVar[str] = ("Ollama's native chat and generate APIs over HTTP, "
                                  "streaming with NDJSON")
    target_options: type[BaseModel] = OllamaTargetOptions
    request_options: type[BaseModel] = OllamaRequestOptions
    metrics: frozenset[str] = METRICS

    def create_runner(self, target: TargetPlan) -> OllamaRunner:
        return OllamaRunner(target)


plugin = OllamaPlugin()
