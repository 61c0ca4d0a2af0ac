"""Data files (CSV, JSONL): rows for templates as `{{ row.<column> }}`.

A data file is read when the scenario is compiled and again by every worker,
so it must be a regular file (a pipe can be read once, a device never ends),
and it is read whole, so it is bounded by MAX_DATA_BYTES.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from llmscen.spec.files import MIB, InputFileError, read_text

MAX_DATA_BYTES = 64 * MIB


class DataFileError(ValueError):
    """A data file that cannot be read; the message names the file and line."""


def detect_format(path: str | Path, declared: str | None) -> str:
    if declared:
        return declared
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    raise DataFileError(f"cannot tell the format of {Path(path).name}: name it .csv or .jsonl, "
                        "or set `format:`")


def shown(p: Path) -> Path:
    """Relative to the working directory when under it: shorter, and the same on every machine."""
    try:
        return p.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return p


def read_whole(path: str | Path, what: str) -> tuple[Path, str]:
    """(the path as shown, the text) of a data file or a trace, bounded by MAX_DATA_BYTES."""
    p = shown(Path(path))
    try:
        return p, read_text(p, MAX_DATA_BYTES, f"llmscen reads a {what} when it checks the "
                                               "scenario and again in every worker")
    except InputFileError as exc:
        raise DataFileError(f"cannot read {what} {p}: {exc}") from None


def json_objects(p: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each JSON line; blank lines skipped, others must be objects."""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise DataFileError(f"{p}:{number}: invalid JSON: {exc}") from None
        if not isinstance(row, dict):
            raise DataFileError(f"{p}:{number}: each line must be a JSON object")
        yield number, row


def read_rows(path: str | Path, fmt: str) -> list[dict[str, Any]]:
    """All rows; data files are small next to the traffic they drive."""
    p, text = read_whole(path, "data file")
    rows: list[dict[str, Any]] = []
    if fmt == "jsonl":
        rows = [row for _, row in json_objects(p, text)]
    else:
        delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
        # newline="": a quoted field keeps its line breaks, as the csv module requires
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        try:
            for row in reader:
                if None in row:
                    raise DataFileError(f"{p}:{reader.line_num}: more fields than the header "
                                        "has")
                rows.append(dict(row))
        except csv.Error as exc:   # a NUL byte, a field past csv's size limit
            raise DataFileError(f"{p}:{reader.line_num + 1}: invalid CSV: {exc}") from None
    if not rows:
        raise DataFileError(f"data file {p} has no rows")
    return rows


def columns_of(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return tuple(seen)
