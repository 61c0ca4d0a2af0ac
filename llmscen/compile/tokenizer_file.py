"""A tokenizer file counted offline (`synthetic: {tokenizer: FILE}`).

A Hugging Face `tokenizer.json` (what `tokenizers` and `transformers` save beside a
model) read with the `tokenizers` package, an optional extra: the compiler loads it
once to report a missing package or a bad file with the scenario's other errors, and
each worker loads it again to count its prompts. A prompt is counted as the tokenizer
encodes it with its special tokens (a BOS its post-processor adds); a chat template is
not part of a tokenizer.json, so its tokens are not counted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

EXTRA = "pip install 'llmscen[tokenizer]' (the `tokenizers` package)"


class TokenizerFileError(ValueError):
    """The tokenizer file cannot be read: the package is missing or the file is not one."""


def load_tokenizer(path: str | Path) -> Any:
    """The `tokenizers.Tokenizer` saved in `path`."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise TokenizerFileError(f"reading tokenizer file {str(path)!r} needs the "
                                 f"`tokenizers` package: {EXTRA}") from None
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:   # the Rust side raises its own exception type
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TokenizerFileError(f"{str(path)!r} is not a tokenizer file that `tokenizers` "
                                 f"reads (a Hugging Face tokenizer.json): {first}") from None


def file_counter(path: str | Path) -> Callable[[str], int]:
    """How many tokens the tokenizer in `path` makes of a text, special tokens included."""
    tokenizer = load_tokenizer(path)

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=True).ids)
    return count
