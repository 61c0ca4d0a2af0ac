"""HDR histograms (integer µs), counters, per-second series; encode/merge across workers.

`MetricStore` is the live side the engine feeds; `RunResults` is what it
freezes into and what `results.json` holds; `aggregate` and `windows` read it.
"""

from llmscen.metrics.histogram import Histogram
from llmscen.metrics.merge import merge
from llmscen.metrics.query import WINDOW_METRICS, Aggregate, Window, aggregate, windows
from llmscen.metrics.results import (
    SCHEMA_VERSION,
    CheckSummary,
    ErrorSummary,
    Meta,
    PhaseInfo,
    PluginInfo,
    ResultsError,
    ResultsVersionError,
    RunResults,
    Sample,
    ServerMetrics,
    SloResult,
    TargetInfo,
)
from llmscen.metrics.store import MetricStore

__all__ = [
    "SCHEMA_VERSION", "WINDOW_METRICS", "Aggregate", "CheckSummary", "ErrorSummary",
    "Histogram", "Meta", "MetricStore", "PhaseInfo", "PluginInfo", "ResultsError",
    "ResultsVersionError", "RunResults", "Sample", "ServerMetrics", "SloResult", "TargetInfo",
    "Window", "aggregate", "merge", "windows",
]
