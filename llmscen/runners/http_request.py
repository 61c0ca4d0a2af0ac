"""Building the `http` plugin's requests: method and body, cookies, redirect hops."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
from yarl import URL

METHODS: tuple[str, ...] = ("get", "post", "put", "patch", "delete", "head", "options")


def method_of(payload: dict[str, Any]) -> tuple[str, str]:
    """(HTTP method, path) of a validated step payload."""
    for method in METHODS:
        path = payload.get(method)
        if path is not None:
            return method.upper(), str(path)
    raise ValueError(f"a step takes exactly one method key: {', '.join(METHODS)}")


def as_text(value: Any) -> str:
    """A rendered value where HTTP takes text; `{{ seq }}` renders a number, `true` stays
    lowercase, lists and objects are JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode()
    return "" if value is None else str(value)


def text_headers(headers: Any) -> dict[str, str]:
    """Header values as text (a header that is one template expression may be a number)."""
    return {str(k): as_text(v) for k, v in (headers or {}).items()}


def param_pairs(params: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Query or form pairs; a list repeats its key, `true`/`false` stay lowercase."""
    for key, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            yield key, as_text(item)


def encode_body(payload: dict[str, Any]) -> tuple[dict[str, str], bytes | None]:
    """The step's headers (with a content type for its body) and body bytes."""
    headers = text_headers(payload.get("headers"))
    has_type = any(k.lower() == "content-type" for k in headers)
    if "json" in payload:
        data = orjson.dumps(payload["json"])
        content_type = "application/json"
    elif payload.get("form") is not None:
        data = urlencode(list(param_pairs(payload["form"]))).encode()
        content_type = "application/x-www-form-urlencoded"
    elif payload.get("body") is not None:
        data = as_text(payload["body"]).encode()
        content_type = "text/plain; charset=utf-8"
    else:
        return headers, None
    if not has_type:
        headers["Content-Type"] = content_type
    return headers, data


def with_cookies(headers: dict[str, str], jar: aiohttp.CookieJar, url: URL) -> dict[str, str]:
    """`headers` plus the jar's cookies for `url` (after any Cookie header the step gives)."""
    found = jar.filter_cookies(url)
    if not found:
        return headers
    cookies = "; ".join(f"{m.key}={m.coded_value}" for m in found.values())
    out = dict(headers)
    for name in headers:
        if name.lower() == "cookie":
            out[name] = f"{headers[name]}; {cookies}"
            return out
    out["Cookie"] = cookies
    return out


def redirected(method: str, data: bytes | None, headers: dict[str, str], status: int,
               old: URL, new: URL) -> tuple[str, bytes | None, dict[str, str]]:
    """What the next hop sends: 303 (and 301/302 after a POST) become a GET without body."""
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, data = "GET", None
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    if old.origin() != new.origin():
        # like browsers and requests: credentials are for the origin they were given to
        headers = {k: v for k, v in headers.items()
                   if k.lower() not in ("authorization", "cookie", "proxy-authorization")}
    return method, data, headers


def lowered(items: Any) -> dict[str, str]:
    """Response headers with lowercased names; repeated headers joined with ', '."""
    out: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out
