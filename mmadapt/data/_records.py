"""Shared helpers for reading and writing the official JSON dataset formats (VQA v2, COCO captions).

Private to :mod:`mmadapt.data`: every helper raises :class:`~mmadapt.errors.DataError` with a message of the
form ``"{file}: {location}.{field} {what is wrong}"``, e.g. ``val_questions.json: questions[12].question_id
missing``, so the loaders can stay short and their errors look alike.
"""

from __future__ import annotations

import json
import operator
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mmadapt.errors import DataError

PathLike = str | os.PathLike[str]

_TYPE_NAMES: dict[type, str] = {int: "int", str: "str", list: "list", dict: "object", float: "float"}


def read_json(path: PathLike, top: type = dict) -> Any:
    """Read ``path`` as JSON whose top level is of type ``top`` (an object by default, or a list).

    Raises:
        DataError: the file is missing or unreadable, is not valid JSON (message gives line and column),
            or its top level is not a ``top``.
    """
    where = os.fspath(path)
    try:
        with open(where, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{where}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{where}: is a directory, not a JSON file") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{where}: cannot read file ({exc.strerror or exc})") from None
    if not isinstance(doc, top):
        raise DataError(f"{where}: expected a JSON {_TYPE_NAMES[top]} at the top level, got {_type_name(doc)}")
    return doc


def require(record: Any, key: str, kind: type, file: str, location: str) -> Any:
    """``record[key]``, checked to be of type ``kind`` (``int`` never accepts ``bool``).

    ``location`` is where ``record`` sits in the file, e.g. ``"questions[12]"``; it prefixes ``key`` in messages.
    """
    if not isinstance(record, dict):
        raise DataError(f"{file}: {location}: expected an object, got {_type_name(record)}")
    if key not in record:
        raise DataError(f"{file}: {_join(location, key)} missing")
    value = record[key]
    if not _is(value, kind):
        raise DataError(
            f"{file}: {_join(location, key)}: expected {_TYPE_NAMES.get(kind, kind.__name__)}, "
            f"got {_type_name(value)} ({_short(value)})"
        )
    return value


def optional(record: dict[str, Any], key: str, kind: type, file: str, location: str) -> Any:
    """Like :func:`require`, but a missing key (or ``null``) gives ``None``."""
    if record.get(key) is None:
        return None
    return require(record, key, kind, file, location)


def check_images_exist(paths: Iterable[Path], file: str, hint: str) -> None:
    """Raise one :class:`DataError` if any of ``paths`` is missing, naming the first and how many.

    Each distinct path is checked once with ``os.path.exists``; ``hint`` (e.g. the image root and template in
    use) is appended so the user sees how the paths were built.
    """
    unique = list(dict.fromkeys(paths))
    missing = [p for p in unique if not os.path.exists(p)]
    if missing:
        raise DataError(
            f"{file}: {len(missing)} of {len(unique)} referenced images missing, first: {missing[0]} ({hint})"
        )


def result_id(value: Any, field: str, index: int) -> int:
    """An integer id for a results file; accepts numpy / torch integer scalars, refuses floats and bools."""
    if isinstance(value, bool):
        raise DataError(f"results[{index}].{field}: expected int, got bool")
    try:
        return operator.index(value)
    except TypeError:
        if hasattr(value, "item"):  # 0-d tensor / array
            return result_id(value.item(), field, index)
        raise DataError(f"results[{index}].{field}: expected int, got {_type_name(value)} ({_short(value)})") from None


def write_json_atomic(path: PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` via a temporary file and a rename (no half-written file on a kill)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def check_unique_results(ids: Iterable[int], field: str, path: PathLike) -> None:
    """Refuse two results for the same id: the official evaluators would silently score only one."""
    seen: dict[int, int] = {}
    for i, value in enumerate(ids):
        if value in seen:
            raise DataError(f"{os.fspath(path)}: results[{i}].{field} {value} duplicates results[{seen[value]}]")
        seen[value] = i


def _is(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def _join(location: str, key: str) -> str:
    return f"{location}.{key}" if location else key


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
