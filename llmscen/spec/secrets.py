"""Which values are secret, and the one `Scrubber` that hides them in everything llmscen writes.

Secret are values under secret-looking names (options, headers, JSON/form/query keys,
`--set` paths, command-line options: anything named like a key, token, secret, password,
cookie, credential or auth), values of secret-named `${VARS}` (the loader records them),
pydantic `SecretStr` fields, the userinfo and secret query values of URLs, and text
shaped like a credential (`Bearer …`, `sk-…`, JWTs, a value after a secret-looking key).
Names are matched loosely on purpose: blanking a harmless value costs nothing, showing a
token in a CI log costs a rotation. docs/secrets.md is the user's version of this.

A `Scrubber` knows the concrete values (collected once per plan by `secret_values`, kept
in `Plan.secrets`) and replaces them, in the forms a server may echo them
(percent-encoded, JSON-escaped, base64 in Basic auth), and the shapes, with `MASK`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

from pydantic import BaseModel, SecretBytes, SecretStr

MASK = "***"              # what replaces a secret in text
HIDDEN = "**********"     # what replaces a secret value in dumped data (as pydantic's SecretStr)
MIN_SECRET = 4            # shorter values would blank out ordinary words in messages
NOT_CREDENTIALS = frozenset({"capture", "expect"})   # scenario keys holding expressions
# placeholders servers take for "no key" (`api_key: EMPTY` for vLLM): masking them would
# blank ordinary words everywhere
PLACEHOLDERS = frozenset({"none", "null", "empty", "dummy", "true", "false", "test"})

# -- names -------------------------------------------------------------------------------

# secret wherever the word appears in a name: `db_password`, `Proxy-Authorization`
_ANYWHERE = frozenset({
    "auth", "authn", "authz", "authorization", "authentication", "password", "passwd",
    "passphrase", "pwd", "secret", "secrets", "cookie", "cookies", "credential", "credentials",
    "apikey", "jwt", "bearer"})
# secret as the last word only: `access_token`, `X-Api-Key`, `sig`; not `token_ids`, `key_id`
_LAST = frozenset({"token", "key", "sig", "signature"})
_COMPOUND = ("token", "key", "secret", "password", "passwd", "cookie")   # accesstoken, apikey
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")


@functools.lru_cache(maxsize=4096)     # names repeat: headers, option and field names
def is_secret_name(name: str) -> bool:
    """A header, option, field or path name whose values are secret (`Authorization`,
    `X-Api-Key`, `api_key`, `accessToken`, `targets.x.headers.Cookie`, `--hf-token`)."""
    words = [w.lower() for w in _NOT_ALNUM.split(_CAMEL.sub("_", name)) if w]
    while words and words[-1].isdigit():    # api_key_2
        words.pop()
    if not words:
        return False
    last = words[-1]
    return any(w in _ANYWHERE for w in words) or last in _LAST or last.endswith(_COMPOUND)


# -- values ------------------------------------------------------------------------------


def credential_parts(value: str) -> list[str]:
    """`Bearer abc` → [`Bearer abc`, `abc`], `a=1; b=2` → [..., `1`, `2`]: servers often
    echo only the credential. A Basic credential also yields its decoded `user:password`."""
    value = value.strip()
    parts = [value]
    scheme, _, credential = value.partition(" ")
    credential = credential.strip()
    if credential and scheme.isalpha():
        parts.append(credential)
        if scheme.lower() == "basic":
            decoded = _b64decode(credential)
            if decoded:
                parts += [decoded, decoded.partition(":")[2]]
    parts += [pair.partition("=")[2].strip() for pair in value.split(";") if "=" in pair]
    return parts


def url_secrets(url: str) -> list[str]:
    """The userinfo (user, password, both, and the Basic credential made of them) and the
    values of secret-looking query keys of `url`."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return []
    found: list[str] = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        user, _, password = userinfo.partition(":")
        plain = f"{unquote(user)}:{unquote(password)}"
        found += [userinfo, user, password, unquote(user), unquote(password), plain,
                  base64.b64encode(plain.encode()).decode()]
    for key, value in _query_pairs(parts.query):
        if is_secret_name(unquote(key)):
            found += [value, unquote(value.replace("+", " "))]
    return found


def _query_pairs(query: str) -> Iterator[tuple[str, str]]:
    for pair in query.split("&"):
        key, sep, value = pair.partition("=")
        if sep:
            yield key, value


def public_url(url: str | None) -> str | None:
    """`url` without `user:password@` and with the values of secret-looking query keys
    replaced by MASK; the rest of the query is kept as written."""
    if not url or "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(
        f"{key}={MASK}" if sep and is_secret_name(unquote(key)) else f"{key}{sep}{value}"
        for key, sep, value in (pair.partition("=") for pair in parts.query.split("&")))
    return urlunsplit((parts.scheme, netloc, parts.path, query if parts.query else "",
                       parts.fragment))


def secret_values(*sources: Any) -> frozenset[str]:
    """Every concrete secret in `sources`: plain data (a loaded scenario), pydantic models
    (a plan, a target and its options) or strings, walked at any depth."""
    found: set[str] = set()
    for source in sources:
        _collect(source, False, found, 0)
    return frozenset(found)


def _collect(value: Any, secret: bool, found: set[str], depth: int) -> None:
    # the most common kinds first: runners walk each failed call's payload
    if isinstance(value, str):
        if secret and not _is_template(value):
            found.update(credential_parts(value))
        if "://" in value:
            found.update(url_secrets(value))
    elif depth > 50 or value is None or isinstance(value, (bool, int, float)):
        return
    elif isinstance(value, (dict, Mapping)):
        for key, item in value.items():
            name = str(key)
            if name in NOT_CREDENTIALS:
                continue
            if name == "command":
                found.update(argv_secrets(item))
            _collect(item, secret or is_secret_name(name), found, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _collect(item, secret, found, depth + 1)
    elif isinstance(value, (SecretStr, SecretBytes)):
        raw = value.get_secret_value()
        found.add(raw.decode(errors="replace") if isinstance(raw, bytes) else raw)
    elif isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            named = secret or is_secret_name(name) or is_secret_name(field.alias or "")
            if name not in NOT_CREDENTIALS:
                _collect(getattr(value, name, None), named, found, depth + 1)


def _is_template(text: str) -> bool:
    """A value rendered per request: its rendered form is the runner's to scrub."""
    return "{{" in text or "{%" in text


def argv_secrets(command: Any) -> list[str]:
    """Values of secret-named options in a command line: `--api-key X`, `--token=X`."""
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError:
            argv = command.split()
    elif isinstance(command, (list, tuple)):
        argv = [str(a) for a in command]
    else:
        return []
    found = []
    for i, arg in enumerate(argv):
        name, sep, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and is_secret_name(name):
            if sep:
                found.append(value)
            elif i + 1 < len(argv):
                found.append(argv[i + 1])
    return found


# -- hiding ------------------------------------------------------------------------------


def masked(data: Any, secret: bool = False) -> Any:
    """JSON-like `data` with string values under secret-looking keys replaced by HIDDEN
    (for dumps: `llmscen plan --json`, header options)."""
    if isinstance(data, Mapping):
        return {k: v if str(k) in NOT_CREDENTIALS else masked(v, secret or is_secret_name(str(k)))
                for k, v in data.items()}
    if isinstance(data, list):
        return [masked(v, secret) for v in data]
    if secret and isinstance(data, str) and data:
        return HIDDEN
    return data


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line as it may be saved: values of secret-named options (`--api-key X`,
    `--token=X`) and of `--set` paths (`targets.x.headers.Cookie=...`) masked, URLs public."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        if arg.startswith("-"):
            name, sep, value = arg.lstrip("-").partition("=")
            if is_secret_name(name):
                hide_next = not sep
                arg = arg.partition("=")[0] + (f"={MASK}" if sep else "")
            elif sep:
                arg = f"{arg.partition('=')[0]}={_redact_assignment(value)}"
        elif "=" in arg:
            arg = _redact_assignment(arg)
        out.append(arg)
    return out


def _redact_assignment(item: str) -> str:
    """`PATH=VALUE` (a `--set` or `--target` value) with VALUE masked when PATH is
    secret-looking and made public when it is a URL."""
    path, sep, value = item.partition("=")
    if not sep:
        return public_url(item) or item
    if any(is_secret_name(part) for part in path.split(".")):
        return f"{path}={MASK}"
    return f"{path}={public_url(value)}"


def _b64decode(text: str) -> str:
    try:
        decoded = base64.b64decode(text, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""
    return decoded if decoded.isprintable() else ""


def _forms(value: str) -> set[str]:
    """`value` as a server may echo it: plain, percent-encoded, JSON-escaped."""
    return {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1],
            json.dumps(value, ensure_ascii=False)[1:-1]}


_NAME_VALUE = re.compile(
    # (?=(?P<name>…))(?P=name) matches the name atomically: no backtracking into it
    r"""(?<![\w.-])(?=(?P<name>[A-Za-z_][\w.-]*))(?P=name)\\?["']?(?P<sep>[ \t]*[:=][ \t]*)"""
    r"""(?:(?P<q>\\?["'])(?P<quoted>[^\n]{1,2000}?)(?P=q)"""
    r"""|(?P<bare>(?:(?i:bearer|basic|token|digest)[ \t]+)?[^\s"',;&}<>\\]+))""")
_SCHEME_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)([ \t]+)([A-Za-z0-9._~+/-]+=*)")
_SHAPES = re.compile(
    r"\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{4,}"             # JWTs
    r"|\bsk[-_][A-Za-z0-9_-]{16,}"                      # OpenAI, Anthropic, Stripe keys
    r"|\bhf_[A-Za-z0-9]{20,}"                           # Hugging Face tokens
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}|\bglpat-[\w-]{20,}"  # GitHub, GitLab tokens
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"                  # Slack tokens
    r"|\bAKIA[0-9A-Z]{16}\b")                           # AWS access key ids
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@?#'\"<>]+@")
# every secret-looking name and credential scheme holds one of these: text without any
# (most messages) skips the costlier patterns
_HINTS = ("auth", "passw", "pwd", "passphrase", "secret", "cookie", "credential", "key",
          "token", "sig", "jwt", "bearer", "basic")


def _name_value(m: re.Match[str]) -> str:
    value = m.group("quoted") if m.group("q") else m.group("bare")
    if (not is_secret_name(m.group("name")) or len(value) < MIN_SECRET
            or set(value) <= {"*"}):
        return m.group(0)
    start, end = m.span("quoted" if m.group("q") else "bare")
    offset = m.start()
    text = m.group(0)
    return text[:start - offset] + MASK + text[end - offset:]


def _scheme_credential(m: re.Match[str]) -> str:
    scheme, space, credential = m.groups()
    # a Basic credential is base64 of `user:password`; "Basic understanding" is not one
    hidden = ":" in _b64decode(credential) if scheme.lower() == "basic" else len(credential) >= 8
    return f"{scheme}{space}{MASK}" if hidden else m.group(0)


class Scrubber:
    """Replaces known secret values and credential-shaped text with MASK.

    Build one per run from the plan (`Plan.scrubber()`), or per runner from its target
    (`Scrubber.of(target)`); `with_secrets_of(payload)` adds a request's own. Pickles.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        kept = {part for v in values for part in credential_parts(v)
                if len(part) >= MIN_SECRET and not set(part) <= {"*"}
                and part.lower() not in PLACEHOLDERS}
        self.values = frozenset(kept)
        forms = {f for v in kept for f in _forms(v) if len(f) >= MIN_SECRET}
        self._exact = (re.compile("|".join(map(re.escape, sorted(forms, key=len, reverse=True))))
                       if forms else None)
        self._extended: dict[frozenset[str], Scrubber] = {}
        self._sources: dict[int, tuple[Any, Scrubber]] = {}

    @classmethod
    def of(cls, *sources: Any) -> Scrubber:
        """A scrubber of every secret in `sources` (see `secret_values`)."""
        return cls(secret_values(*sources))

    def with_secrets_of(self, source: Any) -> Scrubber:
        """This scrubber plus the secrets of `source` (itself when it holds no new one)."""
        seen = self._sources.get(id(source))
        if seen is not None and seen[0] is source:   # a payload without templates is
            return seen[1]                           # the same object call after call
        scrubber = self.extended(secret_values(source))
        if len(self._sources) >= 64:
            self._sources.clear()
        self._sources[id(source)] = (source, scrubber)
        return scrubber

    def extended(self, values: Iterable[str]) -> Scrubber:
        """This scrubber plus `values` (itself when they add nothing)."""
        more = frozenset(values) - self.values
        if not more:
            return self
        known = self._extended.get(more)
        if known is None:   # a runner extends by the same request secrets call after call
            if len(self._extended) >= 64:
                self._extended.clear()
            known = self._extended[more] = Scrubber(self.values | more)
        return known

    def __call__(self, text: str) -> str:
        if not text:
            return text
        if self._exact is not None:
            text = self._exact.sub(MASK, text)
        if "@" in text and "://" in text:
            text = _USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)
        lowered = text.lower()
        if any(hint in lowered for hint in _HINTS):
            text = _NAME_VALUE.sub(_name_value, text)
            text = _SCHEME_CREDENTIAL.sub(_scheme_credential, text)
        return _SHAPES.sub(MASK, text)

    def data(self, value: Any) -> Any:
        """JSON-like `value` with every string in it scrubbed."""
        if isinstance(value, Mapping):
            return {k: self.data(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.data(v) for v in value]
        return self(value) if isinstance(value, str) else value

    def __repr__(self) -> str:
        return f"Scrubber({len(self.values)} secrets)"   # never the values

    def __reduce__(self) -> tuple[type[Scrubber], tuple[frozenset[str]]]:
        return Scrubber, (self.values,)     # rebuilt in the worker; caches stay behind

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Scrubber) and other.values == self.values

    def __hash__(self) -> int:
        return hash(self.values)
