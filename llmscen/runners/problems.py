"""What a runner says about a response it cannot accept: shared by the built-in runners and
offered to plugin authors through `llmscen.plugin`."""

from __future__ import annotations

EXCERPT = 200


class StreamProblem(Exception):
    """A response (or one event of a stream) the runner cannot accept; `error` is the
    `Exchange` error class it ends the call with (usually `protocol`)."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


def excerpt(raw: bytes | str, limit: int = EXCERPT) -> str:
    """The start of `raw` for a message, marked `…` when cut."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text if len(text) <= limit else text[:limit] + "…"
