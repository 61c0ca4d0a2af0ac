"""The live side: `MetricStore` turns each finished `Exchange` into histograms and counters.

`record` runs for every request, thousands of times a second, so each scope's
histograms and counters live in one slotted object found with a single dict
lookup, and the per-second series buffers plain ints between seals.

Failed requests are counted but not timed: the latency, TTFT, ITL, TPOT and
amount histograms take complete responses only (no error, or a failed check),
so a burst of fast 503s cannot make latency look good. `schedule_lag` takes
every request that was sent, since it measures the load generator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from llmscen.metrics.histogram import Histogram, load_numpy
from llmscen.metrics.merge import merge_error_summaries
from llmscen.metrics.results import (
    MAX_SAMPLES,
    CheckSummary,
    Counters,
    ErrorSummary,
    InFlightSeries,
    Meta,
    PhaseInfo,
    RunResults,
    Sample,
    Scope,
    ScopeSeries,
    Series,
    SeriesPoint,
    ServerMetrics,
    SloResult,
)
from llmscen.metrics.series import InFlight, Second, SecondClock
from llmscen.spec.metrics import CUSTOM_SCALE

if TYPE_CHECKING:
    from llmscen.engine.protocol import Exchange

Key = tuple[str, str, str]   # (phase, request, target)


def _us(ns: int) -> int:
    return (ns + 500) // 1000


class ErrorGroup:
    """Failed calls of one scope sharing an error class and a status."""

    __slots__ = ("count", "first", "last", "samples")

    def __init__(self, now: float) -> None:
        self.count = 0
        self.first = self.last = now
        self.samples: list[str] = []


class ScopeStats:
    """Live histograms, counters and series of one (phase, request, target)."""

    __slots__ = (
        "answer_tokens",
        "bytes_received",
        "bytes_sum",
        "check_failures",
        "chunk_chars",
        "chunk_rate",
        "chunk_tokens",
        "chunks",
        "content_chunks",
        "custom",
        "error_samples",
        "errors",
        "goodput_met",
        "images",
        "input_tokens",
        "input_tokens_sum",
        "itl",
        "large_chunks",
        "latency",
        "latency_sent",
        "not_sent",
        "ok",
        "output_tokens",
        "output_tokens_sum",
        "reasoning_tokens",
        "requests",
        "schedule_lag",
        "second",
        "seconds",
        "taken",
        "time_to_recover",
        "token_mismatches",
        "tokens_compared",
        "tokens_estimated",
        "tpot",
        "ttft",
        "ttft_answer",
        "ttft_sent",
    )

    def __init__(self) -> None:
        self.latency = Histogram("duration")
        self.latency_sent = Histogram("duration")
        self.ttft = Histogram("duration")
        self.ttft_sent = Histogram("duration")
        self.ttft_answer = Histogram("duration")
        self.itl = Histogram("duration")
        self.tpot = Histogram("duration")
        self.schedule_lag = Histogram("duration")
        self.time_to_recover = Histogram("duration")
        self.output_tokens = Histogram("amount")
        self.input_tokens = Histogram("amount")
        self.reasoning_tokens = Histogram("amount")
        self.answer_tokens = Histogram("amount")
        self.chunks = Histogram("amount")
        self.bytes_received = Histogram("amount")
        self.chunk_chars = Histogram("amount")
        self.chunk_tokens = Histogram("amount")     # thousandths of a token
        self.chunk_rate = Histogram("amount")       # thousandths of a chunk per second
        self.custom: dict[str, Histogram] = {}   # `custom.NAME` → what `record:` took
        self.content_chunks = 0
        self.large_chunks = 0
        self.tokens_compared = 0
        self.token_mismatches = 0
        self.requests = 0
        self.not_sent = 0
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.error_samples: dict[tuple[str, int | None], ErrorGroup] = {}   # (class, status)
        self.check_failures = 0
        self.output_tokens_sum = 0
        self.input_tokens_sum = 0
        self.tokens_estimated = 0
        self.images = 0
        self.bytes_sum = 0
        self.goodput_met = 0
        self.seconds: dict[int, Second] = {}
        self.second = Second(-1)   # the last second written; a sentinel at first
        self.taken = 0             # seconds before this one were handed to take_series

    def histograms(self) -> dict[str, Histogram]:
        """Metric name (catalog spelling, and `custom.NAME`) → histogram."""
        out = {name: getattr(self, name) for name in _HISTOGRAM_SLOTS}
        out.update(self.custom)
        return out

    def compact(self) -> None:
        for h in self.histograms().values():
            h.compact()


_HISTOGRAM_SLOTS: tuple[str, ...] = (
    "latency", "latency_sent", "ttft", "ttft_sent", "ttft_answer", "itl", "tpot",
    "schedule_lag", "time_to_recover",
    "output_tokens", "input_tokens", "reasoning_tokens", "answer_tokens", "chunks",
    "bytes_received", "chunk_chars", "chunk_tokens", "chunk_rate",
)


class MetricStore:
    """Aggregates one process's exchanges per (phase, request, target)."""

    def __init__(self, scrub: Callable[[str], str] = str, large_chunk: int = 20) -> None:
        load_numpy()
        self.scrub = scrub       # applied to the error messages kept as samples
        self.large_chunk = large_chunk   # characters past which a content chunk is large
        self._scopes: dict[Key, ScopeStats] = {}
        self._clock = SecondClock()
        self._in_flight = InFlight()
        self._users = InFlight()
        self._phases: dict[str, PhaseInfo] = {}

    def scope(self, phase: str, request: str, target: str) -> ScopeStats:
        """The live stats of one key, created on first use (the engine may pre-create)."""
        key = (phase, request, target)
        stats = self._scopes.get(key)
        if stats is None:
            stats = self._scopes[key] = ScopeStats()
        return stats

    def record(self, phase: str, request: str, target: str, exchange: Exchange, *,
               goodput_met: bool, now: float) -> None:
        """Account one finished exchange; `now` is seconds since run start."""
        s = self._scopes.get((phase, request, target))
        if s is None:
            s = self.scope(phase, request, target)
        t = int(now) if now > 0 else 0
        second = s.second
        if second.t != t:
            found = s.seconds.get(t)
            if found is None:
                found = s.seconds[t] = Second(t)
            s.second = second = found
            if t > self._clock.now:
                self._clock.advance(t)
        s.requests += 1
        second.requests += 1
        error = exchange.error
        if error is None:
            s.ok += 1
            second.ok += 1
            if goodput_met:
                s.goodput_met += 1
                second.goodput_met += 1
        elif error == "check":
            s.check_failures += 1
            second.check_failures += 1
        else:
            s.errors[error] = s.errors.get(error, 0) + 1
            second.add_error(error)
            group = s.error_samples.get((error, exchange.status))
            if group is None:
                group = s.error_samples[(error, exchange.status)] = ErrorGroup(now)
            group.count += 1
            group.last = now
            if len(group.samples) < MAX_SAMPLES:
                group.samples.append(self.scrub(exchange.error_message))
        output_tokens = exchange.output_tokens
        if output_tokens is not None:
            s.output_tokens_sum += output_tokens
            second.output_tokens += output_tokens
        if exchange.input_tokens is not None:
            s.input_tokens_sum += exchange.input_tokens
        if exchange.tokens_estimated:
            s.tokens_estimated += 1
        s.images += exchange.images
        s.bytes_sum += exchange.bytes_received
        if exchange.recorded:
            for name, value in exchange.recorded.items():
                h = s.custom.get(name)
                if h is None:
                    h = s.custom[name] = Histogram("amount")
                h.record(round(value * CUSTOM_SCALE))

        intended = exchange.intended_ns
        sent = exchange.sent_ns
        if sent:
            s.schedule_lag.record(_us(sent - intended))
        end = exchange.end_ns
        if not end or (error is not None and error != "check"):
            return
        latency = _us(end - intended)
        s.latency.record(latency)
        if sent:
            s.latency_sent.record(_us(end - sent))
        first = exchange.first_content_ns
        ttft = None
        if first:
            ttft = _us(first - intended)
            s.ttft.record(ttft)
            if sent:
                s.ttft_sent.record(_us(first - sent))
            if output_tokens is not None and output_tokens > 1:
                s.tpot.record(_us((end - first) // (output_tokens - 1)))
        if exchange.first_answer_ns:
            s.ttft_answer.record(_us(exchange.first_answer_ns - intended))
        second.add(latency, ttft)
        if not second.open:
            self._clock.opened(second)
        if exchange.itl_us:
            s.itl.record_many(exchange.itl_us)
        chunks = exchange.chunks
        if chunks:
            s.chunks.record(chunks)
            sizes = exchange.chunk_chars
            if sizes:
                s.chunk_chars.record_many(sizes)
                s.content_chunks += len(sizes)
                s.large_chunks += sum(1 for n in sizes if n > self.large_chunk)
            if output_tokens is not None and not exchange.tokens_estimated:
                s.chunk_tokens.record(output_tokens * 1000 // chunks)
                s.tokens_compared += 1          # the server's count against the client's
                if output_tokens != chunks:
                    s.token_mismatches += 1
            if chunks > 1 and first and end > first:
                s.chunk_rate.record((chunks - 1) * 1_000_000_000_000 // (end - first))
        if output_tokens is not None:
            s.output_tokens.record(output_tokens)
        if exchange.input_tokens is not None:
            s.input_tokens.record(exchange.input_tokens)
        reasoning = exchange.reasoning_tokens
        if reasoning is not None:
            s.reasoning_tokens.record(reasoning)
            if output_tokens is not None and output_tokens >= reasoning:
                s.answer_tokens.record(output_tokens - reasoning)
        s.bytes_received.record(exchange.bytes_received)

    def record_value(self, phase: str, request: str, target: str, metric: str,
                     value_us: int) -> None:
        """One value of a histogram metric that is not read off an exchange."""
        self.scope(phase, request, target).histograms()[metric].record(value_us)

    def record_not_sent(self, phase: str, request: str, target: str, count: int, *,
                        now: float) -> None:
        """Account `count` requests that were due but never sent."""
        s = self.scope(phase, request, target)
        s.not_sent += count
        t = int(now) if now > 0 else 0
        second = s.seconds.get(t)
        if second is None:
            second = s.seconds[t] = Second(t)
        second.not_sent += count

    def note_in_flight(self, now: float, n: int, *, phase: str | None = None) -> None:
        """Note `n` requests in flight at `now`; the series keeps each second's maximum."""
        self._in_flight.note(now, n, phase)

    def note_users(self, now: float, n: int, *, phase: str) -> None:
        """Note `n` virtual users running at `now` (closed phases)."""
        self._users.note(now, n, phase)

    def mark_phase(self, name: str, start: float, end: float, kind: str, warmup: bool, *,
                   planned_duration: float | None = None, sweep: str | None = None,
                   offered_rate: float | None = None, users: int | None = None,
                   planned: list[tuple[float, float]] | None = None,
                   vars: dict[str, int | float | str] | None = None) -> None:
        """Record a finished phase's wall time (seconds since run start).

        Phases that ended before this one started are drained by now, so their
        histograms are compacted to bound memory over long sweeps; a straggler
        decodes them again.
        """
        for info in self._phases.values():
            if info.ended <= start:
                self.compact(info.name)
        self._phases[name] = PhaseInfo(name=name, kind=kind, warmup=warmup, started=start,
                                       ended=end, planned_duration=planned_duration,
                                       sweep=sweep, offered_rate=offered_rate, users=users,
                                       planned=planned or [], vars=vars or {})

    def compact(self, phase: str) -> None:
        """Encode the live histograms of `phase`'s scopes."""
        for (scope_phase, _, _), stats in self._scopes.items():
            if scope_phase == phase:
                stats.compact()

    def take_series(self, before: int) -> list[ScopeSeries]:
        """Per-second points of seconds `< before` not taken yet (for live progress).

        Seconds are sealed first, so a point taken here is final only if no more
        completions can fall in it: pass a `before` at least SEAL_AFTER behind the clock.
        """
        out = []
        for (phase, request, target), s in self._scopes.items():
            points = []
            for t in sorted(t for t in s.seconds if s.taken <= t < before):
                second = s.seconds[t]
                second.seal()
                points.append(_point(second))
            if points:
                s.taken = points[-1].t + 1
                out.append(ScopeSeries(phase=phase, request=request, target=target,
                                       points=points))
        return out

    def phase_info(self, name: str) -> PhaseInfo | None:
        """The wall time of a phase that ended."""
        return self._phases.get(name)

    def scope_keys(self) -> list[Key]:
        return list(self._scopes)

    def to_results(self, meta: Meta, phases: Iterable[PhaseInfo] | None = None, *,
                   slos: Iterable[SloResult] = (), checks: Iterable[CheckSummary] = (),
                   server_metrics: Iterable[ServerMetrics] = (),
                   series: bool = True) -> RunResults:
        """Freeze everything recorded into a `RunResults`; `phases` defaults to the marked ones.

        `series=False` leaves the per-second series out (a worker's periodic snapshot:
        the driver has them already from its progress reports)."""
        if series:
            self._clock.seal_all()
        scopes: list[Scope] = []
        timeline: list[ScopeSeries] = []
        errors: list[ErrorSummary] = []
        for (phase, request, target), s in self._scopes.items():
            scopes.append(Scope(
                phase=phase, request=request, target=target,
                counters=Counters(
                    requests=s.requests, not_sent=s.not_sent, ok=s.ok, errors=dict(s.errors),
                    check_failures=s.check_failures, output_tokens=s.output_tokens_sum,
                    input_tokens=s.input_tokens_sum, tokens_estimated=s.tokens_estimated,
                    images=s.images, bytes_received=s.bytes_sum, goodput_met=s.goodput_met,
                    content_chunks=s.content_chunks, large_chunks=s.large_chunks,
                    tokens_compared=s.tokens_compared, token_mismatches=s.token_mismatches),
                histograms={name: h.encode() for name, h in s.histograms().items() if h.count},
                out_of_range={name: h.out_of_range for name, h in s.histograms().items()
                              if h.out_of_range},
            ))
            if series:
                timeline.append(ScopeSeries(phase=phase, request=request, target=target,
                                            points=[_point(second) for _, second in
                                                    sorted(s.seconds.items())]))
            errors.extend(_error_summaries(phase, request, s))
        in_flight = [InFlightSeries(phase=phase, points=sorted(seconds.items()))
                     for phase, seconds in self._in_flight.by_phase.items()] if series else []
        users = [InFlightSeries(phase=phase, points=sorted(seconds.items()))
                 for phase, seconds in self._users.by_phase.items()] if series else []
        return RunResults(
            meta=meta,
            phases=list(phases) if phases is not None else list(self._phases.values()),
            scopes=scopes,
            series=Series(scopes=timeline, in_flight=in_flight, users=users),
            slos=list(slos), checks=list(checks), errors=merge_error_summaries(errors),
            server_metrics=list(server_metrics),
        )


def _point(second: Second) -> SeriesPoint:
    return SeriesPoint(t=second.t, requests=second.requests, not_sent=second.not_sent,
                       ok=second.ok,
                       errors=dict(second.errors or {}), check_failures=second.check_failures,
                       output_tokens=second.output_tokens, goodput_met=second.goodput_met,
                       latency=second.latency, ttft=second.ttft)


def _error_summaries(phase: str, request: str, s: ScopeStats) -> list[ErrorSummary]:
    return [ErrorSummary(request=request, error=error, status=status, count=g.count,
                         phases=[phase], first=g.first, last=g.last,
                         samples=[Sample(message=m) for m in g.samples])
            for (error, status), g in s.error_samples.items()]

