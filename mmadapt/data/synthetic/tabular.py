"""A rule-based synthetic tabular classification set as CSV (format ``synthetic_tabular``).

The table (:func:`write_tabular_dataset`) has numeric columns ``x0 .. x3`` (standard normal) and
categorical columns ``colour`` (red / green / blue / yellow) and ``size`` (small / medium / large). Its target
``label`` (:data:`CLASSES`: low / mid / high) follows a fixed rule that needs both kinds of column::

    score = x0 - x1 + {red: 1, green: 0, blue: -1, yellow: 0.5}[colour]
                    + {small: -0.5, medium: 0, large: 1}[size] * x2
    label = "low" if score < -0.6 else "high" if score > 0.6 else "mid"

``x3`` is noise. After the label is computed, each feature cell is blanked with probability ``missing``
(an empty CSV field), so a model must cope with missing values. Classes are balanced exactly (rows are drawn
until each class has its share) and the rule is the same for every split and seed.

Every file is a pure function of its arguments, so the same arguments write byte-identical files.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmadapt.data.formats.table import read_table_split
from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.data.synthetic.generated import GeneratedConfig, generate
from mmadapt.errors import ConfigError
from mmadapt.io.table import TableSchema, write_csv

__all__ = [
    "CLASSES",
    "COLOURS",
    "NUMERIC",
    "SIZES",
    "TARGET",
    "tabular_schema",
    "write_tabular_dataset",
]

PathLike = str | os.PathLike[str]

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
    return write_csv(Path(root) / f"{split}.csv", [*NUMERIC, "colour", "size", TARGET], rows)


def _rule(numeric: np.ndarray, colour: np.ndarray, size: np.ndarray) -> np.ndarray:
    """The target rule: features ``[R, 4]``, colour and size indices ``[R]`` → class index ``[R]``."""
    score = (
        numeric[:, 0] - numeric[:, 1]
        + np.array(list(COLOURS.values()))[colour]
        + np.array(list(SIZES.values()))[size] * numeric[:, 2]
    )  # fmt: skip
    return np.where(score < -_THRESHOLD, 0, np.where(score > _THRESHOLD, 2, 1))


@dataclass
class SyntheticTabularConfig(GeneratedConfig):
    """A rule-based table with numeric and categorical columns and missing cells. Generated under ``root`` (``split``,
    ``n_samples``, ``seed``)."""


@register_format("synthetic_tabular", SyntheticTabularConfig, serves=("labelled",))
def read_synthetic_tabular(cfg: SyntheticTabularConfig, ctx: ReadContext) -> Split:
    return read_table_split(generate(cfg, ctx, write_tabular_dataset), ctx)
