"""Data feeders: the row each request takes from a data file."""

from __future__ import annotations

import random
from typing import Any

from llmscen.compile.data import read_rows
from llmscen.compile.plan import DataPlan


class DataExhausted(Exception):
    """An `order: once` data set has given every row."""


class Feeder:
    """Rows in `sequential` (cycling), `random` (seeded) or `once` order.

    With several workers, worker `index` of `count` takes every count-th row, so
    `once` never hands a row to two workers and `sequential` workers together go
    through the rows evenly.
    """

    def __init__(self, plan: DataPlan, seed: int, index: int = 0, count: int = 1,
                 rows: list[dict[str, Any]] | None = None) -> None:
        if rows is None:   # synthetic data comes made
            rows = read_rows(plan.file, plan.format)
        self.name = plan.name
        self.order = plan.order
        strided = plan.order == "once" or (plan.order == "sequential" and len(rows) >= count)
        self.rows: list[dict[str, Any]] = rows[index::count] if strided else rows
        self.position = 0
        self.rng = random.Random(seed + index)

    def next(self) -> dict[str, Any]:
        if self.order == "random":
            return self.rng.choice(self.rows)
        if self.position >= len(self.rows):
            if self.order == "once":
                raise DataExhausted(f"data {self.name!r} (order: once) has no rows left")
            self.position = 0
        row = self.rows[self.position]
        self.position += 1
        return row
