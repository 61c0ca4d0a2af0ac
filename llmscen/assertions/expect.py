"""Expected-output checks (SPEC §4): an `Expect` compiled once into a `Checker`.

Everything that can be prepared is prepared in `build_checker` — regexes and
JSON Schema validators compiled, needle lists frozen — so `Checker.check` only
runs small closures over the `Exchange`. Transport failures belong to the
engine: when `exchange.error` is set only an `error:` expectation is evaluated.
Tensor checks live in `assertions/tensors.py` and import numpy only when used.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from llmscen.assertions.check import Check, CheckFailure
from llmscen.engine.protocol import Exchange
from llmscen.spec.expect import CountRange, ErrorExpect, Expect, ToolCallExpect


class Checker:
    """The compiled expectations of one request (or flow step).

    Holds closures, so it does not pickle: build it where it runs (each worker).
    """

    __slots__ = ("_checks", "_error_check", "accepts")

    def __init__(self, checks: Sequence[Check] = (), error_check: Check | None = None,
                 accepts: frozenset[str] = frozenset()) -> None:
        self._checks = tuple(checks)
        self._error_check = error_check
        # the error classes a negative test turns into a pass (when its checks hold)
        self.accepts = accepts

    @property
    def expects_error(self) -> bool:
        """True for a negative test: an error response is the request's success."""
        return self._error_check is not None

    @property
    def empty(self) -> bool:
        return not self._checks and self._error_check is None

    def check(self, exchange: Exchange) -> list[CheckFailure]:
        failures: list[CheckFailure] = []
        if self._error_check is not None:
            if exchange.error != "cancelled":
                self._error_check(exchange, failures)
        elif exchange.error is None:
            for check in self._checks:
                check(exchange, failures)
        return failures


def build_checker(expect: Expect | None, base_dir: str | Path | None = None) -> Checker:
    """Compile `expect`; `base_dir` resolves relative reference files (the scenario's folder)."""
    if expect is None:
        return Checker()
    if expect.error is not None:
        accepts = frozenset({"timeout"} if expect.error.timeout else {"http", "protocol"})
        return Checker((), _error_check(expect.error), accepts)
    checks: list[Check] = []
    if expect.status is not None:
        checks.append(_status_check(_as_list(expect.status)))
    checks += [_contains_check(needle) for needle in _as_list(expect.contains)]
    checks += [_not_contains_check(needle) for needle in _as_list(expect.not_contains)]
    checks += [_regex_check(re.compile(p)) for p in _as_list(expect.regex)]
    if isinstance(expect.equals, str):
        checks.append(_equals_text_check(expect.equals))
    elif expect.equals is not None:
        checks.append(_equals_json_check(expect.equals))
    if expect.json_schema is not None:
        checks.append(_json_schema_check(expect.json_schema))
    if expect.python_syntax:
        checks.append(_python_syntax_check)
    if expect.tool_call is not None:
        checks.append(_tool_call_check(expect.tool_call))
    if expect.finish_reason is not None:
        checks.append(_finish_reason_check(_as_list(expect.finish_reason)))
    if expect.output_tokens is not None:
        checks.append(_range_check("output_tokens", "output tokens", expect.output_tokens))
    if expect.input_tokens is not None:
        checks.append(_range_check("input_tokens", "input tokens", expect.input_tokens))
    if expect.chunks is not None:
        checks.append(_range_check("chunks", "chunks", expect.chunks))
    if expect.outputs:
        from llmscen.assertions.tensors import tensor_check

        checks += [tensor_check(name, spec, Path(base_dir or "."))
                   for name, spec in expect.outputs.items()]
    return Checker(checks)


# --- showing what came back -------------------------------------------------------------

def show(text: str, limit: int = 80) -> str:
    """A quoted excerpt of `text`, with its length when cut: `'Hello…' (120 chars)`."""
    if not text:
        return "an empty output"
    if len(text) <= limit:
        return repr(text)
    quoted = repr(text[:limit])
    return f"{quoted[:-1]}…{quoted[-1]} ({len(text)} chars)"


def _one_of(values: Sequence[object]) -> str:
    shown = [repr(v) if isinstance(v, str) else str(v) for v in values]
    return shown[0] if len(shown) == 1 else f"one of {', '.join(shown)}"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


# --- text checks ------------------------------------------------------------------------

def _status_check(codes: list[int]) -> Check:
    def check(ex: Exchange, out: list[CheckFailure]) -> None:
        if ex.status not in codes:
            got = f"status {ex.status}" if ex.status is not None else "no status (the protocol " \
                                                                    "reports none)"
            out.append(CheckFailure("status", f"expected status {_one_of(codes)}; got {got}"))
    return check


def _contains_check(needle: str) -> Check:
    def check(ex: Exchange, out: list[CheckFailure]) -> None:
        if needle not in ex.text:
            out.append(CheckFailure("contains", f"expected output to contain {needle!r}; "
                                                f"got {show(ex.text)}"))
    return check


def _not_contains_check(needle: str) -> Check:
    def check(ex: Exchange, out: list[CheckFailure]) -> None:
        at = ex.text.find(needle)
        if at >= 0:
            around = ex.text[max(0, at - 30):at + len(needle) + 30]
            out.append(CheckFailure("not_contains", f"expected output not to contain {needle!r}; "
                                                    f"found it at character {at}: {show(around)}"))
    return check


def _regex_check(pattern: re.Pattern[str]) -> Check:
    def check(ex: Exchange, out: list[CheckFailure]) -> None:
        if pattern.search(ex.text) is None:
            out.append(CheckFailure("regex", f"expected output to match {pattern.pattern!r}; "
                                             f"got {show(ex.text)}"))
    return check


def _equals_text_check(expected: str) -> Check:
    def check(ex: Exchange, out: list[CheckFailure]) -> None:
        if ex.text != expected:
            pairs = zip(ex.text, expected, strict=False)
            at = next((i for i, (a, b) in enumerate(pairs) if a != b),
                      min(len(ex.text), len(expected)))
            out.append(CheckFailure("equals", f"expected output to equal {show(expected)}; got "
                                              f"{show(ex.text)}, differing at character {at}"))
    return check


# --- JSON checks ------------------------------------------------------------------------

_FENCE_RE = re.compile(r"^ {0,3}```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:^ {0,3}```[ \t]*$|\Z)",
                       re.MULTILINE | re.DOTALL)


def json_document(ex: Exchange) -> tuple[Any, str | None]:
    """The JSON a check looks at, or a reason there is none.

    The generated text parsed as JSON (or its first ```json block) comes first:
    for chat APIs `body` is the response envelope, not what the model wrote.
    The body stands in when there is no text (embeddings, plain JSON APIs).
    """
    text = ex.text.strip()
    if not text:
        if ex.body is not None:
            return ex.body, None
        return None, "the response has no output or body"
    try:
        return json.loads(text), None
    except ValueError as err:
        problem = f"the output is not JSON ({err}): {show(ex.text)}"
    for lang, block in _FENCE_RE.findall(text):
        if lang.lower() in ("json", ""):
            try:
                return json.loads(block), None
            except ValueError:
                break
    return None, problem


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON means it: true is not 1, but 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def _short_json(value: Any) -> str:
    return show(json.dumps(value, ensure_ascii=False, default=str), 120)


def _equals_json_check(expected: Any) -> Check:
    def check(ex: Exchange, out: list[CheckFailure]) -> None:
        doc, problem = json_document(ex)
        if problem is not None:
            out.append(CheckFailure("equals", f"expected JSON equal to {_short_json(expected)}; "
                                              f"{problem}"))
        elif not _json_equal(doc, expected):
            out.append(CheckFailure("equals", f"expected JSON equal to {_short_json(expected)}; "
                                              f"got {_short_json(doc)}"))
    return check


def _json_schema_check(schema: dict[str, Any]) -> Check:
    from jsonschema import validators

    validator = validators.validator_for(schema)(schema)

    def check(ex: Exchange, out: list[CheckFailure]) -> None:
        doc, problem = json_document(ex)
        if problem is not None:
            out.append(CheckFailure("json_schema", f"expected JSON matching json_schema; "
                                                   f"{problem}"))
            return
        problem = _schema_problem(validator, doc)
        if problem is not None:
            out.append(CheckFailure("json_schema", f"expected JSON matching json_schema; "
                                                   f"{problem}"))
    return check


def _schema_problem(validator: Any, doc: Any) -> str | None:
    from jsonschema import exceptions

    error = exceptions.best_match(validator.iter_errors(doc))
    if error is None:
        return None
    message = error.message if len(error.message) <= 200 else error.message[:200] + "…"
    return f"at {error.json_path}: {message}"


# --- tool calls -------------------------------------------------------------------------

def _tool_call_check(spec: ToolCallExpect) -> Check:
    names = _as_list(spec.name)
    schema = spec.arguments.schema_ if spec.arguments is not None else None
    validator = None
    if schema is not None:
        from jsonschema import validators

        validator = validators.validator_for(schema)(schema)
    wanted = f"a tool call to {_one_of(names)}" if names else "a tool call"

    def check(ex: Exchange, out: list[CheckFailure]) -> None:
        calls = ex.tool_calls or []
        if not calls:
            reason = f", finish_reason {ex.finish_reason!r}" if ex.finish_reason else ""
            out.append(CheckFailure("tool_call", f"expected {wanted}; the answer made none"
                                                 f"{reason}: {show(ex.text)}"))
            return
        call = next((c for c in calls if not names or c.name in names), None)
        if call is None:
            made = ", ".join(repr(c.name) for c in calls)
            calls_to = "a call" if len(calls) == 1 else "calls"
            out.append(CheckFailure("tool_call", f"expected {wanted}; got {calls_to} to {made}"))
            return
        try:
            arguments = json.loads(call.arguments)
        except ValueError as err:
            out.append(CheckFailure("tool_call", f"expected the arguments of {call.name!r} "
                                                 f"to be JSON; got {show(call.arguments)} "
                                                 f"({err})"))
            return
        problem = _schema_problem(validator, arguments) if validator is not None else None
        if problem is not None:
            out.append(CheckFailure("tool_call", f"expected the arguments of {call.name!r} "
                                                 f"to match the schema; {problem} (got "
                                                 f"{_short_json(arguments)})"))
    return check


# --- code -------------------------------------------------------------------------------

_PYTHON_LANGS = frozenset({"python", "py", "python3", ""})


def python_sources(text: str) -> tuple[list[str], list[str]]:
    """The Python code in an output: ```python (or untagged) blocks, else the whole text.

    Returns (sources, languages of the other fenced blocks). An unclosed fence
    runs to the end, as in an output cut by max_tokens.
    """
    blocks = _FENCE_RE.findall(text)
    if not blocks:
        return ([text] if text.strip() else []), []
    sources = [code for lang, code in blocks if lang.lower() in _PYTHON_LANGS]
    return sources, [lang for lang, _ in blocks if lang.lower() not in _PYTHON_LANGS]


def compile_problem(source: str) -> str | None:
    """Why `source` does not compile, or None. Compiles only; never executes."""
    try:
        with warnings.catch_warnings():
            # e.g. SyntaxWarning for "\d" in a string: not our concern, and noisy per request
            warnings.simplefilter("ignore")
            compile(source, "<output>", "exec", dont_inherit=True)
    except SyntaxError as err:
        text = err.text
        if text is None and err.lineno:   # errors found after parsing carry no text
            lines = source.splitlines()
            text = lines[err.lineno - 1] if err.lineno <= len(lines) else None
        line = f": {show(text.strip(), 60)}" if text and text.strip() else ""
        return f"line {err.lineno}: {err.msg}{line}"
    except (ValueError, RecursionError, MemoryError) as err:   # null bytes, absurd nesting
        return f"{type(err).__name__}: {err}"
    return None


def _python_syntax_check(ex: Exchange, out: list[CheckFailure]) -> None:
    sources, others = python_sources(ex.text)
    if not sources:
        found = f"only {', '.join(others)} code blocks" if others else show(ex.text)
        out.append(CheckFailure("python_syntax", f"expected Python code; got {found}"))
        return
    for number, source in enumerate(sources, 1):
        problem = compile_problem(source)
        if problem is not None:
            where = "the output" if source is ex.text else f"code block {number} of {len(sources)}"
            out.append(CheckFailure("python_syntax",
                                    f"expected Python code that compiles; {where}, {problem}"))
            return


# --- response metadata ------------------------------------------------------------------

def _finish_reason_check(reasons: list[str]) -> Check:
    def check(ex: Exchange, out: list[CheckFailure]) -> None:
        if ex.finish_reason not in reasons:
            got = repr(ex.finish_reason) if ex.finish_reason is not None else "none reported"
            out.append(CheckFailure("finish_reason",
                                    f"expected finish_reason {_one_of(reasons)}; got {got}"))
    return check


def _range_text(bounds: CountRange, noun: str) -> str:
    if bounds.min is not None and bounds.max is not None:
        return f"between {bounds.min} and {bounds.max} {noun}"
    return f"at least {bounds.min} {noun}" if bounds.min is not None else \
        f"at most {bounds.max} {noun}"


def _range_check(name: str, noun: str, bounds: CountRange) -> Check:
    low = bounds.min if bounds.min is not None else 0
    high = bounds.max

    def check(ex: Exchange, out: list[CheckFailure]) -> None:
        value = getattr(ex, name)
        if value is None:
            out.append(CheckFailure(name, f"expected {_range_text(bounds, noun)}; "
                                          f"the response reported none"))
        elif value < low or (high is not None and value > high):
            note = " (estimated)" if name == "output_tokens" and ex.tokens_estimated else ""
            if name == "chunks" and value == 0:
                note = " (is the request streamed?)"
            out.append(CheckFailure(name, f"expected {_range_text(bounds, noun)}; "
                                          f"got {value}{note}"))
    return check


# --- negative tests ---------------------------------------------------------------------

def _strings(value: Any, depth: int = 0) -> Iterator[str]:
    """The strings in a parsed JSON body, where servers put their error messages."""
    if isinstance(value, str):
        yield value
    elif depth < 8 and isinstance(value, dict):
        for item in value.values():
            yield from _strings(item, depth + 1)
    elif depth < 8 and isinstance(value, list):
        for item in value:
            yield from _strings(item, depth + 1)


def _timeout_check(ex: Exchange, out: list[CheckFailure]) -> None:
    if ex.error != "timeout":
        got = (f"a {ex.error} failure: {show(ex.error_message)}" if ex.error else
               f"an answer (status {ex.status}): {show(ex.text)}")
        out.append(CheckFailure("error", f"expected the request to time out; got {got}"))


def _error_check(spec: ErrorExpect) -> Check:
    if spec.timeout:
        return _timeout_check
    codes = _as_list(spec.status)
    needles = _as_list(spec.contains)
    wanted = f" with status {_one_of(codes)}" if codes else ""

    def check(ex: Exchange, out: list[CheckFailure]) -> None:
        # as the engine's flow.py: an HTTP error, or a server error inside a response
        refused = ex.error in ("http", "protocol") or (ex.status is not None and ex.status >= 400)
        message = ex.error_message or ex.text
        if not refused:
            got = (f"a {ex.error} failure: {show(ex.error_message)}" if ex.error else
                   f"success (status {ex.status}): {show(ex.text)}")
            out.append(CheckFailure("error", f"expected the server to refuse the request"
                                             f"{wanted}; got {got}"))
            return
        if codes and ex.status not in codes:
            out.append(CheckFailure("error", f"expected error status {_one_of(codes)}; got "
                                             f"status {ex.status}: {show(message)}"))
        for needle in needles:
            if needle in ex.error_message or needle in ex.text:
                continue
            if any(needle in s for s in _strings(ex.body)):
                continue
            out.append(CheckFailure("error", f"expected the error to mention {needle!r}; "
                                             f"got {show(message)}"))
    return check
