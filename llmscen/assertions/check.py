"""What a compiled expectation is: a function that appends what it finds wrong."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from llmscen.engine.protocol import Exchange


@dataclass(frozen=True, slots=True)
class CheckFailure:
    check: str      # the expectation's name: `contains`, `outputs.images.shape`, ...
    message: str    # what was expected and what came back


# A compiled check appends what it finds wrong to the list it is given.
Check = Callable[[Exchange, list[CheckFailure]], None]
