"""The live per-second series of one scope: counters and low-precision histograms.

A second's latency and TTFT values are buffered as plain ints while the second
is open (an append is far cheaper than an HDR record), folded into a live 2-digit
histogram FOLD_AFTER at a time, and sealed into its encoding about two seconds
later, so a long run holds a few hundred bytes per scope-second instead of live
counters. Folding a whole second at once held the event loop for milliseconds
at each second's turn, and the arrivals due then went out late.
"""

from __future__ import annotations

from llmscen.metrics.histogram import SERIES_DIGITS, Histogram

SEAL_AFTER = 2  # seconds a second stays open for late completions
FOLD_AFTER = 128  # values a second buffers before they go into its histogram


class Second:
    """One scope's completions in one second since run start."""

    __slots__ = ("_latency", "_ttft", "check_failures", "errors", "goodput_met", "latency",
                 "latency_us", "not_sent", "ok", "open", "output_tokens", "requests", "t",
                 "ttft", "ttft_us")

    def __init__(self, t: int) -> None:
        self.t = t
        self.requests = 0
        self.not_sent = 0
        self.ok = 0
        self.errors: dict[str, int] | None = None   # most seconds have none
        self.check_failures = 0
        self.output_tokens = 0
        self.goodput_met = 0
        self.latency_us: list[int] = []             # pending, not yet sealed
        self.ttft_us: list[int] = []
        self.latency: str | None = None             # sealed, encoded
        self.ttft: str | None = None
        self._latency: Histogram | None = None      # folded, not yet sealed
        self._ttft: Histogram | None = None
        self.open = False

    def add_error(self, error: str) -> None:
        if self.errors is None:
            self.errors = {}
        self.errors[error] = self.errors.get(error, 0) + 1

    def add(self, latency_us: int, ttft_us: int | None) -> None:
        self.latency_us.append(latency_us)
        if ttft_us is not None:
            self.ttft_us.append(ttft_us)
        if len(self.latency_us) >= FOLD_AFTER:
            self.fold()

    def fold(self) -> None:
        """Move the buffered values into the live histograms."""
        if self.latency_us:
            self._latency = _fold(self._latency, self.latency, self.latency_us)
            self.latency_us = []
        if self.ttft_us:
            self._ttft = _fold(self._ttft, self.ttft, self.ttft_us)
            self.ttft_us = []

    def seal(self) -> None:
        self.fold()
        if self._latency is not None:
            self.latency = self._latency.encode()
            self._latency = None
        if self._ttft is not None:
            self.ttft = self._ttft.encode()
            self._ttft = None


def _fold(live: Histogram | None, encoded: str | None, values: list[int]) -> Histogram:
    """`values` recorded into `live`, or into the sealed `encoded` (a completion that came
    after its second was sealed), or into a new histogram."""
    if live is None:
        live = Histogram.decode(encoded) if encoded else Histogram("duration", SERIES_DIGITS)
    live.record_many(values)
    live.settle()
    return live


class SecondClock:
    """Seals seconds once the run's clock has moved `SEAL_AFTER` seconds past them."""

    __slots__ = ("_open", "now")

    def __init__(self) -> None:
        self.now = -1
        self._open: list[Second] = []

    def opened(self, second: Second) -> None:
        if not second.open:
            second.open = True
            self._open.append(second)

    def advance(self, now: int) -> None:
        if now <= self.now:
            return
        self.now = now
        keep: list[Second] = []
        for second in self._open:
            if second.t <= now - SEAL_AFTER:
                second.seal()
                second.open = False
            else:
                keep.append(second)
        self._open = keep

    def seal_all(self) -> None:
        for second in self._open:
            second.seal()
            second.open = False
        self._open = []


class InFlight:
    """Max requests in flight per second, per phase (None: not tied to a phase)."""

    __slots__ = ("_current", "by_phase")

    def __init__(self) -> None:
        self.by_phase: dict[str | None, dict[int, int]] = {}
        self._current: tuple[str | None, dict[int, int]] = (None, {})

    def note(self, now: float, n: int, phase: str | None) -> None:
        name, seconds = self._current
        if name != phase or not self.by_phase:
            seconds = self.by_phase.setdefault(phase, {})
            self._current = (phase, seconds)
        t = int(now) if now > 0 else 0
        if n > seconds.get(t, -1):
            seconds[t] = n
