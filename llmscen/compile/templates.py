"""Request templates: sandboxed Jinja2, strict about undefined names, bounded in size.

Every string in a request payload that contains `{{` or `{%` is a template. A
string that is exactly one expression (`"{{ row.max_tokens | int }}"`) keeps
the type it evaluates to — a number, a boolean, a list, an object; any other
template renders to a string. `check` finds unknown variables, data columns,
sandbox escapes and over-large constants at compile time; `Renderer` compiles
a payload once and renders it per call, returning the very same object when
the payload has no templates (runners cache its serialization).

Random helpers draw from the generator the engine puts in the context under
`RNG` (the phase's seeded one), never from the global `random` module.
"""

from __future__ import annotations

import itertools
import random
import string
import uuid as uuid_module
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes, pass_context
from jinja2.exceptions import SecurityError, TemplateRuntimeError
from jinja2.runtime import Undefined
from jinja2.sandbox import (
    UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    UNSAFE_COROUTINE_ATTRIBUTES,
    UNSAFE_GENERATOR_ATTRIBUTES,
    ImmutableSandboxedEnvironment,
    _mutable_spec,
)

from llmscen.compile import template_limits as limits
from llmscen.spec.diagnostics import did_you_mean

# Variables every template may use, besides captures and `row` (when the request has data).
BUILTIN_VARS = frozenset({"phase", "request", "user", "iteration", "seq"})
# The context key of the phase's random generator: not a name a template can write.
RNG = "llmscen.rng"
_ALPHANUMERIC = string.ascii_letters + string.digits
_INTERNAL_ATTRS = frozenset({"mro", *UNSAFE_GENERATOR_ATTRIBUTES, *UNSAFE_COROUTINE_ATTRIBUTES,
                             *UNSAFE_ASYNC_GENERATOR_ATTRIBUTES})
_MUTATING_METHODS = frozenset(itertools.chain.from_iterable(names for _, names in _mutable_spec))


class TemplateFailed(Exception):
    """Rendering one field of a payload failed; `field` is its dotted path."""

    def __init__(self, field: str, cause: BaseException) -> None:
        super().__init__(f"{field}: {type(cause).__name__}: {cause}")
        self.field = field
        self.cause = cause


# --- random helpers -----------------------------------------------------------------------

def _rng(context: Any) -> random.Random:
    rng = context.get(RNG)
    if not isinstance(rng, random.Random):
        raise TemplateRuntimeError("random helpers need the phase's generator in the context")
    return rng


@pass_context
def random_int(context: Any, low: int, high: int) -> int:
    """An integer in [low, high], both included."""
    return _rng(context).randint(int(low), int(high))


@pass_context
def random_float(context: Any, low: float = 0.0, high: float = 1.0) -> float:
    """A float in [low, high]."""
    return _rng(context).uniform(float(low), float(high))


@pass_context
def random_string(context: Any, length: int = 8, alphabet: str = _ALPHANUMERIC) -> str:
    """`length` characters drawn from `alphabet` (letters and digits by default)."""
    limits.check_size(int(length), f"random_string({length})")
    if not alphabet:
        raise ValueError("random_string needs a non-empty alphabet")
    return "".join(_rng(context).choices(alphabet, k=int(length)))


@pass_context
def random_choice(context: Any, items: Any) -> Any:
    """One item of a list (or one character of a string)."""
    return _rng(context).choice(list(items) if not isinstance(items, (list, str)) else items)


@pass_context
def uuid(context: Any) -> str:
    """A version-4 UUID made from the phase's generator (so runs repeat)."""
    return str(uuid_module.UUID(int=_rng(context).getrandbits(128), version=4))


HELPERS: dict[str, Callable[..., Any]] = {
    "random_int": random_int, "random_float": random_float, "random_string": random_string,
    "random_choice": random_choice, "uuid": uuid}


# --- the environment ----------------------------------------------------------------------

class Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox with size-checked operators, filters and output."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    concat = staticmethod(limits.bounded_concat)

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        self.binop_table.update(limits.BINOPS)
        self.filters.update(limits.bounded_filters(self.filters))
        self.globals["lipsum"] = limits.bounded_lipsum(self.globals["lipsum"])  # type: ignore[arg-type]
        self.globals["range"] = limits.bounded_range
        self.globals.update(HELPERS)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            limits.check_format_spec(value.__self__)
        return wrapped


def environment() -> Sandbox:
    return Sandbox()


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def single_expression(ast: nodes.Template) -> nodes.Expr | None:
    """The expression of a template that is exactly `{{ expr }}`, else None."""
    if len(ast.body) == 1 and isinstance(ast.body[0], nodes.Output):
        parts = ast.body[0].nodes
        if len(parts) == 1 and not isinstance(parts[0], nodes.TemplateData):
            return parts[0]
    return None


# --- compile-time checks ------------------------------------------------------------------

def check(env: Sandbox, source: str, allowed: Iterable[str],
          columns: Iterable[str] | None) -> list[str]:
    """Problems with one template, as messages; `columns` is None when there is no data."""
    try:
        ast = env.parse(source)
    except TemplateSyntaxError as exc:
        return [f"template syntax error: {exc.message}"]
    allowed = set(allowed) | BUILTIN_VARS | set(env.globals) | (
        {"row"} if columns is not None else set())
    assigned = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    problems = []
    for name in sorted({n.name for n in ast.find_all(nodes.Name) if n.ctx == "load"}):
        if name in allowed or name in assigned:
            continue
        hint = " (the request has no `data:`)" if name == "row" else ""
        shown = sorted(allowed - set(env.globals))
        problems.append(f"template uses unknown variable {name!r}{hint}"
                        f"{did_you_mean(name, allowed)} (available: {', '.join(shown)})")
    if columns is not None:
        cols = set(columns)
        for node in ast.find_all(nodes.Getattr):
            if isinstance(node.node, nodes.Name) and node.node.name == "row" \
                    and node.attr not in cols:
                problems.append(f"the data has no column {node.attr!r}"
                                f"{did_you_mean(node.attr, cols)} (columns: "
                                f"{', '.join(sorted(cols))})")
    return problems + sandbox_problems(env, ast)


def names_used(env: Sandbox, source: str) -> set[str]:
    """The variables a template reads (none when it does not parse: `check` says why)."""
    try:
        ast = env.parse(source)
    except TemplateSyntaxError:
        return set()
    return {n.name for n in ast.find_all(nodes.Name) if n.ctx == "load"}


def condition_source(text: str) -> str:
    """An `if:` expression as a template (its braces are optional)."""
    return text if is_template(text) else "{{ " + text + " }}"


def check_condition(env: Sandbox, text: str, allowed: Iterable[str],
                    columns: Iterable[str] | None) -> list[str]:
    """Problems with a step's `if:` expression."""
    source = condition_source(text)
    try:
        ast = env.parse(source)
    except TemplateSyntaxError as exc:
        return [f"`if:` is not an expression: {exc.message}"]
    if single_expression(ast) is None:
        return ["`if:` takes one expression, e.g. `created_id is defined` or "
                "`status == 'open'` (braces optional)"]
    return check(env, source, allowed, columns)


def sandbox_problems(env: Sandbox, ast: nodes.Template) -> list[str]:
    """What the sandbox would refuse at run time, found without running anything."""
    problems: list[str] = []
    for access in ast.find_all((nodes.Getattr, nodes.Getitem)):
        attr = access.attr if isinstance(access, nodes.Getattr) else (
            access.arg.value if isinstance(access, nodes.Getitem)
            and isinstance(access.arg, nodes.Const) else None)
        if isinstance(attr, str) and (attr.startswith("_") or attr in _INTERNAL_ATTRS):
            problems.append(f"template uses {attr!r}: the sandbox refuses attributes that "
                            "start with _ and Python internals")
    for call in ast.find_all(nodes.Call):
        method = call.node
        if isinstance(method, nodes.Getattr) and method.attr in _MUTATING_METHODS:
            problems.append(f"template calls .{method.attr}(): templates may not change "
                            "values (build a new one instead, e.g. with `~` or `+`)")
        if isinstance(method, nodes.Getattr) and method.attr in ("format", "format_map") and \
                isinstance(method.node, nodes.Const) and isinstance(method.node.value, str):
            try:
                limits.check_format_spec(method.node.value)
            except limits.TemplateLimitError as exc:
                problems.append(f"template refused: {exc}")
    for loader in ast.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        problems.append(f"template uses {{% {type(loader).__name__.lower()} %}}: templates "
                        "cannot load other templates")
    for node in ast.find_all((nodes.BinExpr, nodes.Filter, nodes.Call)):
        try:
            _fold(env, node)
        except _NotConstant:
            continue
        except (limits.TemplateLimitError, SecurityError) as exc:
            problems.append(f"template refused: {exc}")
        except TemplateRuntimeError:
            continue     # e.g. a filter that needs a context: only the run can tell
        except (OverflowError, ArithmeticError, TypeError, ValueError) as exc:
            problems.append(f"template always fails: {type(exc).__name__}: {exc}")
    return list(dict.fromkeys(problems))


class _NotConstant(Exception):
    pass


_FOLDED_CALLS = frozenset({"range", "lipsum", *HELPERS})


def _fold(env: Sandbox, node: nodes.Node) -> Any:
    """The value of a constant expression, computed with the bounded operators."""
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, (nodes.List, nodes.Tuple)):
        return [_fold(env, item) for item in node.items]
    if isinstance(node, nodes.Neg):
        return -_fold(env, node.node)
    if isinstance(node, nodes.Pos):
        return +_fold(env, node.node)
    if isinstance(node, nodes.BinExpr):
        left, right = _fold(env, node.left), _fold(env, node.right)
        return env.binop_table[node.operator](left, right)
    if isinstance(node, (nodes.Filter, nodes.Call)) and not (node.dyn_args or node.dyn_kwargs):
        args = [_fold(env, a) for a in node.args]
        kwargs = {str(k.key): _fold(env, k.value) for k in node.kwargs}
        if isinstance(node, nodes.Filter):
            if node.node is None or node.name not in env.filters:
                raise _NotConstant
            return env.call_filter(node.name, _fold(env, node.node), args, kwargs)
        if isinstance(node.node, nodes.Name) and node.node.name in _FOLDED_CALLS:
            func: Any = env.globals[node.node.name]
            if node.node.name in HELPERS:     # drawn from a stand-in generator
                return func({RNG: random.Random(0)}, *args, **kwargs)
            return func(*args, **kwargs)
    raise _NotConstant


# --- rendering ----------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """A rendered value as JSON-like data: generators, tuples and ranges become lists."""
    if value is None or isinstance(value, (str, bool, int, float, list, dict)):
        return value
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Iterable) and not isinstance(value, bytes):
        items = list(itertools.islice(value, limits.MAX_SIZE + 1))
        limits.check_size(len(items), "the expression's list")
        return items
    return value


def walk_strings(value: Any, loc: tuple[str | int, ...] = ()) -> Iterable[tuple[tuple[str | int, ...], str]]:
    """(loc, text) of every string value inside a JSON-like value."""
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from walk_strings(v, (*loc, k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from walk_strings(v, (*loc, i))


def compile_expression(env: Sandbox, source: str) -> Callable[[Mapping[str, Any]], Any]:
    """`source` (one `{{ expr }}`) as a function of the context returning the value itself."""
    expr = single_expression(env.parse(source))
    if expr is None:
        raise ValueError(f"{source!r} is not a single {{{{ expression }}}}")
    body = nodes.Template([nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)],
                          lineno=1)
    body.set_environment(env)
    template = env.from_string(body)

    def value(ctx: Mapping[str, Any]) -> Any:   # as jinja2's TemplateExpression, typed
        context = template.new_context(dict(ctx))
        for _ in template.root_render_func(context):
            pass
        return _plain(context.vars["result"])
    return value


def compile_condition(env: Sandbox, text: str) -> Callable[[Mapping[str, Any]], bool]:
    """A step's `if:` as a test of the context."""
    value = compile_expression(env, condition_source(text))
    return lambda ctx: bool(value(ctx))


class Renderer:
    """A payload compiled once; `render(context)` per call.

    Raises `TemplateFailed` naming the field when a template fails.
    """

    def __init__(self, payload: Any, env: Sandbox | None = None) -> None:
        self.env = env or environment()
        self.static = not any(is_template(s) for _, s in walk_strings(payload))
        self._payload = payload
        self._build: Callable[[Mapping[str, Any]], Any] = (lambda ctx: payload) if self.static \
            else self._compile(payload, ())

    def render(self, context: Mapping[str, Any]) -> Any:
        return self._build(context)

    def _compile(self, value: Any, loc: tuple[str | int, ...]) -> Callable[[Mapping[str, Any]], Any]:
        if isinstance(value, str):
            if not is_template(value):
                return lambda ctx: value
            return self._text(value, ".".join(map(str, loc)) or "the payload")
        if isinstance(value, Mapping):
            parts = [(k, self._compile(v, (*loc, k))) for k, v in value.items()]
            return lambda ctx: {k: f(ctx) for k, f in parts}
        if isinstance(value, (list, tuple)):
            items = [self._compile(v, (*loc, i)) for i, v in enumerate(value)]
            return lambda ctx: [f(ctx) for f in items]
        return lambda ctx: value

    def _text(self, source: str, field: str) -> Callable[[Mapping[str, Any]], Any]:
        try:
            typed = single_expression(self.env.parse(source)) is not None
            render = compile_expression(self.env, source) if typed else \
                self.env.from_string(source).render
        except Exception as exc:   # validated before; a failure here is still the field's
            def failed(ctx: Mapping[str, Any], exc: Exception = exc) -> Any:
                raise TemplateFailed(field, exc)
            return failed

        def text(ctx: Mapping[str, Any]) -> Any:
            try:
                return render(ctx)
            except Exception as exc:   # a template can raise anything on a bad row
                raise TemplateFailed(field, exc) from None
        return text

