"""Which values are credentials, so messages, reprs and plans never show them.

Names are matched loosely on purpose: blanking a harmless value costs nothing,
showing a token in a CI log costs a rotation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, PlainSerializer

# Header, JSON, form and query names whose values are never shown.
SECRET_NAME = re.compile(r"auth|token|key|secret|passw|cookie|session|credential", re.I)
MIN_SECRET = 4     # shorter values would blank out ordinary words in messages


def credential_parts(value: str) -> list[str]:
    """`Bearer abc` → [`Bearer abc`, `abc`], `a=1; b=2` → [..., `1`, `2`]: servers often
    echo only the credential."""
    parts = [value.strip()]
    scheme, _, credential = parts[0].partition(" ")
    if credential and scheme.isalpha():
        parts.append(credential.strip())
    parts += [pair.partition("=")[2].strip() for pair in value.split(";") if "=" in pair]
    return parts


def secret_values(value: Any, secret: bool = False) -> Iterator[str]:
    """String values under secret-looking keys (password, token, ...) at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from secret_values(item, secret or bool(SECRET_NAME.search(str(key))))
    elif isinstance(value, list):
        for item in value:
            yield from secret_values(item, secret)
    elif secret and value is not None and not isinstance(value, bool):
        yield str(value)


MASK = "**********"     # what pydantic shows for a SecretStr


def masked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """`headers` with the values of secret-looking names replaced by MASK."""
    return {k: MASK if SECRET_NAME.search(k) else v for k, v in headers.items()}


def scrub(message: str, secrets: set[str]) -> str:
    """`message` with every secret (long enough to be one) replaced by `***`."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_SECRET:
            message = message.replace(secret, "***")
    return message


class _Headers(dict[str, str]):
    """A header dict whose repr masks credentials (options are printed in errors)."""

    def __repr__(self) -> str:
        return repr(masked_headers(self))


# The type of a plugin's `headers` option: a token in `Authorization` never reaches a
# repr, `llmscen plan --json` or results.
Headers = Annotated[dict[str, str], AfterValidator(_Headers), PlainSerializer(masked_headers)]
