"""Running captures: a parsed capture expression (compile.capture) → a value taken
from one response, or MISSING."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmscen.compile.capture import parse_capture
from llmscen.engine.protocol import Exchange

_MISSING = object()


def compile_capture(expr: str) -> Callable[[Exchange], Any]:
    """The extractor for one capture expression (checked when the scenario compiled)."""
    capture = parse_capture(expr)
    if capture.kind == "header":
        name = capture.name
        return lambda ex: (ex.headers or {}).get(name, _MISSING)
    if capture.kind == "regex":
        pattern = capture.pattern
        assert pattern is not None

        def by_regex(ex: Exchange) -> Any:
            m = pattern.search(ex.text)
            if m is None:
                return _MISSING
            return m.group(1) if pattern.groups else m.group(0)
        return by_regex
    path = capture.path

    def by_path(ex: Exchange) -> Any:
        node = ex.body
        for part in path:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return _MISSING
        return node
    return by_path


def is_missing(value: Any) -> bool:
    return value is _MISSING
