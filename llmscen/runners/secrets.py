"""Secrets helpers for runners, built-in and third-party: the policy is llmscen.spec.secrets.

- `Headers`, the type of a `headers` option: values under secret-looking names never reach
  a repr, `llmscen plan --json` or results, and are sent unchanged.
- `Scrubber`: `Scrubber.of(target)` hides every secret of a runner's TargetPlan (api keys,
  secret headers, URL userinfo and query secrets) and credential-shaped text in a message;
  `.with_secrets_of(call.payload)` adds a request's own headers and fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator, PlainSerializer

from llmscen.spec.secrets import HIDDEN, MASK, Scrubber, is_secret_name, masked

__all__ = ["HIDDEN", "MASK", "Headers", "Scrubber", "is_secret_name", "masked_headers"]


def masked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """`headers` with the values of secret-looking names replaced by HIDDEN."""
    hidden: dict[str, str] = masked(dict(headers))
    return hidden


class _Headers(dict[str, str]):
    """A header dict whose repr masks credentials (options are printed in errors)."""

    def __repr__(self) -> str:
        return repr(masked_headers(self))


Headers = Annotated[dict[str, str], AfterValidator(_Headers), PlainSerializer(masked_headers)]
