"""Path options made absolute against the scenario's folder (see `spec/paths.py`).

`resolve` walks a validated options model (nested models, lists and dicts of
them) and replaces every `FilePath`/`DirPath` value with its absolute form,
reporting the ones that do not exist by their location under the model.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from llmscen.spec.paths import ScenarioPath

Loc = tuple[str | int, ...]


def _marker(annotation: Any) -> ScenarioPath | None:
    """The ScenarioPath of an annotation, also inside Optional/Union."""
    origin = get_origin(annotation)
    if origin is Annotated:
        for meta in annotation.__metadata__:
            if isinstance(meta, ScenarioPath):
                return meta
        return _marker(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        for arg in get_args(annotation):
            found = _marker(arg)
            if found is not None:
                return found
    return None


def absolute(base: Path, value: str) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def resolve(value: Any, base: Path, loc: Loc = ()) -> tuple[Any, list[tuple[Loc, str]]]:
    """(value with absolute paths, [(loc, problem)]); unchanged objects are returned as is."""
    problems: list[tuple[Loc, str]] = []
    if isinstance(value, BaseModel):
        updates: dict[str, Any] = {}
        for name, field in type(value).model_fields.items():
            current = getattr(value, name)
            key = field.alias or name
            marker = _marker(field.annotation) or next(
                (m for m in field.metadata if isinstance(m, ScenarioPath)), None)
            if marker is not None and isinstance(current, str):
                new: Any = absolute(base, current)
                problem = _missing(Path(new), marker, current)
                if problem:
                    problems.append(((*loc, key), problem))
            else:
                new, inner = resolve(current, base, (*loc, key))
                problems += inner
            if new is not current:
                updates[name] = new
        return (value.model_copy(update=updates) if updates else value), problems
    if isinstance(value, dict):
        out = {}
        changed = False
        for k, v in value.items():
            out[k], inner = resolve(v, base, (*loc, k))
            problems += inner
            changed = changed or out[k] is not v
        return (out if changed else value), problems
    if isinstance(value, (list, tuple)):
        items = []
        for i, v in enumerate(value):
            item, inner = resolve(v, base, (*loc, i))
            items.append(item)
            problems += inner
        if any(a is not b for a, b in zip(items, value, strict=True)):
            return type(value)(items), problems
        return value, problems
    return value, problems


def _missing(path: Path, marker: ScenarioPath, written: str) -> str | None:
    if marker.kind == "dir" and not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        return f"folder {written!r} {what} (looked for {path})"
    if marker.kind == "file" and not path.is_file():
        what = "is not a regular file" if path.exists() else "does not exist"
        return f"file {written!r} {what} (looked for {path})"
    return None
