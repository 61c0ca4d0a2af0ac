"""Scenario files → Documents: plain data with the source position of every node.

Files are read with a bound (MAX_FILE_BYTES, regular files only) and built from
YAML events by `spec.yaml_events`, which holds the other bounds. A problem that
leaves the rest of the document readable (an unset variable, a tag, an alias
over budget, a bad `--set`) is recorded on the Document and reported by the
compiler together with its own; only unreadable YAML raises here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from ruamel.yaml.error import MarkedYAMLError, YAMLError

from llmscen.spec.diagnostics import Diagnostic, ScenarioError
from llmscen.spec.document import Document, Loc
from llmscen.spec.files import KIB, InputFileError, read_text
from llmscen.spec.secrets import redact_argv
from llmscen.spec.yaml_events import MAX_ALIAS_CHARS, MAX_ALIAS_VALUES, MAX_DEPTH, build

__all__ = ["MAX_ALIAS_CHARS", "MAX_ALIAS_VALUES", "MAX_DEPTH", "MAX_FILE_BYTES", "Document",
           "Loc", "apply_overrides", "load_file", "parse_yaml", "read_document"]

MAX_FILE_BYTES = 64 * KIB       # 20x the largest bundled scenario; big inputs go in data files


def parse_yaml(text: str, file: str, env: Mapping[str, str] | None = None) -> Document:
    """Parse YAML text into a Document. Problems that leave the rest readable are kept
    in `Document.problems`; unreadable YAML raises ScenarioError."""
    doc = Document(file=file, data=None)
    try:
        build(doc, text, os.environ if env is None else env)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ScenarioError([*doc.diagnostics(),
                             Diagnostic(file, line, col, f"invalid YAML: {problem}")]) from None
    except YAMLError as exc:
        raise ScenarioError([Diagnostic(file, 1, 1, f"invalid YAML: {exc}")]) from None
    return doc


def read_document(path: str | os.PathLike[str], env: Mapping[str, str] | None = None,
                  what: str = "scenario") -> Document:
    """Read (bounded) and parse a YAML file."""
    file = str(path)
    try:
        text = read_text(path, MAX_FILE_BYTES, f"llmscen reads a {what} only from a regular "
                                               "file, which cannot block or go on for ever")
    except InputFileError as exc:
        hint = "; put large inputs in a data file" if exc.too_large else ""
        raise ScenarioError([Diagnostic(file, 1, 1, f"cannot read the {what}: {exc}{hint}")]) \
            from None
    return parse_yaml(text, file, env)


def load_file(path: str | os.PathLike[str], env: Mapping[str, str] | None = None,
              overrides: Sequence[str] = ()) -> Document:
    """Read and parse a scenario file, then apply `--set PATH=VALUE` overrides."""
    doc = read_document(path, env)
    file = str(path)
    if doc.data is None:
        raise ScenarioError([*doc.diagnostics(), Diagnostic(file, 1, 1, "the scenario is empty")])
    if not isinstance(doc.data, dict):
        raise ScenarioError([doc.diagnostic((), "a scenario must be a mapping of sections "
                                                 "(version, targets, phases, requests, ...)")])
    apply_overrides(doc, overrides)
    return doc


def apply_overrides(doc: Document, overrides: Sequence[str]) -> None:
    """`phases.0.duration=5s` sets a value; the value is parsed as YAML. Problems are
    added to the document's."""
    for item in overrides:
        label = f"--set {redact_argv([item])[0]}"   # it names the source in messages
        path, sep, raw = item.partition("=")
        if not sep or not path:
            doc.problems.append(((), Diagnostic(label, 1, 1, "expected --set PATH=VALUE, e.g. "
                                                             "--set phases.0.duration=5s")))
            continue
        parts: list[str | int] = [int(p) if p.isdigit() else p for p in path.split(".")]
        try:
            parsed = parse_yaml(raw, label)
        except ScenarioError as exc:
            doc.problems += [(tuple(parts), d) for d in exc.diagnostics]
            continue
        doc.problems += [(tuple(parts), d) for _, d in parsed.problems]
        doc.secrets |= parsed.secrets
        problem = _set(doc.data, parts, parsed.data)
        if problem is not None:
            doc.problems.append((tuple(parts), Diagnostic(label, 1, 1, problem)))
        else:
            doc.labels[tuple(parts)] = label


def _set(data: Any, parts: list[str | int], value: Any) -> str | None:
    """Set `value` at `parts`; the reason it cannot be set, or None."""
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = node[part] if _has(node, part) else None
        if isinstance(node, list) and nxt is None:
            where = ".".join(str(p) for p in parts[:i])
            return f"{where} has {len(node)} items; index {part} is out of range"
        if not isinstance(nxt, (dict, list)):
            return f"{'.'.join(str(p) for p in parts[:i + 1])} is not a section of the scenario"
        node = nxt
    last = parts[-1]
    if isinstance(node, list) and not (isinstance(last, int) and last < len(node)):
        return f"index {last} is out of range"
    node[last] = value
    return None


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and part < len(node)
