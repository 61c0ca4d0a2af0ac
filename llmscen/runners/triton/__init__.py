"""The `triton` plugin (KServe v2 over gRPC or HTTP, with tritonclient); see `plugin.py`.

Modules: `plugin` (options, the runner, the plugin object), `tensors` (typed
inputs, model metadata checks; numpy), `stream` (decoupled gRPC streams),
`errors` (server and transport errors → error classes). tritonclient and numpy
are imported when a runner starts, never at plugin discovery.
"""

from __future__ import annotations

from llmscen.runners.triton.plugin import (
    TritonPlugin,
    TritonRequestOptions,
    TritonRunner,
    TritonTargetOptions,
    TritonUnavailable,
    plugin,
)

__all__ = ["TritonPlugin", "TritonRequestOptions", "TritonRunner", "TritonTargetOptions",
           "TritonUnavailable", "plugin"]
