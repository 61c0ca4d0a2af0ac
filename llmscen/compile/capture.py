"""The capture grammar: what a step takes from its response for later steps.

    capture  ::= "$" { "." key | "[" digits "]" | "['" text "']" | '["' text '"]' }
               | "header:" name
               | "regex:" pattern

`$.a.b[0]` reads the JSON body (a JSONPath subset), `header:Name` a response
header (any case), `regex:PATTERN` the first group (or the whole match) in the
response text. Parsed when the scenario is compiled, so a malformed capture is
reported with the others before any traffic; the engine runs the parsed form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_PATH_PART = re.compile(rf"\.({_KEY.pattern})|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class CaptureSyntaxError(ValueError):
    """A bad capture expression; `column` is the 0-based offset of the offending part."""

    def __init__(self, message: str, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


@dataclass(frozen=True)
class Capture:
    """A parsed capture expression."""

    kind: Literal["json", "header", "regex"]
    path: tuple[str | int, ...] = ()    # json: keys and indexes from the body's root
    name: str = ""                      # header: lower-case name
    pattern: re.Pattern[str] | None = None


def parse_capture(expr: str) -> Capture:
    """Parse one capture expression; raises CaptureSyntaxError."""
    if not isinstance(expr, str):
        raise CaptureSyntaxError(f"a capture is a string such as '$.id', got "
                                 f"{type(expr).__name__}")
    if expr.startswith("header:"):
        name = expr[len("header:"):].strip().lower()
        if not name:
            raise CaptureSyntaxError("`header:` needs a header name, e.g. header:X-Request-Id",
                                     len(expr))
        return Capture("header", name=name)
    if expr.startswith("regex:"):
        try:
            pattern = re.compile(expr[len("regex:"):])
        except re.error as exc:
            raise CaptureSyntaxError(f"invalid regex: {exc.msg}",
                                     len("regex:") + (exc.pos or 0)) from None
        return Capture("regex", pattern=pattern)
    if expr.startswith("$"):
        return Capture("json", path=_path(expr))
    hint = f"; did you mean {_as_path(expr)!r}?" if _DOTTED.fullmatch(expr) else ""
    raise CaptureSyntaxError(f"a capture starts with `$` (the JSON body, e.g. $.id), "
                             f"`header:` or `regex:`{hint}")


def is_variable_name(name: str) -> bool:
    """Whether templates can refer to a captured value under `name`."""
    return _NAME.fullmatch(name) is not None


def _path(expr: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    pos = 1
    while pos < len(expr):
        m = _PATH_PART.match(expr, pos)
        if m is None:
            rest = expr[pos:]
            number = re.match(r"\.(\d+)", rest)
            how = f"a list index is written [{number.group(1)}]" if number else \
                "write $.key.sub[0] or $['odd key']"
            raise CaptureSyntaxError(f"invalid JSON path at {rest[:20]!r}: {how}", pos)
        key, index, q1, q2 = m.groups()
        parts.append(int(index) if index is not None else (key or q1 or q2 or ""))
        pos = m.end()
    return tuple(parts)


def _as_path(dotted: str) -> str:
    return "$" + "".join(f"[{p}]" if p.isdigit() else f".{p}" if _KEY.fullmatch(p)
                         else f"['{p}']" for p in dotted.split("."))
