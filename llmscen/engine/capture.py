"""Values captured from a response for later steps of a flow.

`$.a.b[0]` reads the JSON body (a JSONPath subset: dotted keys, [index],
['quoted key']), `header:Name` a response header, `regex:PATTERN` the first
group (or the whole match) in the response text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from llmscen.engine.protocol import Exchange

_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")
_MISSING = object()


class CaptureError(ValueError):
    pass


def compile_capture(expr: str) -> Callable[[Exchange], Any]:
    """Compile one capture expression; raises CaptureError when it is malformed."""
    if expr.startswith("header:"):
        name = expr[len("header:"):].strip().lower()
        return lambda ex: (ex.headers or {}).get(name, _MISSING)
    if expr.startswith("regex:"):
        try:
            pattern = re.compile(expr[len("regex:"):])
        except re.error as exc:
            raise CaptureError(f"invalid regex in capture {expr!r}: {exc}") from None

        def by_regex(ex: Exchange) -> Any:
            m = pattern.search(ex.text)
            if m is None:
                return _MISSING
            return m.group(1) if pattern.groups else m.group(0)
        return by_regex
    if expr.startswith("$"):
        parts: list[str | int] = []
        pos = 1
        while pos < len(expr):
            m = _PATH_PART.match(expr, pos)
            if m is None:
                raise CaptureError(f"invalid JSONPath {expr!r} at column {pos + 1}; "
                                   "write $.key.sub[0]")
            key, index, q1, q2 = m.groups()
            parts.append(int(index) if index is not None else (key or q1 or q2 or ""))
            pos = m.end()

        def by_path(ex: Exchange) -> Any:
            node = ex.body
            for part in parts:
                try:
                    node = node[part]
                except (KeyError, IndexError, TypeError):
                    return _MISSING
            return node
        return by_path
    raise CaptureError(f"capture {expr!r} must start with `$.` (JSON body), `header:` or "
                       "`regex:`")


def is_missing(value: Any) -> bool:
    return value is _MISSING
