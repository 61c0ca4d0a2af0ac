"""The server's own token count of a prompt (`synthetic: {tokenizer: server}`).

vLLM and llama.cpp's server both answer `POST /tokenize` at the server root, with
different bodies: vLLM takes `prompt` (or chat `messages`) and answers `count`;
llama.cpp takes `content` and answers `tokens`, and templates a chat with
`POST /apply-template`. One request body serves both (each ignores the other's keys).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from llmscen.errors import RunError

_TIMEOUT = aiohttp.ClientTimeout(total=30)


class NoTokenizer(RunError):
    def __init__(self, message: str) -> None:
        super().__init__(message, "target_not_ready")


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any],
                who: str) -> tuple[int, Any]:
    try:
        async with session.post(url, data=orjson.dumps(body), timeout=_TIMEOUT) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise NoTokenizer(f"{who}: POST {url} failed: {type(exc).__name__}: {exc}") from None
    try:
        return status, orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return status, None


def _counted(body: Any) -> int | None:
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("count"), int):
        return int(body["count"])
    tokens = body.get("tokens")
    return len(tokens) if isinstance(tokens, list) and tokens else None


async def count_tokens(session: aiohttp.ClientSession, root: str, model: str, text: str,
                       chat: bool, who: str) -> int:
    """Tokens of `text` as a completions prompt, or as the one user message of a chat."""
    url = root + "/tokenize"
    if chat:
        messages = [{"role": "user", "content": text}]
        status, body = await _post(session, url, {"model": model, "messages": messages}, who)
        if status == 200 and isinstance(body, dict) and isinstance(body.get("count"), int):
            return int(body["count"])             # vLLM counts a chat itself
        status, body = await _post(session, root + "/apply-template",
                                   {"model": model, "messages": messages}, who)
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            raise NoTokenizer(f"{who}: the server neither counts chat messages at /tokenize "
                              f"nor templates them at /apply-template (HTTP {status}); count "
                              "prompts as `api: completions` or with `tokenizer: words`")
        text = body["prompt"]                     # llama.cpp: the templated prompt
    status, body = await _post(session, url, {
        "model": model, "prompt": text, "content": text, "add_special": True,
        "parse_special": True, "add_special_tokens": True}, who)
    counted = _counted(body) if status == 200 else None
    if counted is None:
        raise NoTokenizer(f"{who}: POST {url} gave no token count (HTTP {status}); "
                          "`tokenizer: server` needs a /tokenize endpoint (vLLM and llama.cpp's "
                          "server have one), else use `tokenizer: words`")
    return counted
