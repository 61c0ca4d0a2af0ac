"""A loaded scenario: plain data, where each part came from, and what loading found."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmscen.spec.diagnostics import Diagnostic

Loc = tuple[str | int, ...]


@dataclass
class Document:
    """A loaded scenario: plain data plus where each part came from."""

    file: str
    data: Any
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)    # 0-based line, col
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    labels: dict[Loc, str] = field(default_factory=dict)             # values set by --set
    secrets: set[str] = field(default_factory=set)    # values of secret-named ${VARS}
    # problems found while loading, with the place each is about; the compiler reports them
    problems: list[tuple[Loc, Diagnostic]] = field(default_factory=list)
    unusable: set[Loc] = field(default_factory=set)   # values those problems left wrong

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

    def usable(self, loc: Loc) -> bool:
        """False when a loading problem already covers the value at `loc`: one mistake,
        one message."""
        return not any(tuple(loc[:n]) in self.unusable for n in range(len(loc) + 1))

    def diagnostics(self, under: Loc = ()) -> list[Diagnostic]:
        """The loading problems about `under`: about what it holds, or about a part of
        the document that holds it (the whole document, say)."""
        return [d for loc, d in self.problems
                if loc[:len(under)] == under or under[:len(loc)] == loc]
