"""Units a scenario may write: durations, rates, percentages, sizes.

One parser per kind; each takes what YAML produced (str, int or float) and
returns a plain float in the base unit (seconds, per second, fraction, bytes),
raising ValueError with a message fit for the user. `format_*` give the inverse,
so values round-trip through plans and reports.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

_NUMBER = r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?"
_DURATION_RE = re.compile(rf"^\s*({_NUMBER})\s*(us|µs|ms|s|m|min|h)?\s*$")
_RATE_RE = re.compile(rf"^\s*({_NUMBER})\s*(/s|/sec|/m|/min|/h)?\s*$")
_PERCENT_RE = re.compile(rf"^\s*({_NUMBER})\s*(%)?\s*$")
_SIZE_RE = re.compile(rf"^\s*({_NUMBER})\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$")

DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
RATE_UNITS = {"/s": 1.0, "/sec": 1.0, "/m": 1 / 60, "/min": 1 / 60, "/h": 1 / 3600}
SIZE_UNITS = {
    "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3,
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3,
}


def _number(value: Any, what: str, example: str) -> float | None:
    """A bare YAML number, or None when `value` is a string to parse further."""
    if isinstance(value, bool):
        raise ValueError(f"expected a {what} such as {example}, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite {what}, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a {what} such as {example}, got {type(value).__name__}")
    return None


def _match(regex: re.Pattern[str], value: str, what: str, example: str) -> re.Match[str]:
    m = regex.match(value)
    if m is None:
        raise ValueError(f"invalid {what} {value!r}; write it like {example}")
    return m


def _finite(number: float, value: str, what: str) -> float:
    if not math.isfinite(number):   # `1e999s`: a number past what a float holds
        raise ValueError(f"{what} {value[:40]!r} is too large")
    return number


def parse_duration(value: Any) -> float:
    """`250ms`, `1.5s`, `2m`, `1h`, or a bare number of seconds → seconds."""
    example = "250ms, 1.5s, 2m or 1h"
    number = _number(value, "duration", example)
    if number is None:
        m = _match(_DURATION_RE, value, "duration", example)
        number = _finite(float(m.group(1)) * DURATION_UNITS[m.group(2) or "s"], value, "duration")
    if number < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    return number


def parse_rate(value: Any) -> float:
    """`50`, `50/s`, `50/min` → per second."""
    example = "50, 50/s or 300/min"
    number = _number(value, "rate", example)
    if number is None:
        m = _match(_RATE_RE, value, "rate", example)
        number = _finite(float(m.group(1)) * RATE_UNITS[m.group(2) or "/s"], value, "rate")
    if number < 0:
        raise ValueError(f"a rate cannot be negative, got {value!r}")
    return number


def parse_percent(value: Any) -> float:
    """`1%` or `0.01` → 0.01."""
    example = "1% or 0.01"
    number = _number(value, "percentage", example)
    if number is None:
        m = _match(_PERCENT_RE, value, "percentage", example)
        number = float(m.group(1)) / (100.0 if m.group(2) else 1.0)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"a percentage must lie between 0% and 100%, got {value!r}")
    return number


def parse_size(value: Any) -> float:
    """`512`, `64KB`, `1.5MiB` → bytes."""
    example = "512, 64KB or 2MiB"
    number = _number(value, "size", example)
    if number is None:
        m = _match(_SIZE_RE, value, "size", example)
        number = _finite(float(m.group(1)) * SIZE_UNITS[m.group(2) or "B"], value, "size")
    if number < 0:
        raise ValueError(f"a size cannot be negative, got {value!r}")
    return number


def format_duration(seconds: float) -> str:
    """Readable form that parses back to the same float."""
    for unit in ("h", "m", "s", "ms", "us"):
        amount = seconds / DURATION_UNITS[unit]
        if amount >= 1 and amount == int(amount) and int(amount) * DURATION_UNITS[unit] == seconds:
            return f"{int(amount)}{unit}"
    return f"{seconds!r}s"


def format_size(size: float) -> str:
    """Bytes in decimal units, three digits: `512B`, `81.9MB`, `2.15GB`."""
    for unit in ("GB", "MB", "KB"):
        if abs(size) >= SIZE_UNITS[unit]:
            return f"{size / SIZE_UNITS[unit]:.3g}{unit}"
    return f"{size:.0f}B"


def format_rate(per_second: float) -> str:
    return f"{per_second!r}/s"


def format_percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def show_value(kind: str, value: float | None) -> str:
    """A value of a metric kind in its natural unit, as every table and message shows it."""
    if value is None:
        return "n/a"
    if kind == "duration":
        if value >= 1:
            return f"{value:.3g}s"
        return f"{value * 1000:.3g}ms" if value >= 1e-3 else f"{value * 1e6:.3g}us"
    if kind == "ratio":
        return f"{value * 100:.3g}%"
    if kind == "rate":      # 13,083/s, not 1.308e+04/s
        return f"{value:.4g}/s" if abs(value) < 1e4 else f"{value:,.0f}/s"
    if kind == "cpu":
        return f"{value * 100:.3g}%"
    if kind == "size":
        return format_size(value)
    if value == int(value) and abs(value) < 1e15:    # counts and token sums: whole numbers
        return str(int(value))
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def show(metric: str, value: float | None, stat: str | None = None) -> str:
    """A value of a catalog metric (or of its `stat`: `count` is always a plain count)."""
    from llmscen.spec.metrics import lookup

    info = lookup(metric)
    kind = "amount" if stat == "count" or info is None else info.kind
    return show_value(kind, value)


# pattern of the written form → what the JSON Schema says about its unit; a field's own
# description replaces the type's, so the schema adds this to it (compile/schema.py)
UNIT_HINTS: dict[str, str] = {}


def _schema(pattern: str, description: str, examples: list[str]) -> WithJsonSchema:
    UNIT_HINTS[pattern] = description
    return WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0},
                                     {"type": "string", "pattern": pattern}],
                           "description": description, "examples": examples})


Duration = Annotated[float, BeforeValidator(parse_duration),
                     _schema(r"^\s*[0-9.eE+-]+\s*(us|µs|ms|s|m|min|h)?\s*$",
                             "a duration: 250ms, 1.5s, 2m, 1h or a number of seconds",
                             ["250ms", "1.5s", "2m"])]
Rate = Annotated[float, BeforeValidator(parse_rate),
                 _schema(r"^\s*[0-9.eE+-]+\s*(/s|/sec|/m|/min|/h)?\s*$",
                         "a rate: 50, 50/s or 300/min (a bare number is per second)",
                         ["50", "50/s", "300/min"])]
Percent = Annotated[float, BeforeValidator(parse_percent),
                    _schema(r"^\s*[0-9.eE+-]+\s*%?\s*$", "a fraction: 1% or 0.01",
                            ["1%", "0.01"])]
Size = Annotated[float, BeforeValidator(parse_size),
                 _schema(r"^\s*[0-9.eE+-]+\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$",
                         "a size: 512, 64KB or 2MiB (a bare number is bytes)",
                         ["512", "64KB", "2MiB"])]
