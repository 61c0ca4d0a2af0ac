"""Prometheus' text exposition, read as what it is: each sample's labels and family type.

Hand-written rather than `prometheus_client.parser`: that parser renames a counter's
samples (Triton's `nv_inference_count` comes back as `nv_inference_count_total`) and
loses the type of OpenMetrics-style `x_total` samples under `# TYPE x counter` (what
vLLM-style servers print), and the names a report shows and an SLO names must be the
ones the server exposes.

Kept: counter, gauge and untyped samples, and the `_sum`/`_count` of histograms and
summaries (cumulative, so counters); a histogram's `_bucket` samples apart (`buckets`:
read per phase as distributions, metrics/server_histograms.py); dropped: quantiles,
`_created` stamps, gauge histograms' buckets.
"""

from __future__ import annotations

import math

from llmscen.engine.protocol import Exposed
from llmscen.spec.metrics import parse_labels, sample_key, split_key

_CUMULATIVE_PARTS = ("_sum", "_count")
_DISTRIBUTIONS = ("histogram", "summary", "gaugehistogram")


def parse_exposition(text: str, prefix: str = "") -> Exposed:
    """Samples named `prefix*`, with their labels, and each sample name's type."""
    families: dict[str, str] = {}
    values: dict[str, float] = {}
    types: dict[str, str] = {}
    buckets: dict[str, float] = {}
    for line in text.split("\n"):      # not splitlines: a label value may hold \x1e, \x85…
        line = line.strip(" \t\r")
        if not line:
            continue
        if line[0] == "#":
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                families[parts[2]] = parts[3].strip()
            continue
        if not line.startswith(prefix):
            continue
        brace = line.find("{")
        if brace >= 0:
            close = line.rfind("}")
            name, labels, rest = line[:brace], parse_labels(line[brace + 1:close]), line[close + 1:]
        else:
            name, _, rest = line.partition(" ")
            labels = {}
        fields = rest.split()
        bucket = name.endswith("_bucket") and families.get(name[:-len("_bucket")]) == "histogram"
        kind = _kind(name, families)
        if not fields or (kind is None and not bucket):
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        if math.isnan(value):
            continue
        key = sample_key(name, labels)
        if bucket:
            buckets[key] = buckets.get(key, 0.0) + value
            continue
        values[key] = values.get(key, 0.0) + value
        types[name] = kind or "untyped"
    return Exposed(values=values, types=types,
                   declared={f: k for f, k in families.items() if f.startswith(prefix)},
                   buckets=buckets)


def summed(exposed: Exposed) -> dict[str, float]:
    """Every sample name's value summed over its label sets (the plugin contract's flat view)."""
    out: dict[str, float] = {}
    for key, value in exposed.values.items():
        name = split_key(key)[0]
        out[name] = out.get(name, 0.0) + value
    return out


def _kind(name: str, families: dict[str, str]) -> str | None:
    """counter, gauge or untyped for a sample worth keeping; None for one to drop."""
    if name.endswith("_created"):
        return None
    family = families.get(name)
    if family in ("counter", "gauge", "untyped"):
        return family
    if family in _DISTRIBUTIONS:        # a summary's quantile samples carry its own name
        return None
    for suffix in ("_total", *_CUMULATIVE_PARTS, "_bucket"):
        if name.endswith(suffix):
            base = families.get(name[:-len(suffix)])
            if suffix == "_total" and base == "counter":
                return "counter"
            if suffix in _CUMULATIVE_PARTS and base in _DISTRIBUTIONS:
                return "gauge" if base == "gaugehistogram" else "counter"
            if suffix == "_bucket" and base in _DISTRIBUTIONS:
                return None
    return "untyped"
