"""Request templates: sandboxed Jinja2 with strict undefined variables.

Every string in a request payload that contains `{{` or `{%` is a template.
`check` finds unknown variables and data columns at compile time; `Renderer`
compiles a payload once and renders it per call, returning the very same object
when the payload has no templates (runners cache its serialization).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmscen.spec.diagnostics import did_you_mean

# Variables every template may use, besides captures and `row` (when the request has data).
BUILTIN_VARS = frozenset({"phase", "request", "user", "iteration", "seq"})


def environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                                        keep_trailing_newline=True)
    return env


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def check(env: ImmutableSandboxedEnvironment, source: str, allowed: Iterable[str],
          columns: Iterable[str] | None) -> list[str]:
    """Problems with one template, as messages; `columns` is None when there is no data."""
    try:
        ast = env.parse(source)
    except TemplateSyntaxError as exc:
        return [f"template syntax error: {exc.message}"]
    allowed = set(allowed) | BUILTIN_VARS | ({"row"} if columns is not None else set())
    assigned = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    problems = []
    for name in sorted({n.name for n in ast.find_all(nodes.Name) if n.ctx == "load"}):
        if name in allowed or name in assigned:
            continue
        hint = " (the request has no `data:`)" if name == "row" else ""
        problems.append(f"template uses unknown variable {name!r}{hint}"
                        f"{did_you_mean(name, allowed)} (available: {', '.join(sorted(allowed))})")
    if columns is not None:
        cols = set(columns)
        for node in ast.find_all(nodes.Getattr):
            if isinstance(node.node, nodes.Name) and node.node.name == "row" \
                    and node.attr not in cols:
                problems.append(f"the data has no column {node.attr!r}"
                                f"{did_you_mean(node.attr, cols)} (columns: "
                                f"{', '.join(sorted(cols))})")
    return problems


def walk_strings(value: Any, loc: tuple[str | int, ...] = ()) -> Iterable[tuple[tuple[str | int, ...], str]]:
    """(loc, text) of every string inside a JSON-like value (keys included as values)."""
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from walk_strings(v, (*loc, k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from walk_strings(v, (*loc, i))


class Renderer:
    """A payload compiled once; `render(context)` per call."""

    def __init__(self, payload: Any, env: ImmutableSandboxedEnvironment | None = None) -> None:
        self._env = env or environment()
        self.static = not any(is_template(s) for _, s in walk_strings(payload))
        self._payload = payload
        self._build: Callable[[Mapping[str, Any]], Any] = (lambda ctx: payload) if self.static \
            else self._compile(payload)

    def render(self, context: Mapping[str, Any]) -> Any:
        return self._build(context)

    def _compile(self, value: Any) -> Callable[[Mapping[str, Any]], Any]:
        if isinstance(value, str):
            if not is_template(value):
                return lambda ctx: value
            template = self._env.from_string(value)
            return lambda ctx: template.render(ctx)
        if isinstance(value, Mapping):
            parts = [(k, self._compile(v)) for k, v in value.items()]
            return lambda ctx: {k: f(ctx) for k, f in parts}
        if isinstance(value, (list, tuple)):
            items = [self._compile(v) for v in value]
            return lambda ctx: [f(ctx) for f in items]
        return lambda ctx: value
