"""Multi-turn chat sessions (`turns:`) for the OpenAI-style plugins.

The history is the list of chat messages of the earlier turns: turn 1's messages as
rendered (system prompt included) and its answer, then each later turn's messages
without system or developer messages (they were said once, in turn 1) and its
answer. A turn's request is that history followed by its own messages.
"""

from __future__ import annotations

from typing import Any

from llmscen.engine.protocol import Session

_ONCE = ("system", "developer")   # said in turn 1, not repeated by later turns


def session_problem(api: str, body: Any) -> str | None:
    """Why a request with this API and body cannot be a session; None when it can."""
    if api != "chat":
        return f"`turns:` needs the chat API, and this request uses {api!r}"
    if not isinstance(body, dict) or "messages" not in body:
        return "`turns:` needs `body.messages`: the user's message of each turn"
    return None


def _own_messages(session: Session, payload: dict[str, Any]) -> list[Any]:
    body = payload.get("body")
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return []
    if session.turn == 1:
        return messages
    return [m for m in messages if not (isinstance(m, dict) and m.get("role") in _ONCE)]


def with_history(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload of this turn: the history before its own messages, and the session
    header when one is asked for."""
    out = dict(payload)
    body = payload.get("body")
    if session.history and isinstance(body, dict):
        out["body"] = {**body, "messages": [*session.history,
                                            *_own_messages(session, payload)]}
    if session.header:
        out["headers"] = {**(payload.get("headers") or {}), session.header: session.id}
    return out


def remember_turn(session: Session, payload: dict[str, Any], answer: str) -> None:
    """After a successful turn: its messages and the answer join the history."""
    session.history.extend(_own_messages(session, payload))
    session.history.append({"role": "assistant", "content": answer})
