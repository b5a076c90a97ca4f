"""COCO captions: the official annotations JSON (format ``coco_captions``) and the results file.

Official captions file (``captions_val2014.json``; ``image_info_test2014.json`` has no ``annotations``)::

    {"info": {...}, "licenses": [...],
     "images": [{"id": 391895, "file_name": "COCO_val2014_000000391895.jpg", "width": 640, "height": 360,
                 ...}, ...],
     "annotations": [{"image_id": 391895, "id": 770337, "caption": "A man riding a bike."}, ...]}

Results file (what the COCO caption evaluator reads)::

    [{"image_id": 391895, "caption": "a man rides a bike"}, ...]

Every problem in a file is a :class:`~mmadapt.errors.DataError` naming the file and the field, e.g.
``captions_val2014.json: annotations[7].caption missing``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mmadapt.config import DatasetConfig
from mmadapt.data._records import (
    PathLike,
    check_images_exist,
    check_unique_results,
    optional,
    read_json,
    require,
    result_id,
    write_json_atomic,
)
from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.errors import ConfigError, DataError
from mmadapt.io._files import resolve_inside

__all__ = [
    "CaptionSample",
    "load_caption_results",
    "load_coco_captions",
    "write_caption_results",
]

@dataclass
class CaptionSample:
    """One image with its reference captions (empty for splits without annotations)."""

    image_id: int
    image_path: Path
    captions: list[str] = field(default_factory=list)


def load_coco_captions(
    annotations_path: PathLike, image_root: PathLike, check_images: bool = True
) -> list[CaptionSample]:
    """Read an official COCO captions file into one sample per image, in the order of ``images``.

    Image paths are ``image_root / file_name`` (a ``file_name`` that leads outside ``image_root`` is refused).
    Captions are stripped of surrounding whitespace (COCO's raw captions carry stray newlines). A file without
    ``annotations`` (test image info) gives samples with no captions.

    Raises:
        DataError: a missing or malformed file or field, a duplicate image id, a caption whose image is not
            in ``images``, or (with ``check_images``) missing image files (first path and count).
    """
    afile = os.fspath(annotations_path)
    root = Path(image_root)
    doc = read_json(afile)
    images = require(doc, "images", list, afile, "")

    samples: list[CaptionSample] = []
    position: dict[int, int] = {}
    for i, im in enumerate(images):
        where = f"images[{i}]"
        image_id = require(im, "id", int, afile, where)
        file_name = require(im, "file_name", str, afile, where)
        if image_id in position:
            raise DataError(f"{afile}: {where}.id {image_id} duplicates images[{position[image_id]}]")
        position[image_id] = i
        samples.append(CaptionSample(image_id, resolve_inside(root, file_name, f"{afile}: {where}.file_name")))

    annotations = optional(doc, "annotations", list, afile, "") or []
    for i, a in enumerate(annotations):
        where = f"annotations[{i}]"
        image_id = require(a, "image_id", int, afile, where)
        caption = require(a, "caption", str, afile, where)
        if image_id not in position:
            raise DataError(f"{afile}: {where}.image_id {image_id} is not in images")
        samples[position[image_id]].captions.append(caption.strip())

    if check_images:
        check_images_exist((s.image_path for s in samples), afile, f"image_root={root}")
    return samples


@dataclass
class COCOCaptionsConfig(DatasetConfig):
    """COCO captions: ``annotations`` = the official captions JSON, images under ``image_root``."""

    annotations: str | None = None
    image_root: str | None = None


@register_format("coco_captions", COCOCaptionsConfig, serves=("caption",))
def read_coco_captions(cfg: COCOCaptionsConfig, ctx: ReadContext) -> Split:
    if cfg.annotations is None:
        raise ConfigError(f"{ctx.where}.annotations: required for format coco_captions")
    return Split("caption", load_coco_captions(cfg.annotations, cfg.image_root))


def write_caption_results(path: PathLike, results: Iterable[tuple[int, str]]) -> Path:
    """Write ``[(image_id, caption), ...]`` in the official results format ``[{"image_id", "caption"}]``.

    Image ids may be Python, numpy or torch integers. Duplicate image ids are refused (one caption per
    image). The file is written atomically; returns its path.
    """
    records: list[dict[str, object]] = []
    for i, (image_id, caption) in enumerate(results):
        if not isinstance(caption, str):
            raise DataError(f"results[{i}].caption: expected str, got {type(caption).__name__}")
        records.append({"image_id": result_id(image_id, "image_id", i), "caption": caption})
    check_unique_results((r["image_id"] for r in records), "image_id", path)
    return write_json_atomic(path, records)


def load_caption_results(path: PathLike) -> dict[int, str]:
    """Read an official caption results file back into ``{image_id: caption}``."""
    where = os.fspath(path)
    out: dict[int, str] = {}
    for i, r in enumerate(read_json(where, list)):
        image_id = require(r, "image_id", int, where, f"[{i}]")
        caption = require(r, "caption", str, where, f"[{i}]")
        if image_id in out:
            raise DataError(f"{where}: [{i}].image_id {image_id} appears twice")
        out[image_id] = caption
    return out
