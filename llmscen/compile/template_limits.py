"""Bounds on what one template may build, so a typo cannot allocate gigabytes per request.

The sandbox already caps `range()`; here the operators and filters that
multiply sizes (`'x' * n`, `2 ** n`, `'%9999999d' % x`, `center`, `indent`,
`replace`, `batch`, `slice`, `lipsum`) and a template's total output are
checked *before* the work is done, and refused with `TemplateLimitError`.
"""

from __future__ import annotations

import math
import operator
import re
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2 import pass_eval_context
from jinja2.exceptions import TemplateRuntimeError
from jinja2.nodes import EvalContext
from jinja2.sandbox import MAX_RANGE

MAX_SIZE = 1_000_000          # characters of a string, items of a list
MAX_INT_DIGITS = 4_000        # Python refuses to print integers past 4,300 digits


class TemplateLimitError(TemplateRuntimeError):
    """A template asked for more than the limits allow."""

    def __init__(self, what: str, limit: str = f"{MAX_SIZE:,} characters or items") -> None:
        super().__init__(f"{what}: more than a template may build ({limit})")


def _sized(value: Any) -> bool:
    return isinstance(value, (str, bytes, list, tuple))


def check_size(size: int, what: str) -> None:
    if size > MAX_SIZE:
        raise TemplateLimitError(f"{what} would hold {size:,} characters or items")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"a {type(value).__name__} of length {len(value):,}"


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def product(left: Any, right: Any) -> Any:
    """`*`: a string or list times a number is checked before it is built."""
    for seq, times in ((left, right), (right, left)):
        n = _count(times)
        if _sized(seq) and n is not None:
            check_size(len(seq) * max(n, 0), f"{_shown(seq)} * {n:,}")
    return left * right


def power(left: Any, right: Any) -> Any:
    """`**`: an integer power is checked for its number of digits before it is computed."""
    base, exp = _count(left), _count(right)
    if base is not None and exp is not None and exp > 0 and abs(base) > 1:
        digits = exp * math.log10(abs(base))
        if digits > MAX_INT_DIGITS:
            raise TemplateLimitError(f"{base} ** {exp:,} would have about {digits:,.0f} digits",
                                     f"{MAX_INT_DIGITS:,} digits")
    return left**right


def concatenation(left: Any, right: Any) -> Any:
    """`+`: repeated doubling (`s + s` in a loop) stays within the size."""
    if _sized(left) and _sized(right):
        check_size(len(left) + len(right), f"{_shown(left)} + {_shown(right)}")
    return left + right


_PRINTF_RE = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]")


def check_printf(fmt: str) -> None:
    """Widths and precisions of a `%` format string, e.g. `%9999999999d`."""
    for match in _PRINTF_RE.finditer(fmt):
        for part in match.groups():
            if part == "*":
                raise TemplateLimitError(f"format {match.group(0)!r} takes its width from an "
                                         "argument; write the width in the format")
            if part is not None:
                check_size(int(part), f"format {match.group(0)!r}")


_SPEC_NUMBER_RE = re.compile(r"\d+")


def check_format_spec(fmt: str) -> None:
    """Widths and precisions of a `str.format` string, e.g. `{:>9999999999}`."""
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return       # str.format raises the same error itself
    for _, name, spec, _ in fields:
        if name is None or not spec:
            continue
        if "{" in spec:
            raise TemplateLimitError(f"format {{{name}:{spec}}} takes its width from an "
                                     "argument; write the width in the format")
        for number in _SPEC_NUMBER_RE.findall(spec):
            check_size(int(number), f"format {{{name}:{spec}}}")


def modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        check_printf(left)
    return left % right


BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "*": product, "**": power, "+": concatenation, "%": modulo,
    "-": operator.sub, "/": operator.truediv, "//": operator.floordiv,
}


def bounded_concat(pieces: Iterable[Any]) -> str:
    """A template's output, joined while its length stays within the size."""
    out: list[str] = []
    size = 0
    for piece in pieces:
        text = str(piece)
        size += len(text)
        if size > MAX_SIZE:
            raise TemplateLimitError("the template's output")
        out.append(text)
    return "".join(out)


def bounded_filters(filters: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Replacements for the filters whose output can be far larger than their input."""
    center, indent, replace = filters["center"], filters["indent"], filters["replace"]
    batch, slice_, format_ = filters["batch"], filters["slice"], filters["format"]

    def bounded_center(value: Any, width: int = 80) -> str:
        check_size(int(width), "center width")
        return str(center(value, width))

    def bounded_indent(s: Any, width: int | str = 4, first: bool = False,
                       blank: bool = False) -> str:
        text = str(s)
        per_line = len(width) if isinstance(width, str) else int(width)
        check_size(len(text) + per_line * (text.count("\n") + 1), "indent")
        return str(indent(s, width, first, blank))

    @pass_eval_context
    def bounded_replace(eval_ctx: EvalContext, s: Any, old: Any, new: Any,
                        count: int | None = None) -> str:
        text, old_s, new_s = str(s), str(old), str(new)
        hits = text.count(old_s) if count is None or count < 0 else min(count, text.count(old_s))
        check_size(len(text) + hits * (len(new_s) - len(old_s)), "replace")
        return str(replace(eval_ctx, s, old, new, count))

    def bounded_batch(value: Any, linecount: int, fill_with: Any = None) -> Any:
        check_size(int(linecount), "batch size")
        return batch(value, linecount, fill_with)

    def bounded_slice(value: Any, slices: int, fill_with: Any = None) -> Any:
        check_size(int(slices), "slice count")
        return slice_(value, slices, fill_with)

    def bounded_format(value: Any, *args: Any, **kwargs: Any) -> str:
        check_printf(str(value))
        return str(format_(value, *args, **kwargs))

    return {"center": bounded_center, "indent": bounded_indent, "replace": bounded_replace,
            "batch": bounded_batch, "slice": bounded_slice, "format": bounded_format}


def bounded_range(*args: int) -> range:
    """`range()` as the sandbox has it, refused with the same words as the other limits."""
    items = range(*args)
    if len(items) > MAX_RANGE:
        raise TemplateLimitError(f"range({', '.join(map(str, args))}) would hold {len(items):,} items",
                                 f"{MAX_RANGE:,} items")
    return items


def bounded_lipsum(lipsum: Callable[..., str]) -> Callable[..., str]:
    def lorem(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
        check_size(int(n) * int(max) * 12, f"lipsum({n}, max={max})")   # ≤ 12 characters a word
        return lipsum(n, html, min, max)
    return lorem
