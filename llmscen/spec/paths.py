"""Options that name a file or a folder: relative to the scenario file, wherever it is run from.

An options model marks such a field with `FilePath` or `DirPath`; the
compiler (`compile/paths.py`) makes every marked value absolute against the
scenario's folder and checks that it exists, so the plan holds absolute paths.
Built-in and plugin options use the same marker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal


@dataclass(frozen=True)
class ScenarioPath:
    """Marks a `str` option as a path relative to the scenario file."""

    kind: Literal["file", "dir"]


FilePath = Annotated[str, ScenarioPath("file")]
DirPath = Annotated[str, ScenarioPath("dir")]
