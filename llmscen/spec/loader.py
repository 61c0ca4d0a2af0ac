"""YAML → plain Python data with the source position of every node.

ruamel.yaml (YAML 1.2, round-trip loader for positions) is used; any explicit
tag (`!foo`, `!!python/...`) is rejected, so a scenario can never construct
objects. `${VAR}` and `${VAR:-default}` are replaced inside string scalars after
parsing, which keeps every position exact; `$${` writes a literal `${`.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from llmscen.spec.diagnostics import Diagnostic, ScenarioError
from llmscen.spec.secrets import is_secret_name, redact_argv

Loc = tuple[str | int, ...]
_VAR_RE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_STANDARD_TAG = "tag:yaml.org,2002:"
_STANDARD_TAGS = {f"{_STANDARD_TAG}{t}" for t in ("str", "int", "float", "bool", "null", "map",
                                                     "seq")}


@dataclass
class Document:
    """A loaded scenario: plain data plus where each part came from."""

    file: str
    data: Any
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)    # 0-based line, col
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    labels: dict[Loc, str] = field(default_factory=dict)             # values set by --set
    secrets: set[str] = field(default_factory=set)    # values of secret-named ${VARS}

    @property
    def base_dir(self) -> Path:
        return Path(self.file).resolve().parent

    def diagnostic(self, loc: Loc, message: str, *, key: bool = False,
                   offset: int = 0) -> Diagnostic:
        """A diagnostic at `loc`, or at its nearest ancestor that has a position."""
        loc = tuple(loc)
        while loc:
            if loc in self.labels:
                return Diagnostic(self.labels[loc], 1, 1 + offset, message)
            table = self.keys if key and loc in self.keys else self.values
            if loc in table:
                line, col = table[loc]
                return Diagnostic(self.file, line + 1, col + 1 + offset, message)
            loc, key, offset = loc[:-1], True, 0
        return Diagnostic(self.file, 1, 1, message)


def _tag_of(node: Any) -> str | None:
    tag = getattr(node, "tag", None)
    value = getattr(tag, "value", tag)
    if not isinstance(value, str) or value in _STANDARD_TAGS:
        return None
    return "!!" + value[len(_STANDARD_TAG):] if value.startswith(_STANDARD_TAG) else value


class _Builder:
    """Walks ruamel's tree once: positions, tag rejection, `${VAR}` interpolation."""

    def __init__(self, doc: Document, env: Mapping[str, str]) -> None:
        self.doc = doc
        self.env = env
        self.problems: list[Diagnostic] = []

    def build(self, node: Any, loc: Loc) -> Any:
        tag = _tag_of(node)
        if tag is not None or isinstance(node, TaggedScalar):
            self.problems.append(self.doc.diagnostic(
                loc, f"YAML tag {tag or '!'} is not allowed; scenarios hold plain data only"))
            return None
        if isinstance(node, CommentedMap):
            out: dict[str, Any] = {}
            for k in node:
                child = (*loc, str(k))
                self.doc.keys[child] = node.lc.key(k)
                self.doc.values[child] = node.lc.value(k)
                out[str(k)] = self.build(node[k], child)
            return out
        if isinstance(node, CommentedSeq):
            items = []
            for i, item in enumerate(node):
                child = (*loc, i)
                self.doc.keys[child] = self.doc.values[child] = node.lc.item(i)
                items.append(self.build(item, child))
            return items
        if isinstance(node, str):
            return self.interpolate(str(node), loc)
        if isinstance(node, bool) or node is None:
            return node
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            return float(node)
        return node

    def interpolate(self, text: str, loc: Loc) -> str:
        if "$" not in text:
            return text

        def replace(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            name, default = m.group(1), m.group(2)
            value = self.env.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    self.problems.append(self.doc.diagnostic(
                        loc, f"environment variable {name} is not set and has no default "
                             f"(write ${{{name}:-default}} to give one)", offset=m.start()))
                    return ""
                return default
            if is_secret_name(name):    # ${TENANT_TOKEN} is secret wherever it is used
                self.doc.secrets.add(value)
            return value

        return _VAR_RE.sub(replace, text)


def parse_yaml(text: str, file: str, env: Mapping[str, str] | None = None) -> Document:
    """Parse YAML text into a Document; raises ScenarioError with every problem found."""
    doc = Document(file=file, data=None)
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        tree = yaml.load(io.StringIO(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ScenarioError([Diagnostic(file, line, col, f"invalid YAML: {problem}")]) from None
    except YAMLError as exc:
        raise ScenarioError([Diagnostic(file, 1, 1, f"invalid YAML: {exc}")]) from None
    builder = _Builder(doc, os.environ if env is None else env)
    doc.data = builder.build(tree, ())
    if builder.problems:
        raise ScenarioError(builder.problems)
    return doc


def load_file(path: str | os.PathLike[str], env: Mapping[str, str] | None = None,
              overrides: Sequence[str] = ()) -> Document:
    """Read and parse a scenario file, then apply `--set PATH=VALUE` overrides."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ScenarioError([Diagnostic(file, 1, 1, f"cannot read the scenario: {reason}")]) \
            from None
    doc = parse_yaml(text, file, env)
    if doc.data is None:
        raise ScenarioError([Diagnostic(file, 1, 1, "the scenario is empty")])
    if not isinstance(doc.data, dict):
        raise ScenarioError([doc.diagnostic((), "a scenario must be a mapping of sections "
                                                 "(version, targets, phases, requests, ...)")])
    apply_overrides(doc, overrides)
    return doc


def apply_overrides(doc: Document, overrides: Sequence[str]) -> None:
    """`phases.0.duration=5s` sets a value; the value is parsed as YAML."""
    problems = []
    for item in overrides:
        label = f"--set {redact_argv([item])[0]}"   # it names the source in messages
        path, sep, raw = item.partition("=")
        if not sep or not path:
            problems.append(Diagnostic(label, 1, 1, "expected --set PATH=VALUE, e.g. "
                                                    "--set phases.0.duration=5s"))
            continue
        try:
            parsed = parse_yaml(raw, label)
        except ScenarioError as exc:
            problems.extend(exc.diagnostics)
            continue
        value = parsed.data
        doc.secrets |= parsed.secrets
        parts: list[str | int] = [int(p) if p.isdigit() else p for p in path.split(".")]
        node = doc.data
        for i, part in enumerate(parts[:-1]):
            nxt = node[part] if _has(node, part) else None
            if isinstance(node, list) and nxt is None:
                where = ".".join(str(p) for p in parts[:i])
                problems.append(Diagnostic(label, 1, 1, f"{where} has {len(node)} items; "
                                                        f"index {part} is out of range"))
                node = None
                break
            if not isinstance(nxt, (dict, list)):
                where = ".".join(str(p) for p in parts[:i + 1])
                problems.append(Diagnostic(label, 1, 1, f"{where} is not a section of the "
                                                        "scenario"))
                node = None
                break
            node = nxt
        if node is None:
            continue
        last = parts[-1]
        if isinstance(node, list) and not (isinstance(last, int) and last < len(node)):
            problems.append(Diagnostic(label, 1, 1, f"index {last} is out of range"))
            continue
        node[last] = value
        doc.labels[tuple(parts)] = label
    if problems:
        raise ScenarioError(problems)


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and part < len(node)
