"""Everything a protocol plugin needs from llmscen, in one place (plugin API version 1).

    from llmscen.plugin import (PLUGIN_API_VERSION, Call, Exchange, Duration, Headers,
                                Scrubber, TargetPlan, classify_client_error, guarded)

A plugin is an object registered under the entry-point group `llmscen.plugins`
with `name`, `api_version`, `description`, `target_options` and
`request_options` (pydantic models), `metrics` and `create_runner(target)`;
its runner implements `Runner`. docs/plugins.md explains each rule, and
`llmscen.testing.contract.RunnerContract` checks them. Names outside this
module's `__all__` are llmscen's internals and may change without notice.
"""

from __future__ import annotations

from llmscen.compile.plan import TargetPlan
from llmscen.engine.protocol import (
    ERROR_CLASSES,
    PLUGIN_API_VERSION,
    Call,
    Endpoint,
    ErrorClass,
    Exchange,
    Exposed,
    Exposing,
    Plugin,
    Reconnecting,
    Runner,
    ServiceError,
    ServiceKind,
    Unbatching,
)
from llmscen.runners.guard import CANCELLED, describe, guarded
from llmscen.runners.http_errors import classify_client_error
from llmscen.runners.problems import StreamProblem, excerpt
from llmscen.runners.prometheus import parse_exposition
from llmscen.runners.secrets import Headers, Scrubber
from llmscen.spec.paths import DirPath, FilePath
from llmscen.spec.units import Duration, Percent, Rate

__all__ = [
    "CANCELLED",
    "ERROR_CLASSES",
    "PLUGIN_API_VERSION",
    "Call",
    "DirPath",
    "Duration",
    "Endpoint",
    "ErrorClass",
    "Exchange",
    "Exposed",
    "Exposing",
    "FilePath",
    "Headers",
    "Percent",
    "Plugin",
    "Rate",
    "Reconnecting",
    "Runner",
    "Scrubber",
    "ServiceError",
    "ServiceKind",
    "StreamProblem",
    "TargetPlan",
    "Unbatching",
    "classify_client_error",
    "describe",
    "excerpt",
    "guarded",
    "parse_exposition",
]
