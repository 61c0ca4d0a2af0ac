"""Which metrics a run produced, so reports show columns and panels that have something in them.

A metric is produced when a plugin in use declares it (`Plugin.metrics`, saved
in `meta.plugins`) and the run recorded something for it: an HTTP run has no
TTFT, a FLUX run on Triton declares TTFT (streaming models have one) but
records none, and shows images per second instead.
"""

from __future__ import annotations

from llmscen.metrics.results import RunResults
from llmscen.spec.metrics import CATALOG, CUSTOM_PREFIX, HISTOGRAM_METRICS

# counter-backed metrics and the counter that must be non-zero
_COUNTED = {"output_token_throughput": "output_tokens", "images_per_second": "images",
            "goodput": "goodput_met"}


def declared(results: RunResults) -> set[str]:
    """What the plugins in use can produce (every metric, for files that do not say)."""
    named = [set(p.metrics) for p in results.meta.plugins if p.metrics]
    if not named:
        return set(CATALOG)
    return set().union(*named)


def produced(results: RunResults) -> set[str]:
    """Declared metrics the run recorded something for."""
    recorded = {m for s in results.scopes for m in s.histograms}
    out = set()
    for metric in declared(results):
        if metric in HISTOGRAM_METRICS:
            if metric in recorded:
                out.add(metric)
        elif metric in _COUNTED:
            if any(getattr(s.counters, _COUNTED[metric]) for s in results.scopes):
                out.add(metric)
        else:
            out.add(metric)
    return out | {m for m in recorded if m.startswith(CUSTOM_PREFIX)}
