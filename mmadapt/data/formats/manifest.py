"""A JSON-lines manifest of files and labels (format ``manifest``), for classification / regression on any
modality::

    {"path": "train/000000.png", "label": "two"}
    {"path": "train/000001.png", "label": "one"}

Paths are relative to the manifest's folder (or to ``root``) and may not lead outside it; the label field is
the task's ``label_key``. The synthetic generators of :mod:`mmadapt.data.synthetic` write their splits in
this layout and read them with :func:`manifest_records`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmadapt.config import DatasetConfig
from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.errors import ConfigError, DataError
from mmadapt.io._files import resolve_inside
from mmadapt.io.json_records import read_json_lines


@dataclass
class ManifestConfig(DatasetConfig):
    """A JSON-lines manifest: ``annotations`` = the file, one ``{"path": ..., "<label_key>": ...}`` a line;
    paths relative to its folder, or to ``root``."""

    annotations: str | None = None
    root: str | None = None


@register_format("manifest", ManifestConfig, serves=("labelled",))
def read_manifest_split(cfg: ManifestConfig, ctx: ReadContext) -> Split:
    if not cfg.annotations:
        raise ConfigError(f"{ctx.where}.annotations: required for format manifest (the manifest file)")
    path = Path(cfg.annotations)
    if not path.is_file():
        raise DataError(f"{path}: file not found ({ctx.where}.annotations)")
    return Split("labelled", manifest_records(path, Path(cfg.root) if cfg.root else path.parent, ctx.label_key))


def manifest_records(path: Path, root: Path, label_key: str) -> list[tuple[str, Any]]:
    """``[(absolute path, label)]`` from a JSON-lines manifest; malformed lines name file and line, and a path
    that leads outside ``root`` is refused."""
    rows = []
    for lineno, item in read_json_lines(path, "manifest"):
        if not isinstance(item, dict) or "path" not in item or label_key not in item:
            raise DataError(f"{path}:{lineno}: expected an object with 'path' and {label_key!r}")
        rows.append((str(resolve_inside(root, item["path"], f"{path}:{lineno}: path")), item[label_key]))
    if not rows:
        raise DataError(f"{path}: no samples")
    return rows
