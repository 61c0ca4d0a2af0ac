"""Target URLs as a scenario or `--target NAME=URL` gives them: checked before traffic."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from llmscen.spec.diagnostics import Diagnostic, did_you_mean

# The schemes built-in plugins speak: their URLs are checked for a host and port. Another
# scheme is taken as a third-party plugin's own, unless it looks like a typo of these.
URL_SCHEMES = ("http", "https", "grpc", "grpcs")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")


def parse_target_args(items: Sequence[str]) -> tuple[dict[str, str], list[Diagnostic]]:
    """`--target NAME=URL` arguments → {name: url}, and the malformed ones."""
    out: dict[str, str] = {}
    problems = []
    for item in items:
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            problems.append(Diagnostic(f"--target {name or item}", 1, 1,
                                       "expected --target NAME=URL, e.g. "
                                       "--target chat=http://127.0.0.1:8000"))
        else:
            out[name] = url
    return out, problems


def url_problem(url: str) -> str | None:
    """What is wrong with a target URL's scheme, host or port, or None. The message never
    repeats the URL, which may hold credentials."""
    if not url.strip():
        return "the URL is empty"
    if any(c.isspace() for c in url):
        return "a URL cannot contain spaces"
    if "://" not in url:
        name, sep, port = url.rpartition(":")
        if sep and name and "/" not in name and port.isdigit():
            return _port_problem(port)   # HOST:PORT, as gRPC clients take it
        return "expected SCHEME://HOST[:PORT], e.g. http://127.0.0.1:8000 (or HOST:PORT for " \
               "gRPC)"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:   # unbalanced [ ] around an IPv6 address
        return "the URL's host is malformed; an IPv6 address goes in [ ], e.g. http://[::1]:8000"
    scheme = parts.scheme.lower()
    if scheme not in URL_SCHEMES:
        typo = did_you_mean(scheme, URL_SCHEMES)
        if typo or not _SCHEME.fullmatch(scheme):
            return f"unknown URL scheme {parts.scheme!r}{typo} (use {', '.join(URL_SCHEMES)})"
        return None   # a plugin's own scheme: the plugin knows what follows it
    if not host:
        return "the URL has no host, e.g. http://127.0.0.1:8000"
    hostport = parts.netloc.rpartition("@")[2]
    port = hostport.rpartition("]")[2] if hostport.startswith("[") else hostport
    return _port_problem(port.rpartition(":")[2]) if ":" in port else None


def _port_problem(port: str) -> str | None:
    if port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535:
        return None
    return f"port {port[:10]!r} is not a number from 1 to 65535"
