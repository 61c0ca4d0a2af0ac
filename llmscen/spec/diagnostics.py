"""Input problems, reported together as `FILE:LINE:COL: message`."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from llmscen.errors import InputError


@dataclass(frozen=True, order=True)
class Diagnostic:
    file: str
    line: int      # 1-based
    col: int       # 1-based
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class ScenarioError(InputError):
    """Everything wrong with a scenario, all at once. The CLI maps it to exit code 2."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = sorted(set(diagnostics))
        super().__init__("\n".join(str(d) for d in self.diagnostics))


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`; did you mean 'x'?` when a choice is close to `name`, else ``."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def one_of(choices: Iterable[str]) -> str:
    return ", ".join(sorted(choices)) or "(none)"
