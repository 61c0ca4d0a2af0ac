"""A thin wrapper over `hdrhistogram`: integer values, out-of-range counting, exact merge.

Durations are microseconds in 1 µs .. 1 h; amounts (tokens, chunks, bytes) are
counts in 0 .. 10^10. The encoded form is the library's compressed base64 V2
histoblob, so other HdrHistogram tools can read it too.
"""

from __future__ import annotations

import math
import os
import sys
from array import array
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Literal

from hdrh.histogram import HdrHistogram

from llmscen.spec.metrics import DEFAULT_PERCENTILES, percentile_of

if TYPE_CHECKING:
    import numpy as np

HistogramKind = Literal["duration", "amount"]

DURATION_MAX_US = 3_600_000_000      # 1 hour
AMOUNT_MAX = 10_000_000_000          # large enough for the bytes of a batch of images
DIGITS = 3                           # significant digits of the per-scope histograms
SERIES_DIGITS = 2                    # significant digits of the per-second histograms

_HIGHEST: dict[str, int] = {"duration": DURATION_MAX_US, "amount": AMOUNT_MAX}
# Values wait in a flat array of int64 and reach the counters PENDING_MAX at a time, in
# a few vectorized numpy steps (~20 ns a value): a stream's ITL gaps are mostly distinct
# values, and the earlier per-value bucket arithmetic in Python (~0.8 µs a value) was
# the largest part of a request's cost. At 4,096 a settle takes ~0.1 ms of the loop.
PENDING_MAX = 4096


def load_numpy() -> None:
    """Import numpy now, before a run: the first settle would otherwise pay its ~80-200 ms
    in the middle of one, a stall that every arrival due then is sent late by.

    Nothing here multiplies matrices, yet OpenBLAS starts a thread per core at the import
    that spins on sched_yield for its first ~100 ms, on the cores the run needs: one
    thread (the caller's) is asked for unless the user chose otherwise. The variable is
    put back at once: the services a run starts (a vLLM on CPU) keep their own threads."""
    ours = "numpy" not in sys.modules and "OPENBLAS_NUM_THREADS" not in os.environ
    if ours:
        os.environ["OPENBLAS_NUM_THREADS"] = "1"    # read once, when OpenBLAS is loaded
    try:
        import numpy  # noqa: F401
    finally:
        if ours:
            del os.environ["OPENBLAS_NUM_THREADS"]


def add_values(h: HdrHistogram, values: np.ndarray, highest: int) -> int:
    """Record `values` (int64) into `h` exactly as hdrh's record_value would, one at a
    time, refusing those past `highest`; returns how many did not fit."""
    import numpy as np  # imported here, and by load_numpy before a run: not by `validate`

    fits = (values >= 0) & (values <= highest)
    v = values if fits.all() else values[fits]
    if not len(v):
        return len(values)
    half_magnitude = h.sub_bucket_half_count_magnitude
    # hdrh's bucket index: bit_length(v | mask) - base; frexp's exponent is bit_length,
    # exact because every value is below 2**53
    bucket = np.frexp((v | h.sub_bucket_mask).astype(np.float64))[1].astype(np.int64) - \
        (half_magnitude + 1 + h.unit_magnitude)
    index = ((bucket + 1) << half_magnitude) + (v >> (bucket + h.unit_magnitude)) - \
        h.sub_bucket_half_count
    inside = index < h.counts_len
    if not inside.all():
        v, index = v[inside], index[inside]
        if not len(v):
            return len(values)
    low = int(index.min())
    added = np.bincount(index - low)
    table = np.ctypeslib.as_array(h.counts)
    table[low:low + len(added)] += added.astype(table.dtype)
    h.total_count += len(v)
    h.min_value = min(h.min_value, int(v.min()))
    h.max_value = max(h.max_value, int(v.max()))
    return len(values) - len(v)


def _moments(h: HdrHistogram) -> tuple[float, float]:
    """Mean and stdev exactly as hdrh computes them (bucket midpoints, same order).

    hdrh's own get_mean_value/get_stddev walk an iterator object per bucket and
    take 60-150 ms on a wide histogram; slicing the counts array is ~100x faster.
    """
    total = h.get_total_count()
    if not total:
        return 0.0, 0.0
    limit = h.get_counts_array_index(h.max_value) + 1
    buckets = [(h._hdr_median_equiv_value(h.get_value_from_index(i)), c)
               for i, c in enumerate(h.counts[:limit]) if c]
    mean = float(sum(m * c for m, c in buckets)) / total
    dev = 0.0
    for m, c in buckets:
        d = m * 1.0 - mean
        dev += (d * d) * c
    return mean, math.sqrt(dev / total)


class Histogram:
    """One metric's distribution. Allocates its counters on the first record.

    `compact()` swaps the counters (~190 KB at 3 digits) for their encoding;
    the next `record` or `merge` decodes them again. Recorded values are
    batched (see PENDING_MAX); every reader settles them first, `out_of_range`
    included.
    """

    __slots__ = ("_cached", "_count", "_encoded", "_h", "_out_of_range", "_pending", "digits",
                 "highest", "kind")

    def __init__(self, kind: HistogramKind = "duration", digits: int = DIGITS) -> None:
        self.kind: HistogramKind = kind
        self.digits = digits
        self.highest = _HIGHEST[kind]
        self._out_of_range = 0
        self._h: HdrHistogram | None = None
        self._encoded: str | None = None
        self._count = 0
        self._pending = array("q")
        self._cached: tuple[int, str] | None = None   # (count, encoding) of the last encode

    # -- recording -----------------------------------------------------------------

    @property
    def out_of_range(self) -> int:
        """How many values did not fit (past the range, or negative amounts)."""
        if self._pending:
            self._settle()
        return self._out_of_range

    @out_of_range.setter
    def out_of_range(self, n: int) -> None:
        if self._pending:
            self._settle()
        self._out_of_range = n

    def record(self, value: int) -> bool:
        """Record one value; False (and counted in `out_of_range`) when it does not fit."""
        if value < 1:
            if value < 0 and self.kind == "amount":
                self._out_of_range += 1
                return False
            if self.kind == "duration":
                value = 1   # zero gaps are real (two chunks in one read); keep them
        elif value > self.highest:
            self._out_of_range += 1
            return False
        pending = self._pending
        pending.append(value)
        if len(pending) >= PENDING_MAX:
            self._settle()
        return True

    def record_many(self, values: Iterable[int]) -> None:
        """Record several values (e.g. every ITL gap of a response); those that do not fit
        are counted in `out_of_range` when they are settled."""
        if not isinstance(values, list | tuple):
            values = list(values)
        pending = self._pending
        size = len(pending)
        try:
            pending.extend(values)     # one C loop: the common case
        except OverflowError:          # a value past 64 bits: out of any range
            del pending[size:]
            for value in values:
                if -2 ** 63 <= value < 2 ** 63:
                    pending.append(value)
                else:
                    self._out_of_range += 1
        if len(pending) >= PENDING_MAX:
            self._settle()

    def settle(self) -> None:
        """Record the values waiting in the batch now (a caller that wants the cost of
        recording paid in small steps, not at the next read)."""
        self._settle()

    def _settle(self) -> HdrHistogram:
        """The counters with every pending value recorded."""
        h = self._h if self._h is not None else self._live()
        if self._pending:
            import numpy as np

            values = np.frombuffer(self._pending, dtype=np.int64)
            if self.kind == "duration":
                values = np.maximum(values, 1)   # as `record` does: zero gaps are real
            self._out_of_range += add_values(h, values, self.highest)
            self._pending = array("q")
        return h

    def merge(self, other: Histogram) -> None:
        """Add `other`'s values; the result equals recording both sets into one histogram."""
        if (other.kind, other.digits) != (self.kind, self.digits):
            raise ValueError(f"cannot merge a {other.kind} histogram at {other.digits} digits "
                             f"into a {self.kind} histogram at {self.digits} digits")
        if other.count == 0:
            self.out_of_range += other.out_of_range
            return  # hdrh's add() would set our minimum to 0 for an empty operand
        theirs = other._settle() if other._encoded is None else HdrHistogram.decode(other._encoded)
        self.out_of_range += other.out_of_range
        self._settle().add(theirs)

    def _live(self) -> HdrHistogram:
        if self._h is not None:
            return self._h
        if self._encoded is not None:
            h = HdrHistogram.decode(self._encoded)
            self._encoded = None
        else:
            h = HdrHistogram(1, self.highest, self.digits)
        self._h = h
        return h

    def compact(self) -> None:
        """Free the counters, keeping the encoding; recording later decodes it again."""
        if self._pending:
            self._settle()
        if self._h is not None:
            self._count = self._h.get_total_count()
            self._encoded = self._h.encode().decode("ascii") if self._count else None
            self._h = None

    # -- reading -------------------------------------------------------------------

    @property
    def count(self) -> int:
        if self._pending:
            self._settle()
        if self._h is not None:
            return int(self._h.get_total_count())
        return self._count if self._encoded is not None else 0

    def _reader(self) -> HdrHistogram | None:
        if self.count == 0:
            return None
        return self._settle()

    def recorded(self) -> Iterator[tuple[int, int]]:
        """(value, how many) of every bucket that holds values; the value is the middle of
        the values the bucket stands for."""
        h = self._reader()
        if h is None:
            return
        for item in h.get_recorded_iterator():
            value = item.value_iterated_to
            middle = (h.get_lowest_equivalent_value(value) +
                      h.get_highest_equivalent_value(value)) // 2
            yield int(middle), int(item.count_at_value_iterated_to)

    def percentile(self, p: float) -> int | None:
        h = self._reader()
        return None if h is None else int(h.get_value_at_percentile(p))

    def stat(self, name: str) -> float | None:
        """`min max mean stdev count` or `pNN.N`, in recorded units; None when empty."""
        p = percentile_of(name)   # raises ValueError on a malformed stat
        if name == "count":
            return float(self.count)
        h = self._reader()
        if h is None:
            return None
        if p is not None:
            return float(h.get_value_at_percentile(p))
        if name == "min":
            return float(h.get_min_value())
        if name == "max":
            return float(h.get_max_value())
        mean, stdev = _moments(h)
        return mean if name == "mean" else stdev

    def stats(self, percentiles: Iterable[float] = DEFAULT_PERCENTILES) -> dict[str, float | None]:
        """min max mean stdev count and the given percentiles (keys `p50`, `p99.9`)."""
        percentiles = tuple(percentiles)
        keys = [f"p{p:g}" for p in percentiles]
        h = self._reader()
        if h is None:
            return {"min": None, "max": None, "mean": None, "stdev": None, "count": 0.0,
                    **dict.fromkeys(keys)}
        by_p = h.get_percentile_to_value_dict(list(percentiles))
        mean, stdev = _moments(h)
        out: dict[str, float | None] = {
            "min": float(h.get_min_value()), "max": float(h.get_max_value()),
            "mean": mean, "stdev": stdev, "count": float(h.get_total_count()),
        }
        for key, p in zip(keys, percentiles, strict=True):
            out[key] = float(by_p[p])
        return out

    # -- encoding ------------------------------------------------------------------

    def encode(self) -> str:
        """The library's compressed base64 histoblob (out_of_range is not part of it).

        Encoding costs about a millisecond; an unchanged histogram reuses its last one.
        """
        if self._pending:
            self._settle()
        if self._h is not None:
            count = int(self._h.get_total_count())
            if self._cached is not None and self._cached[0] == count:
                return self._cached[1]
            text = str(self._h.encode().decode("ascii"))
            self._cached = (count, text)
            return text
        if self._encoded is not None:
            return self._encoded
        return str(HdrHistogram(1, self.highest, self.digits).encode().decode("ascii"))

    @classmethod
    def decode(cls, text: str, out_of_range: int = 0) -> Histogram:
        """Rebuild a histogram from `encode()`; kind and digits come from the encoding."""
        h = HdrHistogram.decode(text)
        highest = int(h.highest_trackable_value)
        kinds = [k for k, v in _HIGHEST.items() if v == highest]
        if not kinds or h.lowest_trackable_value != 1:
            raise ValueError(f"not an llmscen histogram (range {h.lowest_trackable_value}"
                             f"..{highest})")
        out = cls(kinds[0], int(h.significant_figures))  # type: ignore[arg-type]
        out._h = h
        out.out_of_range = out_of_range
        return out

    def __repr__(self) -> str:
        return (f"Histogram({self.kind!r}, digits={self.digits}, count={self.count}, "
                f"out_of_range={self.out_of_range})")
