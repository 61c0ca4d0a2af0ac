"""openai-sim's check of multi-turn history (`check_history`).

The simulator remembers a digest of every chat answer it gave. A chat request's
assistant messages must each be one of them, so a client that claims to carry a
session's earlier answers provably does, verbatim; the number of earlier answers
a request carries is counted for `/metrics` and sent back in a header.
"""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict
from typing import Any

from llmscen.services.openai_sim.text import content_text

HEADER = "X-Sim-History-Answers"
_KEEP = 200_000   # answers remembered; the oldest are forgotten first


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class History:
    """The answers given, and requests counted by how many earlier answers they carried."""

    def __init__(self) -> None:
        self._given: OrderedDict[bytes, None] = OrderedDict()
        self.carried: Counter[int] = Counter()

    def remember(self, answer: str) -> None:
        key = _digest(answer)
        self._given[key] = None
        self._given.move_to_end(key)
        while len(self._given) > _KEEP:
            self._given.popitem(last=False)

    def check(self, messages: list[Any]) -> tuple[int, str | None]:
        """(earlier answers carried, the first problem or None): every assistant message
        must be an answer this simulator gave, each after a user message."""
        answers = 0
        previous = None
        for index, message in enumerate(messages):
            role = message.get("role")
            if role == "assistant":
                if previous != "user":
                    return answers, (f"messages[{index}]: an assistant message must follow a "
                                     f"user message, not {previous or 'nothing'!s}")
                if _digest(content_text(message.get("content"))) not in self._given:
                    return answers, (f"messages[{index}]: this assistant message is not an "
                                     "answer openai-sim gave (check_history)")
                answers += 1
            previous = role
        if previous != "user":
            return answers, "the last message must be the user's (check_history)"
        return answers, None
