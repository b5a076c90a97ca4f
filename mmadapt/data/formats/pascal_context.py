"""Read the PASCAL-Context multi-task dense prediction layout (semantic segmentation, human parts, saliency,
surface normals), as used by the multi-task benchmarks of Maninis et al. (ASTMT) and Vandenhende et al.::

    root/
      JPEGImages/{id}.jpg
      semseg/pascal-context/{id}.png       uint8 class index per pixel (21 VOC classes), 255 = ignore
      human_parts/{id}.png | {id}.mat      class index per pixel (7 classes), 255 = ignore
      sal_distill/{id}.png                 grey 0..255; salient where > 127
      normals_distill/{id}.png | {id}.mat  png: RGB, n = 2 * rgb / 255 - 1; mat: [H, W, 3] float
      ImageSets/Context/{split}.txt        one id per line
      mmadapt_dense.json                   optional: {"tasks": {"semseg": {"classes": [...]}, ...}}

This module's one job is turning those files into arrays: :func:`read_dense_split` lists a split's samples
(image + the label file of each task that has one), :func:`load_dense_labels` decodes the labels (each file
through :mod:`mmadapt.io.dense_labels`), :func:`load_dense_image` the image, :func:`class_names` names the
classes. The synthetic set of
:mod:`mmadapt.data.synthetic.dense` is written in the same layout, so this one reader serves both.

Label conventions (what losses and metrics receive):

* ``semseg`` / ``parts``: int64 ``[H, W]`` class indices, 255 = ignore;
* ``saliency``: int64 ``[H, W]`` in {0, 1} (grey > 127 is salient);
* ``normals``: float32 ``[H, W, 3]`` unit vectors in image axes (x right, y down, z towards the viewer);
  a pixel whose decoded vector is shorter than 0.5 before renormalising (a mid-grey ``(128, 128, 128)``
  png pixel, a zero or non-finite ``.mat`` vector) or an all-zero png pixel is invalid: ``(0, 0, 0)``.

A task without a file for an id (human parts exist only for images with people) is normal: the sample's
``labels`` lacks it and :func:`load_dense_labels` returns an all-255 map (all-zero normals), which losses and
metrics ignore. Every problem is a one-line :class:`~mmadapt.errors.DataError` naming the file or folder (a
bad argument: :class:`~mmadapt.errors.ConfigError`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from mmadapt.config import DatasetConfig
from mmadapt.data.split import LabelSpace, ReadContext, Split, register_format, require_fields
from mmadapt.errors import ConfigError, DataError
from mmadapt.io._files import check_media, one_line
from mmadapt.io.dense_labels import (
    IGNORE_INDEX,
    decode_label,
    decode_png_normals,
    encode_png_normals,
    renormalise,
    resize_nearest,
)
from mmadapt.io.image import load_image
from mmadapt.io.shard_member import MediaSource, open_media

__all__ = [
    "TASKS",
    "TASK_DIRS",
    "IGNORE_INDEX",
    "PASCAL_SEMSEG_CLASSES",
    "PASCAL_PARTS_CLASSES",
    "SALIENCY_CLASSES",
    "METADATA_FILE",
    "IMAGE_DIR",
    "IMAGE_SUFFIX",
    "SPLIT_DIR",
    "DenseSample",
    "read_dense_split",
    "class_names",
    "load_dense_labels",
    "load_dense_image",
    "decode_png_normals",
    "encode_png_normals",
]

PathLike = str | os.PathLike[str]

#: task name → (folder relative to the root, accepted suffixes in order of preference...)
TASK_DIRS: dict[str, tuple[str, ...]] = {
    "semseg": ("semseg/pascal-context", ".png"),
    "parts": ("human_parts", ".png", ".mat"),
    "saliency": ("sal_distill", ".png"),
    "normals": ("normals_distill", ".png", ".mat"),
}
#: the task names, in the benchmark's usual order
TASKS: tuple[str, ...] = tuple(TASK_DIRS)
#: label value of pixels that losses and metrics skip (class maps)
#: the 21 PASCAL VOC classes of the PASCAL-Context multi-task semantic segmentation, background first
PASCAL_SEMSEG_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
#: the 7 human part classes of PASCAL-Context multi-task
PASCAL_PARTS_CLASSES: tuple[str, ...] = (
    "background", "head", "torso", "upper arm", "lower arm", "upper leg", "lower leg",
)  # fmt: skip
#: the two classes of the binary saliency target
SALIENCY_CLASSES: tuple[str, ...] = ("background", "salient")
#: optional file at the root overriding the class names of the classification tasks
METADATA_FILE = "mmadapt_dense.json"

IMAGE_DIR = "JPEGImages"
IMAGE_SUFFIX = ".jpg"
SPLIT_DIR = "ImageSets/Context"
_MISSING_SHOWN = 5  # how many missing ids an error lists


@dataclass(frozen=True)
class DenseSample:
    """One image of a split and its label files: ``labels`` maps task → file; a task with no file for this
    id (e.g. human parts of an image without people) is absent."""

    id: str
    image: Path
    labels: dict[str, Path]


# ------------------------------------------------------------------------------------------------ format
@dataclass
class PascalContextConfig(DatasetConfig):
    """PASCAL-Context multi-task: ``root`` = the multi-task layout (``JPEGImages/``,
    ``semseg/pascal-context/``, ``human_parts/``, ``sal_distill/``, ``normals_distill/``,
    ``ImageSets/Context/<split>.txt``); ``split`` train / val."""

    root: str | None = None
    split: str | None = None


@register_format("pascal_context", PascalContextConfig, serves=("dense",))
def read_pascal_context(cfg: PascalContextConfig, ctx: ReadContext) -> Split:
    require_fields(cfg, ("root", "split"), ctx.where)
    return dense_split(cfg.root, cfg.split, ctx)


def dense_split(root: PathLike, split: str, ctx: ReadContext) -> Split:
    """A split of the layout at ``root`` with the label files of ``ctx.dense_tasks``, and the class names of
    its classification tasks (everything but ``normals``)."""
    classes = {task: class_names(root, task) for task in ctx.dense_tasks if task != "normals"}
    return Split("dense", read_dense_split(root, split, ctx.dense_tasks), LabelSpace(dense_classes=classes))


# ------------------------------------------------------------------------------------------------ listing
def read_dense_split(root: PathLike, split: str, tasks: Sequence[str]) -> list[DenseSample]:
    """The samples of ``root/ImageSets/Context/{split}.txt``, in list order, with their ``tasks`` label files.

    Each task folder is listed once; for an id the first existing ``{id}{suffix}`` of the task's accepted
    suffixes (:data:`TASK_DIRS`) is its label file.

    Raises:
        ConfigError: an unknown or repeated task name.
        DataError: a missing root, image folder, task folder or split list; an empty split list; an id
            listed twice (line numbers named); ids whose image ``JPEGImages/{id}.jpg`` is missing (the
            first few listed, with the count).
    """
    tasks = _check_tasks(tasks)
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"{folder}: dense dataset root not found" if not folder.exists()
                        else f"{folder}: is not a folder (a dense dataset root is the dataset folder)")
    ids = _read_split_list(folder / SPLIT_DIR / f"{split}.txt")
    images = _listing(folder / IMAGE_DIR, "image folder")
    missing = [sample_id for sample_id in ids if sample_id + IMAGE_SUFFIX not in images]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:_MISSING_SHOWN])
        more = f" and {len(missing) - _MISSING_SHOWN} more" if len(missing) > _MISSING_SHOWN else ""
        raise DataError(f"{folder / IMAGE_DIR}: {len(missing)} image(s) of split {split!r} not found "
                        f"({IMAGE_SUFFIX}): {shown}{more}")
    listings = {task: _listing(folder / TASK_DIRS[task][0], f"{task} label folder") for task in tasks}
    samples = []
    for sample_id in ids:
        labels: dict[str, Path] = {}
        for task in tasks:
            sub, *suffixes = TASK_DIRS[task]
            name = next((sample_id + s for s in suffixes if sample_id + s in listings[task]), None)
            if name is not None:
                labels[task] = folder / sub / name
        samples.append(DenseSample(sample_id, folder / IMAGE_DIR / (sample_id + IMAGE_SUFFIX), labels))
    return samples


def _check_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    if isinstance(tasks, str):
        tasks = (tasks,)
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in TASK_DIRS]
    if unknown:
        raise ConfigError(f"dense tasks: unknown task(s) {unknown}, expected some of {TASKS}")
    if len(set(tasks)) != len(tasks):
        raise ConfigError(f"dense tasks: repeated task name in {list(tasks)}")
    return tasks


def _read_split_list(path: Path) -> list[str]:
    """The ids of a split list (blank lines skipped), refusing a missing / empty list and repeated ids."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: split list not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a split list") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read split list ({one_line(exc)})") from None
    ids: list[str] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        sample_id = line.strip()
        if not sample_id:
            continue
        if sample_id in seen:
            raise DataError(f"{path}:{lineno}: id {sample_id!r} repeats line {seen[sample_id]}")
        seen[sample_id] = lineno
        ids.append(sample_id)
    if not ids:
        raise DataError(f"{path}: split list is empty (expected one image id per line)")
    return ids


def _listing(folder: Path, what: str) -> set[str]:
    """The file names in ``folder`` (one listing instead of one ``stat`` per id)."""
    try:
        with os.scandir(folder) as entries:
            return {entry.name for entry in entries}
    except FileNotFoundError:
        raise DataError(f"{folder}: {what} not found") from None
    except NotADirectoryError:
        raise DataError(f"{folder}: is not a folder ({what})") from None
    except OSError as exc:
        raise DataError(f"{folder}: cannot list {what} ({one_line(exc)})") from None


# ------------------------------------------------------------------------------------------------ classes
def class_names(root: PathLike, task: str) -> list[str]:
    """The class names of a classification task: ``root/mmadapt_dense.json``'s ``tasks.{task}.classes`` if
    that file names them, else :data:`PASCAL_SEMSEG_CLASSES` / :data:`PASCAL_PARTS_CLASSES` /
    :data:`SALIENCY_CLASSES`.

    Raises:
        ConfigError: an unknown task, or ``normals`` (a regression task, it has no classes).
        DataError: an unreadable or malformed ``mmadapt_dense.json``.
    """
    _check_tasks((task,))
    if task == "normals":
        raise ConfigError("class_names: task 'normals' is a regression task (unit vectors); it has no classes")
    path = Path(root) / METADATA_FILE
    if path.is_file():
        classes = _metadata_classes(path, task)
        if classes is not None:
            return classes
    defaults = {"semseg": PASCAL_SEMSEG_CLASSES, "parts": PASCAL_PARTS_CLASSES, "saliency": SALIENCY_CLASSES}
    return list(defaults[task])


def _metadata_classes(path: Path, task: str) -> list[str] | None:
    """``tasks.{task}.classes`` of a metadata file, ``None`` if it does not name them."""
    try:
        meta: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read dense dataset metadata ({one_line(exc)})") from None
    tasks = meta.get("tasks", {}) if isinstance(meta, dict) else None
    if not isinstance(tasks, dict):
        raise DataError(f"{path}: expected an object with a 'tasks' object")
    entry = tasks.get(task)
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise DataError(f"{path}: tasks.{task}: expected an object, got {entry!r}")
    if "classes" not in entry:
        return None
    classes = entry["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise DataError(f"{path}: tasks.{task}.classes: expected a non-empty list of names, got {classes!r}")
    if len(set(classes)) != len(classes):
        raise DataError(f"{path}: tasks.{task}.classes: repeated class name in {classes}")
    return list(classes)


# ------------------------------------------------------------------------------------------------ loading
def load_dense_image(sample: DenseSample, size: tuple[int, int] | None = None) -> Image.Image:
    """The sample's image as a fully decoded RGB image (via :func:`mmadapt.io.image.load_image`), resized
    bilinearly to ``size = (H, W)`` if given.

    Raises:
        DataError: a missing, empty, truncated or corrupt image (the path named).
    """
    image = load_image(sample.image)
    if size is not None:
        height, width = _check_size(size)
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
    return image


def load_dense_labels(
    sample: DenseSample, tasks: Sequence[str], size: tuple[int, int] | None = None
) -> dict[str, np.ndarray]:
    """Decode the labels of ``tasks`` for ``sample``: task → array (conventions in the module docstring).

    A task without a file in ``sample.labels`` gives an all-255 map (all-zero normals), ignored downstream.
    Every label must have the image's size (EXIF orientation applied, as :func:`load_dense_image` sees it).
    With ``size = (H, W)`` the maps are resized by nearest neighbour (normals: nearest, then renormalised).

    Raises:
        ConfigError: an unknown task name or a bad ``size``.
        DataError: a missing, empty, truncated or corrupt label file, a label whose size differs from the
            image's, a wrong number of channels / dimensions, or a ``.mat`` file without a usable array; the
            message names the file.
    """
    tasks = _check_tasks(tasks)
    target = _check_size(size) if size is not None else None
    image_hw: tuple[int, int] | None = None  # read from the image header once, when first needed
    out: dict[str, np.ndarray] = {}
    for task in tasks:
        path = sample.labels.get(task)
        if path is None:
            if target is None and image_hw is None:
                image_hw = _image_hw(sample.image)
            hw = target or image_hw
            assert hw is not None
            out[task] = (np.zeros((*hw, 3), np.float32) if task == "normals"
                         else np.full(hw, IGNORE_INDEX, np.int64))
            continue
        label = decode_label(task, Path(path))
        if image_hw is None:
            image_hw = _image_hw(sample.image)
        if label.shape[:2] != image_hw:
            raise DataError(f"{path}: {task} label is {label.shape[1]}x{label.shape[0]} (W x H) but its image "
                            f"{sample.image.name} is {image_hw[1]}x{image_hw[0]}")
        if target is not None and label.shape[:2] != target:
            label = resize_nearest(label, target)
            if task == "normals":
                label = renormalise(label)
        out[task] = label
    return out


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ConfigError(f"size: expected (H, W), got {size!r}") from None
    if height < 1 or width < 1:
        raise ConfigError(f"size: expected (H, W) >= 1, got {size!r}")
    return height, width


def _image_hw(path: MediaSource) -> tuple[int, int]:
    """``(H, W)`` of an image from its header, EXIF rotation (orientations 5-8 swap the sides) applied."""
    where = check_media(path, "image")
    opened_source = open_media(path)
    try:
        with Image.open(opened_source) as opened:
            width, height = opened.size
            orientation = opened.getexif().get(0x0112, 1)
    except UnidentifiedImageError:
        raise DataError(f"{where}: not a recognised image file") from None
    except Exception as exc:  # noqa: BLE001 - header parsers raise OSError, SyntaxError, struct.error, ...
        raise DataError(f"{where}: cannot read image header ({one_line(exc)})") from None
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)
