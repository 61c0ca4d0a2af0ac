"""YAML events → plain data, positions and problems, within bounds.

One loop with an explicit stack over ruamel.yaml's event stream (YAML 1.2), so
nothing recurses on the input, and every bound is checked before the work it
limits: nesting deeper than MAX_DEPTH, aliases adding more than
MAX_ALIAS_VALUES values or MAX_ALIAS_CHARS characters (a "billion laughs" is
cut at its first alias past the budget), integers past 64 bits. Explicit tags
other than YAML's own are refused; `${VAR}` is replaced inside string values.
"""

from __future__ import annotations

import copy
import io
import re
from collections.abc import Iterator, Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
)
from ruamel.yaml.nodes import ScalarNode

from llmscen.spec.diagnostics import Diagnostic, ScenarioError
from llmscen.spec.document import Document, Loc
from llmscen.spec.secrets import is_secret_name

MAX_DEPTH = 64                  # nesting levels, aliases expanded
MAX_ALIAS_VALUES = 10_000       # values aliases may add to a document
MAX_ALIAS_CHARS = 1_000_000     # characters of text aliases may add
_INT_RANGE = (-(2 ** 63), 2 ** 64 - 1)

_VAR_RE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_STANDARD = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {f"{_STANDARD}{t}" for t in ("str", "int", "float", "bool", "null", "map",
                                               "seq")}
_SPECIAL_FLOATS = {".inf": float("inf"), "+.inf": float("inf"), "-.inf": float("-inf"),
                   ".nan": float("nan")}


class _Frame:
    """A mapping or sequence being built."""

    __slots__ = ("anchor", "chars", "height", "items", "key", "key_mark", "loc", "mark",
                 "merges", "skip", "values")

    def __init__(self, loc: Loc, mark: tuple[int, int], anchor: str | None,
                 items: dict[str, Any] | list[Any] | None) -> None:
        self.loc, self.mark, self.anchor, self.items = loc, mark, anchor, items
        self.values, self.chars, self.height = 1, 0, 1   # this node's size, aliases expanded
        self.key: Any = None                 # pending mapping key (str, _MERGE or _DROP)
        self.key_mark = mark
        self.merges: list[tuple[Any, tuple[int, int]]] = []
        self.skip = 0                        # >0: a refused subtree, counting its own nesting


_MERGE, _DROP = object(), object()


def _mark(event: Any) -> tuple[int, int]:
    return event.start_mark.line, event.start_mark.column


def _shown_tag(tag: str) -> str:
    return "!!" + tag[len(_STANDARD):] if tag.startswith(_STANDARD) else tag


class _Builder:
    """Turns one document's events into plain data, positions and problems."""

    def __init__(self, doc: Document, env: Mapping[str, str], yaml: YAML) -> None:
        self.doc = doc
        self.env = env
        self.resolver = yaml.resolver
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, int, int, int]] = {}   # value, values, chars, height
        self.alias_values = 0
        self.alias_chars = 0
        self.budget_told = False
        self.done = False

    # -- problems ----------------------------------------------------------------------
    def problem(self, loc: Loc, mark: tuple[int, int], message: str, *,
                unusable: bool = True, offset: int = 0) -> None:
        self.doc.problems.append((loc, Diagnostic(self.doc.file, mark[0] + 1,
                                                  mark[1] + 1 + offset, message)))
        if unusable:
            self.doc.unusable.add(loc)

    def fatal(self, event: Any, message: str) -> ScenarioError:
        line, col = _mark(event)
        return ScenarioError([*self.doc.diagnostics(), Diagnostic(self.doc.file, line + 1,
                                                                  col + 1, message)])

    # -- where the next value goes -----------------------------------------------------
    def next_loc(self) -> Loc:
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.items, list):
            return (*top.loc, len(top.items))
        return (*top.loc, top.key) if isinstance(top.key, str) else top.loc

    def expects_key(self) -> bool:
        top = self.stack[-1] if self.stack else None
        return top is not None and isinstance(top.items, dict) and top.key is None

    # -- the event loop ----------------------------------------------------------------
    def feed(self, events: Iterator[Any]) -> Any:
        for event in events:
            if self.stack and self.stack[-1].skip:
                self.skip(event)
            elif isinstance(event, DocumentStartEvent):
                if self.done:
                    raise self.fatal(event, "invalid YAML: a scenario is one YAML document; "
                                            "found a second one")
            elif isinstance(event, ScalarEvent):
                self.scalar(event)
            elif isinstance(event, AliasEvent):
                self.alias(event)
            elif isinstance(event, CollectionStartEvent):
                self.start(event)
            elif isinstance(event, (MappingEndEvent, SequenceEndEvent)):
                self.end()
        return self.doc.data

    def skip(self, event: Any) -> None:
        top = self.stack[-1]
        if isinstance(event, CollectionStartEvent):
            top.skip += 1
        elif isinstance(event, (MappingEndEvent, SequenceEndEvent)):
            top.skip -= 1
            if top.skip == 0:
                self.stack.pop()
                if top.key is _DROP:
                    self.stack[-1].key, self.stack[-1].key_mark = _DROP, top.mark
                else:
                    self.deliver(None, 1, 0, 1, top.mark)

    def tag_of(self, event: Any) -> str | None:
        """The explicit tag, or None; a refused tag is reported by the caller."""
        tag = getattr(event, "ctag", None)
        return None if tag is None or str(tag) == "!" else str(tag)

    def scalar(self, event: ScalarEvent) -> None:
        mark, loc = _mark(event), self.next_loc()
        tag = self.tag_of(event)
        if tag is not None and tag not in _ALLOWED_TAGS:
            self.problem(loc, mark, f"YAML tag {_shown_tag(tag)} is not allowed; scenarios "
                                    "hold plain data only")
            if self.expects_key():
                self.stack[-1].key, self.stack[-1].key_mark = _DROP, mark
            else:
                self.deliver(None, 1, 0, 0, mark)
            return
        if tag is None:
            tag = str(self.resolver.resolve(ScalarNode, event.value, event.implicit))
        if self.expects_key():
            if event.anchor is not None:
                self.anchors[event.anchor] = (event.value, 1, len(event.value), 0)
            self.key(event.value, mark, merge=tag == f"{_STANDARD}merge")
            return
        value = self.convert(event, tag, loc, mark)
        if event.style in ("'", '"'):   # offsets into the text count from inside the quotes
            mark = (mark[0], mark[1] + 1)
        self.deliver(value, 1, len(value) if isinstance(value, str) else 0, 0, mark,
                     event.anchor)

    def convert(self, event: ScalarEvent, tag: str, loc: Loc, mark: tuple[int, int]) -> Any:
        text = event.value
        kind = tag[len(_STANDARD):] if tag.startswith(_STANDARD) else "str"
        try:
            if kind == "null":
                return None
            if kind == "bool":   # YAML 1.2 spells true/false; a `%YAML 1.1` file yes/on too
                return text.lower() in ("true", "yes", "on", "y")
            if kind == "int":
                return self.integer(text, loc, mark)
            if kind == "float":
                special = _SPECIAL_FLOATS.get(text.lower())
                return special if special is not None else float(text.replace("_", ""))
        except ValueError:
            article = "an" if kind == "int" else "a"
            self.problem(loc, mark, f"invalid YAML: {text[:40]!r} is not {article} {kind}")
            return None
        # strings, timestamps (kept as written) and merge keys used as values
        quoted = 1 if event.style in ("'", '"') else 0
        return self.interpolate(text, loc, (mark[0], mark[1] + quoted))

    def integer(self, text: str, loc: Loc, mark: tuple[int, int]) -> int | None:
        digits = text.replace("_", "").lstrip("+-")
        if len(digits) > 70:   # past any 64-bit spelling; int() of 4300+ digits raises
            self.problem(loc, mark, f"integer of {len(digits)} digits is out of range: "
                                    "integers are limited to 64 bits")
            return None
        base = {"0x": 16, "0o": 8, "0b": 2}.get(digits[:2].lower(), 10)
        value = int(digits[2:] if base != 10 else digits, base)
        value = -value if text.lstrip().startswith("-") else value
        if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
            self.problem(loc, mark, f"integer {text} is out of range: integers are limited "
                                    "to 64 bits")
            return None
        return value

    def interpolate(self, text: str, loc: Loc, mark: tuple[int, int]) -> str:
        if "$" not in text:
            return text

        def replace(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            name, default = m.group(1), m.group(2)
            value = self.env.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    self.problem(loc, mark, f"environment variable {name} is not set and has "
                                            f"no default (write ${{{name}:-default}} to give "
                                            "one)", offset=m.start())
                    return ""
                return default
            if is_secret_name(name):    # ${TENANT_TOKEN} is secret wherever it is used
                self.doc.secrets.add(value)
            return value

        return _VAR_RE.sub(replace, text)

    def key(self, text: str, mark: tuple[int, int], *, merge: bool = False) -> None:
        top = self.stack[-1]
        assert isinstance(top.items, dict)
        top.key_mark = mark
        if merge:
            top.key = _MERGE
        elif text in top.items:
            line = self.doc.keys.get((*top.loc, text), mark)[0] + 1
            self.problem((*top.loc, text), mark, f"invalid YAML: duplicate key {text!r} (first "
                                                 f"on line {line})", unusable=False)
            top.key = _DROP
        else:
            top.key = text

    def alias(self, event: AliasEvent) -> None:
        mark, loc, name = _mark(event), self.next_loc(), event.anchor
        if name not in self.anchors:
            inside = any(f.anchor == name for f in self.stack)
            self.problem(loc, mark, f"alias *{name} is used inside its own anchor &{name}"
                         if inside else f"invalid YAML: found undefined alias {name!r}")
            self.deliver_or_drop(None, mark)
            return
        value, values, chars, height = self.anchors[name]
        if self.expects_key():
            if isinstance(value, (dict, list)):
                self.problem(loc, mark, "a mapping key must be a plain value, not a "
                                        f"{'mapping' if isinstance(value, dict) else 'list'}")
                self.stack[-1].key, self.stack[-1].key_mark = _DROP, mark
            else:
                self.key(str(value), mark)
            return
        if len(self.stack) + height > MAX_DEPTH:
            self.problem(loc, mark, f"alias *{name} nests the document deeper than "
                                    f"{MAX_DEPTH} levels")
            self.deliver(None, 1, 0, 0, mark)
            return
        if self.alias_values + values > MAX_ALIAS_VALUES or \
                self.alias_chars + chars > MAX_ALIAS_CHARS:
            if not self.budget_told:   # about the whole document: said once, first use
                self.budget_told = True
                self.problem((), mark, f"alias *{name} expands the document past the limit "
                             f"of {MAX_ALIAS_VALUES} values or {MAX_ALIAS_CHARS} characters "
                             "that aliases may add (a YAML alias bomb?)", unusable=False)
            self.doc.unusable.add(loc)
            self.deliver(None, 1, 0, 0, mark)
            return
        self.alias_values += values
        self.alias_chars += chars
        self.deliver(copy.deepcopy(value), values, chars, height, mark)

    def start(self, event: Any) -> None:
        mark, loc = _mark(event), self.next_loc()
        is_map = isinstance(event, MappingStartEvent)
        if self.expects_key():
            self.problem(loc, mark, "a mapping key must be a plain value, not a "
                                    f"{'mapping' if is_map else 'list'}", unusable=False)
            frame = _Frame(loc, mark, None, None)
            frame.skip, frame.key = 1, _DROP    # a refused key: its value is dropped too
            self.stack.append(frame)
            return
        if len(self.stack) >= MAX_DEPTH:
            raise self.fatal(event, f"the document is nested deeper than {MAX_DEPTH} levels; "
                                    "a scenario is never that deep")
        tag = self.tag_of(event)
        frame = _Frame(loc, mark, event.anchor, {} if is_map else [])
        if tag is not None and tag not in _ALLOWED_TAGS:
            self.problem(loc, mark, f"YAML tag {_shown_tag(tag)} is not allowed; scenarios "
                                    "hold plain data only")
            frame.items, frame.skip = None, 1
        self.stack.append(frame)

    def end(self) -> None:
        frame = self.stack.pop()
        items = frame.items
        if isinstance(items, dict):
            self.merge(frame, items)
        self.deliver(items, frame.values, frame.chars, frame.height, frame.mark, frame.anchor)

    def merge(self, frame: _Frame, items: dict[str, Any]) -> None:
        """`<<: *defaults` (or a list of them): keys the mapping doesn't set itself."""
        for value, mark in frame.merges:
            for source in value if isinstance(value, list) else [value]:
                if source is None:   # a refused alias, reported already
                    continue
                if not isinstance(source, dict):
                    self.problem(frame.loc, mark, "`<<` merges a mapping or a list of "
                                                  "mappings", unusable=False)
                    continue
                for k, v in source.items():
                    if k not in items:
                        items[k] = v
                        merged = (*frame.loc, k)
                        self.doc.keys[merged] = self.doc.values[merged] = mark

    def deliver_or_drop(self, value: Any, mark: tuple[int, int]) -> None:
        if self.expects_key():
            self.stack[-1].key, self.stack[-1].key_mark = _DROP, mark
        else:
            self.deliver(value, 1, 0, 0, mark)

    def deliver(self, value: Any, values: int, chars: int, height: int, mark: tuple[int, int],
                anchor: str | None = None) -> None:
        """A finished value: into its parent, and under its anchor."""
        if anchor is not None:
            self.anchors[anchor] = (value, values, chars, height)
        if not self.stack:
            self.doc.data = value
            self.done = True
            return
        top = self.stack[-1]
        top.values += values
        top.chars += chars
        top.height = max(top.height, height + 1)
        if isinstance(top.items, list):
            loc = (*top.loc, len(top.items))
            self.doc.keys[loc] = self.doc.values[loc] = mark
            top.items.append(value)
            return
        assert isinstance(top.items, dict)
        key, top.key = top.key, None
        if key is _MERGE:
            top.merges.append((value, top.key_mark))
        elif isinstance(key, str):
            top.values += 1
            top.chars += len(key)
            loc = (*top.loc, key)
            self.doc.keys[loc] = top.key_mark
            self.doc.values[loc] = mark
            top.items[key] = value


def build(doc: Document, text: str, env: Mapping[str, str]) -> None:
    """Fill `doc` from YAML `text`; ruamel's MarkedYAMLError passes through."""
    yaml = YAML(typ="safe", pure=True)
    _Builder(doc, env, yaml).feed(yaml.parse(io.StringIO(text)))
