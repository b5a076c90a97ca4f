"""What the synthetic set writers share (private to :mod:`mmadapt.data`): their JSON-lines manifests, the
checks of their common arguments and a balanced draw of labels.

A manifest ``root/{split}.jsonl`` holds one JSON object a line (``{"path": ..., "label": ...}``), written
to a temporary name beside it and renamed, so a writer killed half-way never leaves a broken manifest.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mmadapt.errors import ConfigError

_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def write_manifest(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> Path:
    """Write ``records`` as JSON lines (``json.dumps`` defaults, ``"\\n"`` after each) to ``path`` via
    ``.{name}.tmp`` in the same folder and a rename; returns ``Path(path)``."""
    manifest = Path(path)
    temporary = manifest.with_name(f".{manifest.name}.tmp")
    temporary.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    os.replace(temporary, manifest)
    return manifest


def check_split_n_seed(split: str, n: int, seed: int) -> None:
    """Refuse a split name that is not a plain file name (letters, digits, ``_``, ``-``; not starting with
    ``_`` or ``-``), ``n < 1`` and ``seed < 0`` with a :class:`ConfigError` naming the argument."""
    if not _SPLIT_NAME.match(split):
        raise ConfigError(f"split: expected letters, digits, '_' or '-', got {split!r}")
    if n < 1:
        raise ConfigError(f"n: expected >= 1, got {n}")
    if seed < 0:
        raise ConfigError(f"seed: expected >= 0, got {seed}")


def balanced_label(classes: tuple[str, ...], seed: int, split_key: int, index: int) -> str:
    """Sample ``index``'s class: each block of ``len(classes)`` consecutive samples is a random permutation of
    ``classes``, drawn from ``(seed, split_key, block)`` alone, so labels are balanced and reproducible."""
    block, slot = divmod(index, len(classes))
    order = np.random.default_rng([seed, split_key, block, 0]).permutation(len(classes))
    return classes[int(order[slot])]
