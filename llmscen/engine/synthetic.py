"""Synthetic prompts of exact token length (`data: {synthetic: ...}`).

Made once per worker at the start of the run, counted by the target's own tokenizer
(or by whitespace words, offline). Prompts are runs of common English words that the
tokenizer keeps as one token each when written after a space, so a prompt of k words
is k tokens plus what the server adds around every prompt (BOS, the chat template),
measured once; each prompt is then counted as a whole and corrected until the count
is exact. The seed decides every length, word and prefix, so every worker makes the
same rows.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

from llmscen.compile.plan import SyntheticPlan, TracePlan
from llmscen.errors import RunError

Count = Callable[[str], Awaitable[int]]

# Candidates; those the tokenizer splits into several tokens are dropped.
WORDS = (
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be",
    "by", "this", "are", "or", "from", "at", "an", "which", "have", "not", "but", "all", "can",
    "they", "one", "were", "there", "their", "has", "more", "when", "will", "would", "other",
    "about", "into", "time", "first", "last", "next", "every", "each", "many", "few", "some",
    "most", "long", "short", "data", "value", "result", "system", "day", "year", "people",
    "way", "work", "world", "life", "hand", "part", "place", "case", "week", "number", "group",
    "point", "house", "water", "room", "book", "eye", "job", "word", "side", "kind", "head",
    "light", "city", "team", "line", "end", "name", "good", "new", "old", "great", "high",
    "small", "large", "big", "young", "right", "early", "late", "open", "red", "blue", "green",
)
_TRIES = 8


class SynthesisError(RunError):
    """The prompts cannot be made as asked (the tokenizer is missing or disagrees)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "target_not_ready")


def draw(length: Any, rng: random.Random) -> int:
    """One length of a `spec.models.LengthSpec`."""
    if length.value is not None:
        return int(length.value)
    low = length.min if length.min is not None else 1
    high = length.max
    if length.mean is not None:
        value = round(rng.gauss(length.mean, length.stdev or 0.0))
        return max(low, value if high is None else min(high, value))
    return rng.randint(low, high)


def words_count(text: str) -> int:
    """`tokenizer: words`: whitespace-separated words, as openai-sim counts a prompt."""
    return len(text.split())


async def _vocabulary(count: Count, overhead: int) -> list[str]:
    """The words that are one token alone and one token after a space."""
    vocab = []
    for word in WORDS:
        if await count(word) - overhead == 1 and await count(f"the {word}") - overhead == 2:
            vocab.append(word)
    if len(vocab) < 8:
        raise SynthesisError(f"the tokenizer keeps only {len(vocab)} of {len(WORDS)} common "
                             "words as one token each; synthetic prompts need at least 8")
    return vocab


async def _exact(body: list[str], keep: int, wanted: int, count: Count, rng: random.Random,
                 vocab: list[str], name: str) -> str:
    """`body` counted whole and corrected until it is `wanted` tokens: words cut from its
    end (never its first `keep`) or added."""
    for _ in range(_TRIES):
        got = await count(" ".join(body))
        if got == wanted:
            return " ".join(body)
        if got > wanted and len(body) - (got - wanted) > keep:
            del body[len(body) - (got - wanted):]
        else:
            body += [rng.choice(vocab) for _ in range(max(wanted - got, 1))]
    raise SynthesisError(f"data {name!r}: could not make a prompt of exactly {wanted} "
                         f"tokens (the tokenizer counted {got})")


def _room(name: str, wanted: int, overhead: int, head: int) -> int:
    """Words a prompt of `wanted` tokens holds beyond what the server adds around it."""
    words = wanted - overhead
    if words <= head:
        raise SynthesisError(
            f"data {name!r}: a prompt of {wanted} tokens has no room for its text: the "
            f"server adds {overhead} tokens around every prompt" +
            (f" and the prefix takes {head}" if head else ""))
    return words


async def synthesize(plan: SyntheticPlan, rows: int, count: Count, name: str) -> list[dict[str, Any]]:
    """`rows` prompts with their exact `input_tokens`, drawn `output_tokens` and `prefix`
    (the shared prefix's index, or -1)."""
    overhead = await count("the") - 1   # what the server adds around any prompt
    vocab = await _vocabulary(count, overhead)
    rng = random.Random(plan.seed)
    prefixes = [[rng.choice(vocab) for _ in range(plan.prefix_tokens)]
                for _ in range(plan.prefix_count if plan.prefix_tokens else 0)]
    out = []
    for _ in range(rows):
        wanted = draw(plan.input_tokens, rng)
        prefix = rng.randrange(len(prefixes)) if prefixes and \
            rng.random() < plan.prefix_share else -1
        head = prefixes[prefix] if prefix >= 0 else []
        words = _room(name, wanted, overhead, len(head))
        body = head + [rng.choice(vocab) for _ in range(words - len(head))]
        prompt = await _exact(body, len(head), wanted, count, rng, vocab, name)
        output = draw(plan.output_tokens, rng) if plan.output_tokens is not None else None
        out.append({"prompt": prompt, "input_tokens": wanted,
                    "output_tokens": output, "prefix": prefix})
    return out


async def synthesize_trace(plan: TracePlan, arrivals: list[dict[str, Any]], count: Count,
                           name: str) -> list[dict[str, Any]]:
    """A prompt of exactly `input_length` tokens per arrival of a trace. Hash id h stands for
    one block of `block_tokens` words, the same in every prompt that has it (drawn from the
    seed and h), so requests sharing hash ids share those blocks, in order, as a prefix; the
    last block is cut to the prompt's length, and a prompt longer than its blocks goes on with
    words of its own."""
    overhead = await count("the") - 1
    vocab = await _vocabulary(count, overhead)
    blocks: dict[int, list[str]] = {}

    def block(h: int) -> list[str]:
        words = blocks.get(h)
        if words is None:
            rng = random.Random(f"{plan.seed}/{h}")
            words = blocks[h] = [rng.choice(vocab) for _ in range(plan.block_tokens)]
        return words

    out = []
    for index, arrival in enumerate(arrivals):
        wanted = arrival["input_length"]
        words = _room(name, wanted, overhead, 0)
        body: list[str] = []
        for h in arrival["hash_ids"]:
            if len(body) >= words:
                break
            body += block(h)
        del body[words:]
        rng = random.Random(f"{plan.seed}/row/{index}")
        body += [rng.choice(vocab) for _ in range(words - len(body))]
        prompt = await _exact(body, 0, wanted, count, rng, vocab, name)
        out.append({"prompt": prompt, "input_tokens": wanted,
                    "output_tokens": arrival["output_length"], "hash_ids": arrival["hash_ids"],
                    "timestamp": arrival["timestamp"]})
    return out
