"""The answers to identical requests (`expect: consistent`), kept per worker and merged.

A worker cannot judge consistency: the reference answer to a request may come from
another worker, or from an earlier phase. So each worker keeps, per rendered request,
a digest of every answer by phase, and the driver compares them once every worker's
results are merged (`assertions/consistency.py`). Memory stays bounded: digests, not
bodies, for at most `MAX_KEYS` distinct requests of a step; texts (their first
`MAX_TEXT` characters) only for the first answers of the first `TEXT_KEYS` requests
and for answers that differ from the first one this worker saw, for the example.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from llmscen.engine.protocol import Exchange
from llmscen.metrics.results import ConsistencyRecord

MAX_KEYS = 10_000       # distinct rendered requests compared per step
MAX_TEXT = 1_000        # characters of an answer kept for the example difference
TEXT_KEYS = 100         # requests whose first answer's text goes into the results
MAX_TEXTS = 4           # texts kept per request (the reference and a few others)


def answer_of(exchange: Exchange) -> str:
    """What is compared: the generated text, and the tool calls (name and arguments)."""
    calls = exchange.tool_calls
    if not calls:
        return exchange.text
    return exchange.text + "".join(f"\n[tool call] {c.name}({c.arguments})" for c in calls)


def digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


class ConsistencyTracker:
    """One worker's answers to the rendered requests of `consistent` steps."""

    def __init__(self, scrub: Callable[[str], str]) -> None:
        self.scrub = scrub
        self.records: dict[tuple[str, str], ConsistencyRecord] = {}
        self._first: dict[tuple[str, str], tuple[str, str]] = {}   # → (digest, text)
        self._keys: dict[str, int] = {}
        self.overflow: dict[str, int] = {}      # answers to requests beyond MAX_KEYS

    def add(self, phase: str, request: str, key: tuple[str, str], exchange: Exchange) -> None:
        text = answer_of(exchange)
        answer = digest(text)
        slot = (request, key[0])
        record = self.records.get(slot)
        if record is None:
            seen = self._keys.get(request, 0)
            if seen >= MAX_KEYS:
                self.overflow[request] = self.overflow.get(request, 0) + 1
                return
            self._keys[request] = seen + 1
            record = self.records[slot] = ConsistencyRecord(
                request=request, key=key[0], label=self.scrub(key[1]))
            self._first[slot] = (answer, text[:MAX_TEXT])
            if seen < TEXT_KEYS:
                record.texts[answer] = self.scrub(text[:MAX_TEXT])
        counts = record.answers.setdefault(phase, {})
        counts[answer] = counts.get(answer, 0) + 1
        first, first_text = self._first[slot]
        if answer != first and answer not in record.texts and len(record.texts) < MAX_TEXTS:
            record.texts.setdefault(first, self.scrub(first_text))
            record.texts[answer] = self.scrub(text[:MAX_TEXT])

    def notes(self) -> list[str]:
        return [f"expect consistent: {request!r} had more than {MAX_KEYS:,} distinct rendered "
                "requests; the answers to later ones were not compared"
                for request in self.overflow]


def merge_consistency(records: Iterable[ConsistencyRecord]) -> list[ConsistencyRecord]:
    """One record per (request, rendered request): counts added, texts joined (bounded)."""
    out: dict[tuple[str, str], ConsistencyRecord] = {}
    for record in records:
        have = out.get((record.request, record.key))
        if have is None:
            out[(record.request, record.key)] = record.model_copy(deep=True)
            continue
        for phase, counts in record.answers.items():
            into = have.answers.setdefault(phase, {})
            for answer, n in counts.items():
                into[answer] = into.get(answer, 0) + n
        for answer, text in record.texts.items():
            if answer not in have.texts and len(have.texts) < 2 * MAX_TEXTS:
                have.texts[answer] = text
    return list(out.values())
