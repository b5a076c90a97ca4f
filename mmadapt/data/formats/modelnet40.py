"""ModelNet40 / ModelNet10 point-cloud classification (format ``modelnet40``) laid out as the official
downloads: :func:`modelnet_records` returns ``[(source, class name)]``, what a classification task trains
and scores on. Either official layout; which one is detected
from the files in ``root``:

* Princeton ``ModelNet40/`` (or ``ModelNet10/``): meshes at ``<root>/<class>/<train|test>/<class>_0001.off``;
  the class is the folder name. Folders named ``.*`` or ``__*`` (``__MACOSX``) are not classes.
* Pointnet++ ``modelnet40_normal_resampled/``: ``<root>/<name>_shape_names.txt`` (one class per line),
  ``<root>/<name>_train.txt`` / ``<name>_test.txt`` (one id per line, e.g. ``night_stand_0001``), clouds at
  ``<root>/<class>/<id>.txt`` (``x,y,z,nx,ny,nz`` per line); the class is the id without its ``_NNNN``
  suffix. ``name`` is ``modelnet40`` or ``modelnet10`` (that download holds both lists).

Sources are file paths (``str``), read later by the point-cloud tokenizer; records are sorted by
(class, file name) whatever the order of a split file.

Every problem is a one-line :class:`~mmadapt.errors.DataError` that names the file or folder (and the line
or row); a bad argument is a :class:`~mmadapt.errors.ConfigError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mmadapt.config import DatasetConfig
from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.errors import ConfigError, DataError
from mmadapt.io._files import resolve_inside

__all__ = [
    "MODELNET_NAMES",
    "MODELNET_SPLITS",
    "modelnet_layout",
    "modelnet_records",
]

#: the ``name`` values of the Pointnet++ resampled layout (its list files are ``<name>_*.txt``)
MODELNET_NAMES: tuple[str, ...] = ("modelnet40", "modelnet10")
#: the splits of both ModelNet layouts
MODELNET_SPLITS: tuple[str, ...] = ("train", "test")


# ------------------------------------------------------------------------------------------------ ModelNet
def modelnet_layout(root: str | os.PathLike[str]) -> str:
    """``"resampled"`` (Pointnet++ list files at ``root``) or ``"princeton"`` (``<class>/<train|test>/``
    folders), detected from the files present.

    Raises:
        DataError: ``root`` is missing, not a folder, or holds neither layout.
    """
    folder = Path(root)
    if not folder.exists():
        raise DataError(f"{folder}: ModelNet folder not found")
    if not folder.is_dir():
        raise DataError(f"{folder}: is not a folder (a ModelNet root is the dataset folder)")
    lists = [p for p in folder.glob("modelnet*_*.txt")
             if p.name.endswith(("_shape_names.txt", "_train.txt", "_test.txt"))]
    if lists:
        return "resampled"
    if any((d / split).is_dir() for d in _class_folders(folder) for split in MODELNET_SPLITS):
        return "princeton"
    raise DataError(
        f"{folder}: not a ModelNet folder: expected modelnet40_shape_names.txt + modelnet40_<split>.txt "
        f"(Pointnet++ resampled layout) or <class>/<train|test>/*.off folders (Princeton layout)"
    )


def modelnet_records(
    root: str | os.PathLike[str], split: str, name: str = "modelnet40"
) -> list[tuple[str, str]]:
    """``[(path of the sample's file, class name)]`` of one ModelNet split, sorted by (class, file name).

    ``split`` is ``train`` or ``test``; ``name`` (``modelnet40`` / ``modelnet10``) picks the list files of the
    resampled layout (the Princeton folder is one set, whichever its name).

    Raises:
        ConfigError: ``split`` or ``name`` is not one of the accepted values.
        DataError: a missing root / split folder / list file, a listed id whose class is not in the shape
            names, a listed file that does not exist, a repeated id, or a split without samples; the
            message names the path (and the line of a list file).
    """
    if split not in MODELNET_SPLITS:
        raise ConfigError(f"modelnet split: expected one of {MODELNET_SPLITS}, got {split!r}")
    if name not in MODELNET_NAMES:
        raise ConfigError(f"modelnet name: expected one of {MODELNET_NAMES}, got {name!r}")
    folder = Path(root)
    if modelnet_layout(folder) == "resampled":
        rows = _resampled_records(folder, split, name)
    else:
        rows = _princeton_records(folder, split)
    if not rows:
        raise DataError(f"{folder}: no {split} samples")
    return rows


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))


def _princeton_records(folder: Path, split: str) -> list[tuple[str, str]]:
    rows = []
    for class_dir in _class_folders(folder):
        split_dir = class_dir / split
        if not split_dir.is_dir():
            raise DataError(f"{split_dir}: folder not found (each class folder of ModelNet holds train/ and test/)")
        files = sorted(p for p in split_dir.iterdir() if p.suffix.lower() == ".off" and p.is_file())
        rows.extend((str(p), class_dir.name) for p in files)
    return rows


def _resampled_records(folder: Path, split: str, name: str) -> list[tuple[str, str]]:
    names_file = folder / f"{name}_shape_names.txt"
    classes = {line for _, line in _list_lines(names_file)}
    if not classes:
        raise DataError(f"{names_file}: no class names")
    split_file = folder / f"{name}_{split}.txt"
    rows, seen = [], {}
    for lineno, sample_id in _list_lines(split_file):
        label = sample_id.rsplit("_", 1)[0] if "_" in sample_id else ""
        if label not in classes:
            raise DataError(f"{split_file}:{lineno}: id {sample_id!r}: class {label!r} is not in {names_file.name}")
        if sample_id in seen:
            raise DataError(f"{split_file}:{lineno}: id {sample_id!r} repeats line {seen[sample_id]}")
        seen[sample_id] = lineno
        path = resolve_inside(folder, f"{label}/{sample_id}.txt", f"{split_file}:{lineno}: id {sample_id!r}")
        if not path.is_file():
            raise DataError(f"{path}: file not found (listed in {split_file}:{lineno})")
        rows.append((label, sample_id, str(path)))
    return [(path, label) for label, _, path in sorted(rows)]


def _list_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank, stripped lines of a list file with their 1-based numbers."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read list file ({' '.join(str(exc).split())})") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


@dataclass
class ModelNetConfig(DatasetConfig):
    """ModelNet: ``root`` = the official dataset folder (Princeton's ``ModelNet40/`` or Pointnet++'s
    ``modelnet40_normal_resampled/``, detected from the files), ``split`` train / test, ``name`` modelnet40
    (default) or modelnet10."""

    root: str | None = None
    split: str | None = None
    name: str | None = None


@register_format("modelnet40", ModelNetConfig, serves=("labelled",))
def read_modelnet(cfg: ModelNetConfig, ctx: ReadContext) -> Split:
    name = cfg.name or "modelnet40"
    if not cfg.root or cfg.split not in MODELNET_SPLITS or name not in MODELNET_NAMES:
        raise ConfigError(f"{ctx.where}: modelnet40 needs root (the dataset folder), split (train or test) and "
                          f"optionally name (modelnet40 or modelnet10); got root={cfg.root!r}, "
                          f"split={cfg.split!r}, name={cfg.name!r}")
    return Split("labelled", modelnet_records(cfg.root, cfg.split, name))
