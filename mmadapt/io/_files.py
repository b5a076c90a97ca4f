"""File checks shared by the loaders of :mod:`mmadapt.io` (private).

Every loader calls :func:`check_file` before its decoder sees the file, so the cheap, common file-system
failures read the same in every modality: ``"{path}: file not found"``, ``"{path}: permission denied"``,
``"{path}: cannot read file ({the OS's reason})"``, ``"{path}: is a directory, not a video file"``,
``"{path}: unsupported video extension '.txt', expected one of (...)"`` (only where the loader passes its
``extensions``) and ``"{path}: empty file (0 bytes)"``; all are :class:`~mmadapt.errors.DataError`. A member
of a WebDataset shard (:class:`~mmadapt.io.shard_member.ShardMember`) gets the checks that apply to it, the
extension and the size, named ``"shard.tar:member"``.

Every loader that joins a data root with a name read from a file (an annotation's ``file_name``, a manifest's
``path``, a video id filled into a template) goes through :func:`resolve_inside`, so such a name can never
reach a file outside the root: not by ``..``, not as an absolute path, not through a symlink.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmadapt.errors import DataError
from mmadapt.io.shard_member import MediaBlob, MediaSource, source_name


def check_file(where: str | MediaBlob, kind: str, extensions: tuple[str, ...] | None = None) -> None:
    """Raise a one-line :class:`DataError` if ``where`` is missing, unreadable, a directory or 0 bytes.

    ``kind`` names the file the loader expects (``"video"`` → ``"is a directory, not a video file"``).
    With ``extensions``, a suffix (compared lower-cased) outside them is refused too, after the directory
    check and before the size check. A shard member gets the extension and size checks.
    """
    if isinstance(where, MediaBlob):
        _check_extension(str(where), where.suffix, kind, extensions)
        if where.size == 0:
            raise DataError(f"{where}: empty file (0 bytes)")
        return
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
    _check_extension(where, Path(where).suffix, kind, extensions)
    if size == 0:
        raise DataError(f"{where}: empty file (0 bytes)")


def check_media(source: MediaSource, kind: str, extensions: tuple[str, ...] | None = None) -> str:
    """:func:`check_file` of a path or a shard member; returns how messages name it (``source_name``)."""
    check_file(source if isinstance(source, MediaBlob) else os.fspath(source), kind, extensions)
    return source_name(source)


def _check_extension(where: str, suffix: str, kind: str, extensions: tuple[str, ...] | None) -> None:
    suffix = suffix.lower()
    if extensions is not None and suffix not in extensions:
        raise DataError(f"{where}: unsupported {kind} extension {suffix or '(none)'!r}, expected one of {extensions}")


def resolve_inside(root: str | os.PathLike[str], name: object, source: str) -> Path:
    """``root / name``, refused unless it stays inside ``root`` once ``..`` and symlinks are resolved.

    ``name`` comes from a data file (``source`` says where: ``"val.jsonl:12: path"``): a path string, relative
    to ``root`` (an absolute one is accepted only if it lies inside ``root``). Returns the joined path as given
    (not resolved), so messages and results show the user's paths. The file need not exist (a missing file is
    the caller's error, reported later).

    Raises:
        DataError: ``"{source}: '../x.jpg' points outside the data root {root} (...)"`` for an absolute path
            outside it, a path that climbs out with ``..``, or one that leads out through a symlink inside the
            root; ``"{source}: expected a path string, got int (3)"`` for a name that is not a string.
    """
    if not isinstance(name, str):
        raise DataError(f"{source}: expected a path string, got {type(name).__name__} ({name!r})")
    if "\0" in name:
        raise DataError(f"{source}: {name!r}: a path cannot hold a NUL byte")
    base = Path(root)
    joined = base / name  # an absolute name replaces the root
    real_root, real = os.path.realpath(base), os.path.realpath(joined)
    if os.path.commonpath([real_root, real]) != real_root:
        if os.path.isabs(name):
            how = "an absolute path"
        elif real == os.path.normpath(os.path.join(real_root, name)):
            how = "'..' climbs out of it"
        else:
            how = f"a symlink in it leads to {real}"
        raise DataError(f"{source}: {name!r} points outside the data root {base} ({how})")
    return joined


def template_path(root: str | os.PathLike[str], template: str, fields: dict, source: str) -> Path:
    """``root / template.format(**fields)``, checked by :func:`resolve_inside`; ``fields`` is one record of a data
    file (a CSV row, a JSON object), ``source`` where it is.

    Raises:
        DataError: the template names a field the record lacks (``"{source}: template '{video}.mp4' needs field
            'video'"``), its format does not fit a value, or the name leads outside ``root``.
    """
    try:
        name = template.format(**fields)
    except KeyError as exc:
        raise DataError(f"{source}: template {template!r} needs field {exc.args[0]!r}") from None
    except (IndexError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{source}: template {template!r} does not fit this record ({one_line(exc)})") from None
    return resolve_inside(root, name, source)


def not_utf8(where: str | os.PathLike[str]) -> str:
    """Why the file at ``where`` is not UTF-8, with the offset in the *file* (a decoder that read it in chunks
    reports an offset into its chunk): ``"not UTF-8 text (invalid continuation byte at byte 1234, line 5)"``."""
    try:
        data = Path(where).read_bytes()
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f"not UTF-8 text ({exc.reason} at byte {exc.start}, line {line})"
    except OSError as exc:
        return f"cannot read file ({exc.strerror or one_line(exc)})"
    return "not UTF-8 text"


def one_line(exc: BaseException) -> str:
    """``exc``'s message with all white space (newlines included) folded to single spaces, so it fits in a
    one-line error; the exception's type name when it has no message."""
    return " ".join(str(exc).split()) or type(exc).__name__
