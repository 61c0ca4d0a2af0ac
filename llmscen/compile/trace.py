"""Trace files to replay (`format: mooncake` or `llmscen`): arrivals with prompt and output
lengths, and the hash ids of the prompt blocks requests share.

Read when the scenario is checked and again by every worker, like data files (compile/data.py),
and with the same bounds. Every line is checked; the first bad one is reported as FILE:LINE with
the field that is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from llmscen.compile.data import DataFileError, json_objects, read_whole

COLUMNS = ("prompt", "input_tokens", "output_tokens", "hash_ids", "timestamp")


def _length(record: dict[str, Any], field: str, where: str, minimum: int) -> int:
    value = record.get(field)
    if value is None:
        raise DataFileError(f"{where}: `{field}` is missing")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataFileError(f"{where}: `{field}` must be an integer >= {minimum}, got "
                            f"{orjson.dumps(value).decode()[:40]}")
    return value


def _time(record: dict[str, Any], field: str, where: str) -> float:
    value = record.get(field)
    if value is None:
        raise DataFileError(f"{where}: `{field}` is missing")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or \
            value != value or value == float("inf"):
        raise DataFileError(f"{where}: `{field}` must be a number >= 0, got "
                            f"{orjson.dumps(value).decode()[:40]}")
    return float(value)


def _hash_ids(record: dict[str, Any], where: str) -> list[int]:
    value = record.get("hash_ids", [])
    if not isinstance(value, list) or any(isinstance(h, bool) or not isinstance(h, int)
                                          for h in value):
        raise DataFileError(f"{where}: `hash_ids` must be a list of integers, got "
                            f"{orjson.dumps(value).decode()[:40]}")
    return value


def parse_line(record: dict[str, Any], fmt: str, where: str) -> dict[str, Any] | None:
    """One arrival: {timestamp (s), input_length, output_length, hash_ids}; None for a line
    that is no arrival (an llmscen log's not-sent counts and failed calls)."""
    if fmt == "mooncake":
        return {"timestamp": _time(record, "timestamp", where) / 1000.0,
                "input_length": _length(record, "input_length", where, 1),
                "output_length": _length(record, "output_length", where, 1),
                "hash_ids": _hash_ids(record, where)}
    if "not_sent" in record or record.get("error") is not None:
        return None
    return {"timestamp": _time(record, "start", where),
            "input_length": _length(record, "input_tokens", where, 1),
            "output_length": _length(record, "output_tokens", where, 1),
            "hash_ids": []}


def read_trace(path: str | Path, fmt: str) -> list[dict[str, Any]]:
    """The trace's arrivals in time order, timestamps in seconds after the first."""
    p, text = read_whole(path, "trace")
    rows = []
    for number, record in json_objects(p, text):
        row = parse_line(record, fmt, f"{p}:{number}")
        if row is not None:
            rows.append(row)
    if not rows:
        raise DataFileError(f"trace {p} has no arrivals" + (
            " (an llmscen request log's sent, successful calls are its arrivals)"
            if fmt == "llmscen" else ""))
    rows.sort(key=lambda r: r["timestamp"])   # stable: a log's workers interleave
    first = rows[0]["timestamp"]
    for row in rows:
        row["timestamp"] -= first
    return rows


def span(rows: list[dict[str, Any]]) -> float:
    """Seconds from the first arrival to the last."""
    return float(rows[-1]["timestamp"]) if rows else 0.0


def arrival_offsets(timestamps: Iterable[float], speed: float,
                    duration: float | None) -> Iterator[float]:
    """A replay's intended starts, seconds after the phase's start: the trace's timestamps
    divided by `speed`, those before `duration`."""
    for t in timestamps:
        offset = t / speed
        if duration is not None and offset >= duration:
            return
        yield offset
