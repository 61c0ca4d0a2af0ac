"""Reading input files with bounds: regular files only, never more than a size.

A FIFO with no writer blocks `open()` forever and a device never ends, so the
file is opened without blocking and checked with `fstat` before anything is
read; at most `limit + 1` bytes are read whatever the size claims.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


class InputFileError(ValueError):
    """A file that cannot be used as input; the message says why (without the path)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def size_text(n: int) -> str:
    """`256 KiB`, `1.5 GiB`, `12 bytes`."""
    for unit, size in (("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def read_text(path: str | os.PathLike[str], limit: int, why_regular: str) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes.

    `why_regular` completes "... not a regular file: " for the user.
    """
    try:
        fd = os.open(Path(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise InputFileError(exc.strerror or str(exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
            raise InputFileError(f"it is {kind}, not a regular file: {why_regular}")
        if info.st_size > limit:
            raise InputFileError(f"it is {size_text(info.st_size)}, past the limit of "
                                 f"{size_text(limit)}", too_large=True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise InputFileError(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    if len(data) > limit:   # it grew after fstat
        raise InputFileError(f"it is larger than the limit of {size_text(limit)}",
                             too_large=True)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"it is not UTF-8 text (byte {exc.start})") from None
