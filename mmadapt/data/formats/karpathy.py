"""Karpathy's caption split files (format ``karpathy``): COCO, Flickr8k and Flickr30k in one layout.

The split file (``dataset_coco.json``; splits ``train`` / ``restval`` / ``val`` / ``test``; the same
layout serves ``dataset_flickr8k.json`` / ``dataset_flickr30k.json``, which have no ``filepath`` /
``cocoid``)::

    {"dataset": "coco",
     "images": [{"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg", "imgid": 0,
                 "split": "test", "cocoid": 391895, "sentids": [...],
                 "sentences": [{"raw": "A man riding a bike.", "tokens": ["a", "man", ...],
                                "imgid": 0, "sentid": 770337}, ...]}, ...]}
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from mmadapt.config import DatasetConfig
from mmadapt.data._records import PathLike, check_images_exist, optional, read_json, require
from mmadapt.data.formats.coco_captions import CaptionSample
from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.errors import ConfigError, DataError
from mmadapt.io._files import resolve_inside

KARPATHY_SPLITS: tuple[str, ...] = ("train", "restval", "val", "test")


@dataclass
class KarpathyConfig(DatasetConfig):
    """Karpathy's split file: ``annotations`` = ``dataset_coco.json`` (or the Flickr ones), images under
    ``image_root``; ``split`` picks train / restval / val / test, several joined by ``+`` (``train+restval``:
    the usual 113k COCO training images)."""

    annotations: str | None = None
    image_root: str | None = None
    split: str | None = None


@register_format("karpathy", KarpathyConfig, serves=("caption",))
def read_karpathy(cfg: KarpathyConfig, ctx: ReadContext) -> Split:
    if not cfg.split:
        raise ConfigError(f"{ctx.where}.split: required for format karpathy")
    if cfg.annotations is None:
        raise ConfigError(f"{ctx.where}.annotations: required for format karpathy (the split file)")
    parts = tuple(cfg.split.split("+"))
    return Split("caption", load_karpathy(cfg.annotations, cfg.image_root, parts if len(parts) > 1 else parts[0]))


def load_karpathy(
    split_path: PathLike,
    image_root: PathLike,
    split: str | Collection[str],
    check_images: bool = True,
) -> list[CaptionSample]:
    """Read the images of ``split`` from a Karpathy split file, in file order.

    ``split`` is one of :data:`KARPATHY_SPLITS` or several of them: the usual 113k-image COCO training set is
    ``("train", "restval")`` (``"train"`` alone is Karpathy's 82,783 images). Image ids are ``cocoid`` when
    present, else ``imgid`` (Flickr files); image paths are ``image_root / filepath / filename``
    (``image_root / filename`` when there is no ``filepath``). Captions are the ``raw`` sentences, stripped.

    Raises:
        ConfigError: an unknown split name.
        DataError: a missing or malformed file or field, a duplicate image id, no image in ``split``, or
            (with ``check_images``) missing image files (first path and count).
    """
    wanted = {split} if isinstance(split, str) else set(split)
    unknown = wanted - set(KARPATHY_SPLITS)
    if unknown or not wanted:
        raise ConfigError(f"karpathy split: expected some of {list(KARPATHY_SPLITS)}, got {sorted(wanted)}")
    sfile = os.fspath(split_path)
    root = Path(image_root)
    doc = read_json(sfile)
    images = require(doc, "images", list, sfile, "")

    samples: list[CaptionSample] = []
    seen: dict[int, int] = {}
    for i, im in enumerate(images):
        where = f"images[{i}]"
        if require(im, "split", str, sfile, where) not in wanted:
            continue
        cocoid = optional(im, "cocoid", int, sfile, where)
        image_id = cocoid if cocoid is not None else require(im, "imgid", int, sfile, where)
        if image_id in seen:
            raise DataError(f"{sfile}: {where} image id {image_id} duplicates images[{seen[image_id]}]")
        seen[image_id] = i
        filepath = optional(im, "filepath", str, sfile, where) or ""
        filename = require(im, "filename", str, sfile, where)
        sentences = require(im, "sentences", list, sfile, where)
        captions = [
            require(s, "raw", str, sfile, f"{where}.sentences[{j}]").strip() for j, s in enumerate(sentences)
        ]
        image_path = resolve_inside(root, os.path.join(filepath, filename), f"{sfile}: {where}")
        samples.append(CaptionSample(image_id, image_path, captions))

    if not samples:
        raise DataError(f"{sfile}: no images with split in {sorted(wanted)}")
    if check_images:
        check_images_exist((s.image_path for s in samples), sfile, f"image_root={root}")
    return samples
