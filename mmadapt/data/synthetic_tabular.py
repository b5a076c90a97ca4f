"""Tabular classification sets as CSV: a rule-based synthetic table, and real tables bundled with scikit-learn.

The synthetic table (:func:`write_tabular_dataset`) has numeric columns ``x0 .. x3`` (standard normal) and
categorical columns ``colour`` (red / green / blue / yellow) and ``size`` (small / medium / large). Its target
``label`` (:data:`CLASSES`: low / mid / high) follows a fixed rule that needs both kinds of column::

    score = x0 - x1 + {red: 1, green: 0, blue: -1, yellow: 0.5}[colour]
                    + {small: -0.5, medium: 0, large: 1}[size] * x2
    label = "low" if score < -0.6 else "high" if score > 0.6 else "mid"

``x3`` is noise. After the label is computed, each feature cell is blanked with probability ``missing``
(an empty CSV field), so a model must cope with missing values. Classes are balanced exactly (rows are drawn
until each class has its share) and the rule is the same for every split and seed.

:func:`write_sklearn_table` writes a real table that ships inside scikit-learn (no download): ``wine``
(178 rows, 13 numeric columns, 3 cultivars), ``breast_cancer`` (569 rows, 30 columns, malignant / benign)
or ``iris`` (150 rows, 4 columns, 3 species), split into ``train`` / ``val`` (stratified, by ``seed``), in
the same layout: one column per feature and the class name in ``label``.

Every file is a pure function of its arguments, so the same arguments write byte-identical files.
"""

from __future__ import annotations

import csv
import os
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from mmadapt.errors import ConfigError
from mmadapt.io.table import TableSchema

__all__ = [
    "CLASSES",
    "COLOURS",
    "NUMERIC",
    "SIZES",
    "TARGET",
    "sklearn_table_schema",
    "tabular_schema",
    "write_sklearn_table",
    "write_tabular_dataset",
]

PathLike = str | os.PathLike[str]
SklearnTable = Literal["wine", "breast_cancer", "iris"]

CLASSES: tuple[str, ...] = ("low", "mid", "high")
NUMERIC: tuple[str, ...] = ("x0", "x1", "x2", "x3")
COLOURS: dict[str, float] = {"red": 1.0, "green": 0.0, "blue": -1.0, "yellow": 0.5}
SIZES: dict[str, float] = {"small": -0.5, "medium": 0.0, "large": 1.0}
TARGET = "label"
_THRESHOLD = 0.6


def tabular_schema() -> TableSchema:
    """The synthetic table's schema with every category known (the same indices for every split)."""
    return TableSchema(
        numeric=list(NUMERIC),
        categorical=["colour", "size"],
        target=TARGET,
        categories={"colour": list(COLOURS), "size": list(SIZES), TARGET: list(CLASSES)},
        target_kind="categorical",
    )


def write_tabular_dataset(root: PathLike, split: str, n: int, seed: int, missing: float = 0.05) -> Path:
    """Write ``n`` rows of the synthetic table to ``root/{split}.csv`` and return that path."""
    if n < 1:
        raise ConfigError(f"n: expected >= 1 rows, got {n}")
    if not 0 <= missing < 1:
        raise ConfigError(f"missing: expected a probability in [0, 1), got {missing}")
    rng = np.random.default_rng([seed, zlib.crc32(split.encode("utf-8"))])
    quota = np.bincount(np.arange(n) % len(CLASSES), minlength=len(CLASSES))
    numeric_parts, colour_parts, size_parts, label_parts = [], [], [], []
    while quota.any():
        numeric = rng.normal(size=(4 * n, len(NUMERIC)))
        colour = rng.integers(len(COLOURS), size=4 * n)
        size = rng.integers(len(SIZES), size=4 * n)
        label = _rule(numeric, colour, size)
        keep = np.zeros(4 * n, dtype=bool)
        for k in range(len(CLASSES)):
            rows = np.flatnonzero(label == k)[: quota[k]]
            keep[rows] = True
            quota[k] -= len(rows)
        numeric_parts.append(numeric[keep])
        colour_parts.append(colour[keep])
        size_parts.append(size[keep])
        label_parts.append(label[keep])
    order = rng.permutation(n)
    numeric = np.concatenate(numeric_parts)[order]
    colour = np.concatenate(colour_parts)[order]
    size = np.concatenate(size_parts)[order]
    label = np.concatenate(label_parts)[order]
    blank = rng.random((n, len(NUMERIC) + 2)) < missing
    colour_names, size_names = list(COLOURS), list(SIZES)
    rows = [
        [*("" if blank[i, j] else repr(float(numeric[i, j])) for j in range(len(NUMERIC))),
         "" if blank[i, -2] else colour_names[colour[i]],
         "" if blank[i, -1] else size_names[size[i]],
         CLASSES[label[i]]]
        for i in range(n)
    ]  # fmt: skip
    return _write_csv(Path(root) / f"{split}.csv", [*NUMERIC, "colour", "size", TARGET], rows)


def write_sklearn_table(
    root: PathLike, name: SklearnTable = "wine", split: str = "train", seed: int = 0, val_fraction: float = 0.25
) -> Path:
    """Write the ``train`` or ``val`` part of a scikit-learn bundled table to ``root/{name}_{split}.csv``.

    The split is stratified: ``round(val_fraction · count)`` rows of each class, chosen by ``seed``, are
    ``val``; the rest are ``train``. Values are written exactly as scikit-learn holds them.
    """
    if split not in ("train", "val"):
        raise ConfigError(f"split: expected 'train' or 'val', got {split!r}")
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction: expected a fraction in (0, 1), got {val_fraction}")
    bunch = _load_bunch(name)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
    in_val = np.zeros(len(bunch.target), dtype=bool)
    for k in range(len(bunch.target_names)):
        members = rng.permutation(np.flatnonzero(bunch.target == k))
        in_val[members[: round(val_fraction * len(members))]] = True
    picked = np.flatnonzero(in_val if split == "val" else ~in_val)
    rows = [
        [*(repr(float(value)) for value in bunch.data[i]), str(bunch.target_names[bunch.target[i]])] for i in picked
    ]
    return _write_csv(Path(root) / f"{name}_{split}.csv", [*bunch.feature_names, TARGET], rows)


def sklearn_table_schema(name: SklearnTable = "wine") -> TableSchema:
    """The schema of :func:`write_sklearn_table`'s CSV: every feature numeric, the class names in ``label``."""
    bunch = _load_bunch(name)
    classes = [str(value) for value in bunch.target_names]
    return TableSchema(
        numeric=list(bunch.feature_names),
        categorical=[],
        target=TARGET,
        categories={TARGET: classes},
        target_kind="categorical",
    )


def _rule(numeric: np.ndarray, colour: np.ndarray, size: np.ndarray) -> np.ndarray:
    """The target rule: features ``[R, 4]``, colour and size indices ``[R]`` → class index ``[R]``."""
    score = (
        numeric[:, 0] - numeric[:, 1]
        + np.array(list(COLOURS.values()))[colour]
        + np.array(list(SIZES.values()))[size] * numeric[:, 2]
    )  # fmt: skip
    return np.where(score < -_THRESHOLD, 0, np.where(score > _THRESHOLD, 2, 1))


def _load_bunch(name: str):
    from sklearn import datasets

    loaders = {"wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer, "iris": datasets.load_iris}
    if name not in loaders:
        raise ConfigError(f"name: expected one of {', '.join(loaders)}, got {name!r}")
    return loaders[name]()


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    """Write via a temporary file and a rename, so a killed writer never leaves half a table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(temporary, path)
    return path
