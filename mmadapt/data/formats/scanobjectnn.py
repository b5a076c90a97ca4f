"""ScanObjectNN point-cloud classification (format ``scanobjectnn``).

One ``.h5`` file of the official
``h5_files`` download (e.g. ``main_split/training_objectdataset_augmentedrot_scale75.h5``) with datasets
``data`` ``[M, 2048, 3]`` and ``label`` ``[M]`` (index into :data:`SCANOBJECTNN_CLASSES`). The whole file is
read once; sources are float32 tensors ``[2048, 3]`` (views of one ``[M, 2048, 3]`` tensor), in file order.

Every problem is a one-line :class:`~mmadapt.errors.DataError` that names the file (and the row).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from mmadapt.config import DatasetConfig
from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.errors import ConfigError, DataError

#: the 15 ScanObjectNN classes, in the official label-index order
SCANOBJECTNN_CLASSES: tuple[str, ...] = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table",
    "bed", "pillow", "sink", "sofa", "toilet",
)  # fmt: skip


@dataclass
class ScanObjectNNConfig(DatasetConfig):
    """ScanObjectNN: ``annotations`` = one ``.h5`` file of the official download (``data`` [N, 2048, 3],
    ``label`` [N]), e.g. ``main_split/training_objectdataset_augmentedrot_scale75.h5``; labels are the 15
    class names."""

    annotations: str | None = None


@register_format("scanobjectnn", ScanObjectNNConfig, serves=("labelled",))
def read_scanobjectnn(cfg: ScanObjectNNConfig, ctx: ReadContext) -> Split:
    if not cfg.annotations:
        raise ConfigError(f"{ctx.where}.annotations: required for format scanobjectnn (the .h5 file)")
    return Split("labelled", scanobjectnn_records(cfg.annotations))


def scanobjectnn_records(path: str | os.PathLike[str]) -> list[tuple[torch.Tensor, str]]:
    """``[(points float32 [N, 3], class name)]`` of a ScanObjectNN ``.h5`` file, in file order.

    Raises:
        DataError: a missing / unreadable file, a missing ``data`` or ``label`` dataset, mismatched lengths,
            non-finite coordinates (see :func:`mmadapt.io.point_cloud.load_h5_point_clouds`), a label outside
            ``[0, 15)`` (file and row named), or a file without samples.
    """
    return list(_read_scanobjectnn(os.fspath(path)))


def _read_scanobjectnn(where: str) -> tuple[tuple[torch.Tensor, str], ...]:
    from mmadapt.io.point_cloud import load_h5_point_clouds

    points, labels = load_h5_point_clouds(where)
    if not len(labels):
        raise DataError(f"{where}: no samples (dataset 'label' is empty)")
    n_classes = len(SCANOBJECTNN_CLASSES)
    bad = torch.nonzero((labels < 0) | (labels >= n_classes)).flatten()
    if len(bad):
        row = int(bad[0])
        raise DataError(f"{where}: row {row}: label {int(labels[row])} is outside [0, {n_classes}) "
                        f"(the {n_classes} ScanObjectNN classes)")
    return tuple((points[i], SCANOBJECTNN_CLASSES[label]) for i, label in enumerate(labels.tolist()))
