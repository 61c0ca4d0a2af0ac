"""Server-sent events, parsed at the bytes level.

`SSEParser.feed` takes whatever one socket read produced and returns the
`data` of every event that the read completed. It never decodes text or JSON:
the caller decodes each event once. Splitting the stream at any byte boundary
gives the same events (tests/test_sse.py checks this with hypothesis).

Follows the WHATWG event-stream rules where they matter to LLM servers: lines
end in LF, CRLF or CR; a blank line ends an event; `:` lines are comments;
several `data:` lines join with LF; one space after the colon is dropped;
`event`, `id` and `retry` fields are ignored (OpenAI-style servers put
everything in `data`).
"""

from __future__ import annotations

import re

_EMPTY: list[bytes] = []
_SIMPLE_EVENT = re.compile(rb"data: ([^\n]*)\n\n")


class SSEParser:
    """Incremental event splitter; one per response."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        # Bytes after the last blank line, line endings already normalised to LF;
        # may end with a lone CR that could be the first half of a CRLF.
        self._pending = b""

    @property
    def between_events(self) -> bool:
        """Nothing of an unfinished event is held: the next byte starts a new event."""
        return not self._pending

    def feed(self, chunk: bytes) -> list[bytes]:
        """The `data` of each event completed by `chunk`, in order (do not mutate the result)."""
        if not self._pending and chunk[:6] == b"data: " and chunk.find(b"\n") == len(chunk) - 2 \
                and chunk[-1:] == b"\n" and b"\r" not in chunk:
            return [chunk[6:-2]]    # a paced server's read: exactly one one-line event
        data = self._pending + chunk if self._pending else chunk
        held = b""
        if b"\r" in data:
            if data[-1] == 13:           # a CR now and an LF in the next read are one line end
                data = data[:-1]
                held = b"\r"
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        cut = data.rfind(b"\n\n") + 2
        if cut == 1:
            self._pending = data + held if held else data
            return _EMPTY
        if cut == len(data):
            complete = data
            self._pending = held
        else:
            complete = data[:cut]
            self._pending = data[cut:] + held if held else data[cut:]
        # The common case: nothing but one-line `data: ` events. The matches tile
        # `complete` exactly only then; anything else takes the general path.
        found = _SIMPLE_EVENT.findall(complete)
        if sum(map(len, found)) + 8 * len(found) == len(complete):
            return found
        events = []
        for block in complete.split(b"\n\n"):
            value = event_data(block)
            if value is not None:
                events.append(value)
        return events

    def close(self) -> list[bytes]:
        """Events left when the stream ends.

        The standard drops an event that no blank line closed; we keep it when
        its last line is complete (some servers omit the final blank line) and
        drop it when a line is cut, so a truncated JSON event never reaches the
        caller.
        """
        pending, self._pending = self._pending, b""
        if not pending.endswith((b"\n", b"\r")):
            return []
        value = event_data(pending.rstrip(b"\r\n"))
        return [] if value is None else [value]


def event_data(block: bytes) -> bytes | None:
    """The joined `data` lines of one event block (LF-separated), or None without any."""
    lines: list[bytes] | None = None
    for line in block.split(b"\n"):
        if not line or line[0] == 58:    # blank or `:` comment
            continue
        name, _, value = line.partition(b":")
        if name != b"data":
            continue
        if value[:1] == b" ":
            value = value[1:]
        if lines is None:
            lines = [value]
        else:
            lines.append(value)
    if lines is None:
        return None
    return lines[0] if len(lines) == 1 else b"\n".join(lines)
