"""The one JSON reader: a file read as JSON (or JSON lines), and its records' fields checked, every problem one line naming
the file, the record and the field — ``val_questions.json: questions[12].question_id missing``,
``results file r.json: results[0].answer: expected str, got int (3)``, ``a.json: invalid JSON at line 2
column 1 (...)``.

Dataset formats (:mod:`mmadapt.data.formats`) and the official scorers (:mod:`mmadapt.eval`) both read their
files here; ``error`` picks the exception class (a :class:`~mmadapt.errors.DataError` by default, the
scorers' own subclasses for theirs) and ``file`` the name a message starts with.
"""

from __future__ import annotations

import json
import os
from typing import Any

from mmadapt.errors import DataError
from mmadapt.io._files import not_utf8, one_line

PathLike = str | os.PathLike[str]
Kind = type | tuple[type, ...]

_TYPE_NAMES: dict[type, str] = {int: "int", str: "str", list: "list", dict: "object", float: "float"}


def read_json(path: PathLike, top: type = dict, error: type[Exception] = DataError, file: str | None = None) -> Any:
    """``path`` read as JSON whose top level is a ``top`` (an object by default, or a list); messages start
    with ``file`` (default: the path).

    Raises:
        ``error``: the file is missing or unreadable, not UTF-8, not valid JSON (line and column given), or
            its top level is not a ``top``.
    """
    where = file or os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise error(f"{where}: cannot read file (file not found)") from None
    except IsADirectoryError:
        raise error(f"{where}: cannot read file (is a directory, not a JSON file)") from None
    except json.JSONDecodeError as exc:
        raise error(f"{where}: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise error(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise error(f"{where}: cannot read file ({exc.strerror or exc})") from None
    if top is not None and not isinstance(doc, top):
        raise error(f"{where}: expected a JSON {_TYPE_NAMES[top]} at the top level, got {type_name(doc)}")
    return doc


def read_json_lines(path: PathLike, what: str = "file", error: type[Exception] = DataError) -> list[tuple[int, Any]]:
    """``[(line number, value)]`` of a JSON-lines file (blank lines skipped); a line that is not JSON is named by
    ``{path}:{line}``, an unreadable file as ``cannot read {what}``."""
    where = os.fspath(path)
    try:
        with open(where, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise error(f"{where}: {not_utf8(where)}") from None
    except OSError as exc:
        raise error(f"{where}: cannot read {what} ({one_line(exc)})") from None
    rows = []
    for lineno, line in enumerate(text.split("\n"), start=1):  # not splitlines(): JSON strings may hold U+2028
        if line.strip():
            try:
                rows.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise error(f"{where}:{lineno}: not valid JSON ({exc.msg})") from None
    return rows


def require(record: Any, key: str, kind: Kind, file: str, location: str, error: type[Exception] = DataError) -> Any:
    """``record[key]``, checked to be of ``kind`` (a type or a tuple of types; ``int`` never accepts
    ``bool``). ``location`` is where ``record`` sits in the file, e.g. ``"questions[12]"``."""
    if not isinstance(record, dict):
        raise error(f"{file}: {location}: expected an object, got {type_name(record)}")
    if key not in record:
        raise error(f"{file}: {_join(location, key)} missing")
    value = record[key]
    if not _is(value, kind):
        raise error(f"{file}: {_join(location, key)}: expected {_kind_name(kind)}, got {type_name(value)} "
                    f"({_short(value)})")
    return value


def optional(record: dict[str, Any], key: str, kind: Kind, file: str, location: str,
             error: type[Exception] = DataError) -> Any:
    """Like :func:`require`, but a missing key (or ``null``) gives ``None``."""
    if isinstance(record, dict) and record.get(key) is None:
        return None
    return require(record, key, kind, file, location, error)


def type_name(value: Any) -> str:
    """The JSON name of ``value``'s type (``null``, ``bool``, ``object``, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def short(value: Any, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    return _short(value, limit)


def _is(value: Any, kind: Kind) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    for k in kinds:
        if k is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if k is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if k not in (int, float) and isinstance(value, k):
            return True
    return False


def _kind_name(kind: Kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)


def _join(location: str, key: str) -> str:
    return f"{location}.{key}" if location else key


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
