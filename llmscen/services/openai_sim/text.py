"""What openai-sim says: tokens of a text, pseudo-words, prompt text and embeddings.

Everything here is a pure function of its arguments (prompt text and seed), so a
run against the simulator is reproducible. Token boundaries follow GPT-2's
pre-tokenizer: a word or a run of digits or punctuation with at most one leading
space, and whitespace runs on their own, so joining the tokens gives back the
text exactly (newlines and indentation included).
"""

from __future__ import annotations

import array
import base64
import hashlib
import math
import random
import re
import sys
from collections.abc import Sequence
from typing import Any

import orjson

_TOKEN_RE = re.compile(r"'(?:[sdmt]|ll|ve|re)| ?[^\W\d]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+")

_WORDS = (
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be",
    "by", "this", "are", "or", "from", "at", "an", "which", "have", "not", "but", "all", "can",
    "they", "one", "were", "there", "their", "has", "more", "when", "will", "would", "other",
    "about", "into", "model", "token", "server", "request", "stream", "latency", "batch",
    "cache", "prompt", "output", "input", "queue", "engine", "kernel", "memory", "tensor",
    "layer", "weight", "sample", "decode", "prefill", "chunk", "reply", "time", "fast", "slow",
    "small", "large", "first", "last", "next", "every", "each", "many", "few", "some", "most",
    "long", "short", "data", "value", "result", "system", "signal", "window", "metric",
    "report", "check", "test", "load", "rate", "peak",
)
# Pseudo-text tokens: words with their leading space, plus a little punctuation.
_PSEUDO_TOKENS: tuple[str, ...] = (*(" " + w for w in _WORDS), ",", ",", ".", ".")
_ENCODED: dict[str, bytes] = {t: orjson.dumps(t) for t in (*_PSEUDO_TOKENS, *_WORDS)}


def split_tokens(text: str) -> list[str]:
    """Split `text` into tokens whose concatenation is `text`."""
    return _TOKEN_RE.findall(text)


def count_words(text: str) -> int:
    """The simulator's token count of a prompt: its whitespace-separated words."""
    return len(text.split())


def encode_tokens(tokens: Sequence[str]) -> list[bytes]:
    """Each token as a JSON string literal, ready to splice into a chunk."""
    cache = _ENCODED
    return [cache.get(t) or orjson.dumps(t) for t in tokens]


def prompt_rng(text: str, seed: int, salt: str = "") -> random.Random:
    """A generator seeded by the prompt and the seed (not by Python's salted `hash`)."""
    digest = hashlib.blake2b(f"{seed}\0{salt}\0".encode() + text.encode("utf-8", "surrogatepass"),
                             digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def pseudo_tokens(rng: random.Random, count: int, *, first: bool) -> list[str]:
    """`count` pseudo-word tokens; `first` drops the leading space of the opening one.

    Drawing k tokens and then m more gives the same tokens as drawing k + m, so a
    longer reply extends a shorter one.
    """
    if count <= 0:
        return []
    tokens = rng.choices(_PSEUDO_TOKENS, k=count)
    if first:
        tokens[0] = tokens[0].lstrip() or "The"
    return tokens


def content_text(content: Any) -> str:
    """The text of a chat message's `content`: a string, or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part.get("text", "") for part in content
                 if isinstance(part, dict) and isinstance(part.get("text", ""), str)]
        return "\n".join(parts)
    raise ValueError("a message's content must be a string or a list of parts")


def chat_prompt(messages: Any) -> tuple[str, str]:
    """(whole prompt text, last user message) of a chat request; ValueError when malformed."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    texts: list[str] = []
    last_user = ""
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError("each message must be an object with a 'role'")
        text = content_text(message.get("content"))
        texts.append(text)
        if message["role"] == "user":
            last_user = text
    return "\n".join(texts), last_user


def completion_prompt(prompt: Any) -> tuple[str, int]:
    """(prompt text, prompt token count) of a completions request; ValueError when malformed."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt, count_words(prompt)
    if isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool)
                                        for t in prompt):
        return " ".join(map(str, prompt)), len(prompt)
    raise ValueError("'prompt' must be a string or a list of token ids "
                     "(openai-sim answers one prompt per request)")


def embedding_inputs(value: Any) -> list[tuple[str, int]]:
    """(text, token count) of each input of an embeddings request."""
    if isinstance(value, str):
        return [(value, count_words(value))]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [(" ".join(map(str, value)), len(value))]
        out: list[tuple[str, int]] = []
        for item in value:
            if isinstance(item, str):
                out.append((item, count_words(item)))
            elif isinstance(item, list) and all(isinstance(v, int) for v in item):
                out.append((" ".join(map(str, item)), len(item)))
            else:
                raise ValueError("each input must be a string or a list of token ids")
        return out
    raise ValueError("'input' must be a string, a list of strings or a list of token ids")


def embedding(text: str, seed: int, dimensions: int) -> list[float]:
    """A deterministic unit vector for `text`."""
    rng = prompt_rng(text, seed, "embedding")
    gauss = rng.gauss
    vector = [gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(math.fsum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def embedding_base64(vector: list[float]) -> str:
    """OpenAI's `encoding_format: base64`: little-endian float32, base64-encoded."""
    packed = array.array("f", vector)
    if packed.itemsize != 4:  # pragma: no cover - every supported platform has 4-byte floats
        raise RuntimeError("float32 is not 4 bytes on this platform")
    if sys.byteorder != "little":  # pragma: no cover
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def hold_back_text(tokens: Sequence[str], rate: float, rng: random.Random) -> list[str]:
    """Tokens of which about `rate` carry no text, theirs moved on to the next token:
    the same reply and the same token count, as a detokenizer that waits for more bytes."""
    out = list(tokens)
    if rate <= 0:
        return out
    for i in range(len(out) - 1):
        if rng.random() < rate:
            out[i + 1] = out[i] + out[i + 1]
            out[i] = ""
    return out


def corrupt(tokens: list[str], running: int) -> None:
    """Replace one token of an answer in place, which one and by what chosen by `running`
    (the batch size), so the same request under a different load reads differently."""
    if not tokens:
        return
    at = running % len(tokens)
    word = _WORDS[(running * 31) % len(_WORDS)]
    if tokens[at].strip() == word:
        word = _WORDS[(running * 31 + 1) % len(_WORDS)]
    tokens[at] = word if at == 0 or not tokens[at].startswith(" ") else " " + word
