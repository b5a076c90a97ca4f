"""What the official JSON dataset formats (VQA v2, COCO captions, ...) share beyond reading JSON
(:mod:`mmadapt.io.json_records`, re-exported here): image checks and the writing of results files.

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
from mmadapt.io.json_records import optional, read_json, require, short, type_name

__all__ = ["PathLike", "check_images_exist", "check_unique_results", "optional", "read_json", "require",
           "result_id", "write_json_atomic"]

PathLike = str | os.PathLike[str]


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
        raise DataError(f"results[{index}].{field}: expected int, got {type_name(value)} ({short(value)})") from None


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
