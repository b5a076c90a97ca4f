"""File checks shared by the loaders of :mod:`mmadapt.io` (private).

Every loader calls :func:`check_file` before its decoder sees the file, so the cheap, common file-system
failures read the same in every modality: ``"{path}: file not found"``, ``"{path}: permission denied"``,
``"{path}: cannot read file ({the OS's reason})"``, ``"{path}: is a directory, not a video file"``,
``"{path}: unsupported video extension '.txt', expected one of (...)"`` (only where the loader passes its
``extensions``) and ``"{path}: empty file (0 bytes)"``; all are :class:`~mmadapt.errors.DataError`.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmadapt.errors import DataError


def check_file(where: str, kind: str, extensions: tuple[str, ...] | None = None) -> None:
    """Raise a one-line :class:`DataError` if ``where`` is missing, unreadable, a directory or 0 bytes.

    ``kind`` names the file the loader expects (``"video"`` → ``"is a directory, not a video file"``).
    With ``extensions``, a suffix (compared lower-cased) outside them is refused too, after the directory
    check and before the size check.
    """
    try:
        size = os.stat(where).st_size
    except FileNotFoundError:
        raise DataError(f"{where}: file not found") from None
    except PermissionError:
        raise DataError(f"{where}: permission denied") from None
    except OSError as exc:
        raise DataError(f"{where}: cannot read file ({exc.strerror or one_line(exc)})") from None
    if Path(where).is_dir():
        article = "an" if kind[:1] in "aeiou" else "a"
        raise DataError(f"{where}: is a directory, not {article} {kind} file")
    if extensions is not None:
        suffix = Path(where).suffix.lower()
        if suffix not in extensions:
            raise DataError(
                f"{where}: unsupported {kind} extension {suffix or '(none)'!r}, expected one of {extensions}"
            )
    if size == 0:
        raise DataError(f"{where}: empty file (0 bytes)")


def one_line(exc: BaseException) -> str:
    """``exc``'s message with all white space (newlines included) folded to single spaces, so it fits in a
    one-line error; the exception's type name when it has no message."""
    return " ".join(str(exc).split()) or type(exc).__name__
