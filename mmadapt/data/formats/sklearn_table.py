"""Real tables that ship inside scikit-learn (format ``sklearn_table``): no download.

:func:`write_sklearn_table` writes ``wine``
(178 rows, 13 numeric columns, 3 cultivars), ``breast_cancer`` (569 rows, 30 columns, malignant / benign)
or ``iris`` (150 rows, 4 columns, 3 species), split into ``train`` / ``val`` (stratified, by ``seed``), in
the same layout: one column per feature and the class name in ``label``. The same arguments write byte-identical files.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from mmadapt.config import DatasetConfig
from mmadapt.data.formats.table import read_table_split
from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.errors import ConfigError
from mmadapt.io.table import TableSchema, write_csv

PathLike = str | os.PathLike[str]
SklearnTable = Literal["wine", "breast_cancer", "iris"]
TARGET = "label"


@dataclass
class SklearnTableConfig(DatasetConfig):
    """A table bundled with scikit-learn (``name``: wine, breast_cancer, iris), written as CSV under
    ``root``; ``split`` train / val is a stratified 75 / 25 split chosen by ``seed``."""

    root: str | None = None
    name: str | None = None
    split: str | None = None
    seed: int = 0


@register_format("sklearn_table", SklearnTableConfig, serves=("labelled",))
def read_sklearn_table(cfg: SklearnTableConfig, ctx: ReadContext) -> Split:
    if not cfg.root or not cfg.name or cfg.split not in ("train", "val"):
        raise ConfigError(f"{ctx.where}: sklearn_table needs root, name (wine, breast_cancer, iris) and split "
                          f"(train or val); got root={cfg.root!r}, name={cfg.name!r}, split={cfg.split!r}")
    return read_table_split(write_sklearn_table(cfg.root, cfg.name, cfg.split, cfg.seed), ctx)


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
    return write_csv(Path(root) / f"{name}_{split}.csv", [*bunch.feature_names, TARGET], rows)


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


def _load_bunch(name: str):
    from sklearn import datasets

    loaders = {"wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer, "iris": datasets.load_iris}
    if name not in loaders:
        raise ConfigError(f"name: expected one of {', '.join(loaders)}, got {name!r}")
    return loaders[name]()
