"""The metric catalog of SPEC §5: names, kinds, units and allowed stats.

Kinds decide what an SLO may say about a metric:
- `duration`: a histogram of microseconds; stats; thresholds in time units.
- `amount`: a histogram of counts (tokens, chunks, bytes); stats; plain numbers.
- `rate`: per second over the scope's wall time; no stat; `/s`, `/min` or a number.
- `ratio`: a fraction of requests; no stat; `%` or a number in [0, 1].

Resource metrics (`client.cpu`, `service.NAME.rss`, ...) are sampled once a
second rather than recorded per request; `resource_metric` resolves their
dotted names. They take the sampled stats (`min max mean pNN`) and add kinds:
- `cpu`: cores used (1.0 = one core busy); thresholds in `%` (100% = one core).
- `size`: bytes; thresholds with B KB MB GB KiB MiB GiB (bare: bytes).
- `server`: a target's Prometheus series (`server.vllm:num_requests_waiting`), in the
  exposition's own base units (seconds, bytes, ratios); a bare number, or a unit
  converted to those.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

MetricKind = Literal["duration", "amount", "rate", "ratio", "cpu", "size", "server"]

HISTOGRAM_KINDS: frozenset[str] = frozenset({"duration", "amount"})
PLAIN_STATS: tuple[str, ...] = ("min", "max", "mean", "stdev", "count")
DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0, 99.9)
STAT_RE = re.compile(r"^(min|max|mean|stdev|count|p(\d{1,2}(?:\.\d+)?|100))$")


@dataclass(frozen=True)
class Metric:
    name: str
    kind: MetricKind
    description: str
    scale: int = 1        # an amount recorded in 1/scale units (histograms hold integers)
    sampled: bool = False  # a resource sampled every second (stats over its samples)


CATALOG: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("latency", "duration", "intended start → last byte (corrected for coordinated omission)"),
        Metric("latency_sent", "duration", "actual send → last byte (vLLM E2EL)"),
        Metric("ttft", "duration", "intended start → first chunk carrying generated content"),
        Metric("ttft_sent", "duration", "actual send → first content chunk (vLLM TTFT)"),
        Metric("ttft_answer", "duration", "intended start → first chunk of answer text, after "
                                          "any reasoning (streams; ttft when none)"),
        Metric("itl", "duration", "gap between consecutive token chunks, as vLLM's ITL: every chunk "
               "carrying a generated token, empty text too (vLLM sends those); not the "
               "role, finish-only or usage chunk"),
        Metric("tpot", "duration", "(latency_sent − ttft_sent) / (output_tokens − 1), per request"),
        Metric("schedule_lag", "duration", "actual send − intended start"),
        Metric("time_to_recover", "duration", "from a fault of the plan (`faults:`) to the first "
                                              "successful call sent after it, per target"),
        Metric("output_tokens", "amount", "output tokens per request (usage, else counted chunks)"),
        Metric("input_tokens", "amount", "input tokens per request (usage)"),
        Metric("reasoning_tokens", "amount", "reasoning tokens per request (usage's "
                                             "completion_tokens_details, else counted reasoning "
                                             "chunks of a stream)"),
        Metric("answer_tokens", "amount", "output tokens that are not reasoning, per request"),
        Metric("chunks", "amount", "token chunks per streamed response, counted as for itl"),
        Metric("bytes_received", "amount", "response body bytes per request"),
        Metric("throughput", "rate", "successful requests per second over the scope's wall time"),
        Metric("output_token_throughput", "rate", "output tokens per second over the scope's wall time"),
        Metric("images_per_second", "rate", "images received per second over the scope's wall time"),
        Metric("goodput", "rate", "successful requests per second that met every goodput objective"),
        Metric("chunk_chars", "amount", "characters per content chunk of a streamed response "
                                        "(one value per chunk)"),
        Metric("chunk_tokens", "amount", "output tokens per token chunk, per streamed response "
                                         "(usage ÷ chunks)", scale=1000),
        Metric("chunk_rate", "amount", "token chunks per second of a streamed response, from its "
                                       "first content to its end", scale=1000),
        Metric("large_chunk_share", "ratio", "content chunks longer than `metrics.large_chunk` "
                                             "characters / all content chunks"),
        Metric("capacity", "rate", "the largest load a `search:` phase found meeting its "
                                   "objectives (arrivals per second; users for a users search)"),
        Metric("token_mismatch_rate", "ratio", "streamed responses whose usage.completion_tokens "
                                               "differs from their token chunks / streamed "
                                               "responses with usage"),
        Metric("error_rate", "ratio", "failed requests (any class but check) / all requests"),
        Metric("check_failure_rate", "ratio", "requests that failed an expectation / all requests"),
        Metric("success_rate", "ratio", "requests with no error and no failed check / all requests"),
    )
}

CUSTOM_PREFIX = "custom."
CUSTOM_SCALE = 1000      # custom values keep three decimals (histograms hold integers)


def custom_metric(name: str) -> Metric:
    """`custom.NAME`: a number a step's `record:` took from each response."""
    return Metric(name, "amount", "recorded by the scenario's `record:` from each response",
                  scale=CUSTOM_SCALE)


def lookup(name: str) -> Metric | None:
    """A catalog metric, a custom one (`custom.NAME`) or a resource sampled every second
    (`client.cpu`, `service.NAME.rss`, `server.FAMILY`); None if none."""
    found = CATALOG.get(name)
    if found is None and name.startswith(CUSTOM_PREFIX) and len(name) > len(CUSTOM_PREFIX):
        return custom_metric(name)
    return found or resource_metric(name)


# Metrics recorded in HDR histograms, in the order reports show them.
HISTOGRAM_METRICS: tuple[str, ...] = tuple(n for n, m in CATALOG.items() if m.kind in HISTOGRAM_KINDS)


def percentile_of(stat: str) -> float | None:
    """`p99.9` → 99.9; None for a plain stat. Raises ValueError on a malformed stat."""
    m = STAT_RE.match(stat)
    if m is None:
        raise ValueError(stat)
    return float(m.group(2)) if m.group(2) is not None else None

# What the per-second series keeps, hence what a `window` SLO may ask for.
WINDOW_METRICS: frozenset[str] = frozenset({
    "latency", "ttft", "throughput", "output_token_throughput", "goodput",
    "error_rate", "check_failure_rate", "success_rate",
})


# -- resource metrics, sampled every second ------------------------------------------------

SAMPLED_STATS: tuple[str, ...] = ("min", "max", "mean")
SAMPLED_STAT_RE = re.compile(r"^(min|max|mean|p(\d{1,2}(?:\.\d+)?|100))$")
# root → (the part naming one subject, or None) and field → (kind, description)
RESOURCE_ROOTS: dict[str, tuple[str | None, dict[str, tuple[MetricKind, str]]]] = {
    "client": (None, {
        "cpu": ("cpu", "CPU of the load generator: its workers and, when they run in "
                       "processes of their own, the driver process, summed (100% = one core)"),
        "memory": ("size", "resident memory (RSS) of the load generator's processes, summed "
                           "as client.cpu"),
    }),
    "driver": (None, {
        "cpu": ("cpu", "CPU of llmscen's driver process alone (100% = one core); with one "
                       "in-process worker it is that worker's process"),
        "memory": ("size", "resident memory (RSS) of the driver process"),
    }),
    "worker": ("index", {
        "cpu": ("cpu", "CPU of one worker process (100% = one core)"),
        "memory": ("size", "resident memory (RSS) of one worker process"),
    }),
    "host": (None, {
        "cpu": ("cpu", "CPU of the whole machine the run ran on (100% = every core busy)"),
        "memory": ("size", "memory in use on the machine (total − available)"),
    }),
    "service": ("name", {
        "cpu": ("cpu", "CPU of a started service's process tree (100% = one core)"),
        "rss": ("size", "resident memory (RSS) of a started service's process tree, summed; "
                "on Linux a new peak between two samples counts"),
        "threads": ("amount", "threads of a started service's process tree"),
    }),
    "gpu": ("index", {
        "utilization": ("ratio", "GPU busy time over the last sample period (NVML)"),
        "memory_used": ("size", "GPU memory in use (NVML)"),
    }),
}
SUBJECT_RE = {"index": re.compile(r"^[0-9]+$"), "name": re.compile(r"^[A-Za-z0-9_-]+$")}


SERVER_STATS: tuple[str, ...] = (*SAMPLED_STATS, "increase")
FAMILY_RE = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def resource_metric(name: str) -> Metric | None:
    """The sampled metric a dotted name such as `service.sim.rss` means, or None."""
    if name.startswith("server."):
        family, _ = split_key(name[len("server."):])
        if not FAMILY_RE.fullmatch(family):
            return None
        return Metric(name, "server", "a target's Prometheus series: a gauge as read, a "
                                      "counter as its increase per second", sampled=True)
    parts = name.split(".")
    root = RESOURCE_ROOTS.get(parts[0])
    if root is None:
        return None
    subject, fields = root
    if len(parts) != (3 if subject else 2):
        return None
    if subject and not SUBJECT_RE[subject].match(parts[1]):
        return None
    found = fields.get(parts[-1])
    if found is None:
        return None
    return Metric(name, found[0], found[1], sampled=True)



# -- a server's Prometheus series, as `series key`s: `name` or `name{a="1",b="2"}` -------

def sample_key(name: str, labels: dict[str, str]) -> str:
    """`name` or `name{a="1",b="2"}` (labels sorted, values escaped): one exposed series."""
    if not labels:
        return name
    escaped = {k: v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               for k, v in labels.items()}
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(escaped.items())) + "}"


def split_key(key: str) -> tuple[str, dict[str, str]]:
    """The inverse of `sample_key`."""
    brace = key.find("{")
    if brace < 0:
        return key, {}
    return key[:brace], parse_labels(key[brace + 1:key.rfind("}")])


_LABEL_RE = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE_RE = re.compile(r'\\(.)')


def parse_labels(text: str) -> dict[str, str]:
    """`a="1",b="x\\"y"` → {"a": "1", "b": 'x"y'}, as Prometheus' text format writes them."""
    return {m.group(1): _UNESCAPE_RE.sub(lambda e: "\n" if e.group(1) == "n" else e.group(1),
                                         m.group(2))
            for m in _LABEL_RE.finditer(text)}
