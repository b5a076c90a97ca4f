"""Write the synthetic scenes task to disk in the official VQA v2 and COCO captions formats.

The scenes, questions and captions come from :mod:`mmadapt.data.synthetic.scene_world`; this module only lays them
out as files, so every loader and evaluator written for the real datasets runs unchanged on them::

    root/
      manifest.json                      what is here (below); a recipe points at ``root`` only
      images/{split}/{image_id:012d}.png
      {split}_questions.json             official VQA v2 questions format, 5 questions per image
      {split}_annotations.json           official VQA v2 annotations format, 10 answers per question
      {split}_captions.json              official COCO captions format, 5 captions per image

``manifest.json``::

    {"format": "mmadapt-scenes", "format_version": 1, "image_template": "{image_id:012d}.png",
     "splits": {"train": {"n_images": 2000, "seed": 0, "image_size": 64, "max_objects": 3,
                          "data_subtype": "synthetic_train", "first_image_id": 1000000,
                          "image_root": "images/train", "image_template": "{image_id:012d}.png",
                          "n_questions": 10000, "n_captions": 10000,
                          "files": {"questions": "train_questions.json",
                                    "annotations": "train_annotations.json",
                                    "captions": "train_captions.json"}}, ...}}

Ids: each split owns a block of a million image ids (train 1,000,000+, val 2,000,000+, test 3,000,000+,
other names a block picked by a hash of the name), so splits never overlap. Question ``k`` (0..4) of image
``i`` has id ``i * 10 + k``; caption ``k`` has id ``i * 10 + k`` too.

Answers: each question gets ten human-style answers. Most are the true answer verbatim; some questions
carry realistic variants that the official VQA answer normalisation maps back to it ("two" for "2",
"Red", "yes.", "the left"), never enough to outvote it, and ``multiple_choice_answer`` is the true answer.

Everything is a pure function of ``(seed, split, image index)``: the same arguments give byte-identical
files, and each image can be regenerated alone.
"""

from __future__ import annotations

import os
import random
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmadapt.config import DatasetConfig
from mmadapt.data._records import PathLike, read_json, write_json_atomic
from mmadapt.data.formats.coco_captions import CaptionSample, load_coco_captions
from mmadapt.data.formats.vqa_v2 import VQASample, load_vqa
from mmadapt.data.split import ReadContext, Split, register_format, require_fields
from mmadapt.data.synthetic import scene_world as scenes
from mmadapt.errors import ConfigError, DataError
from mmadapt.io._files import resolve_inside

__all__ = [
    "FORMAT_VERSION",
    "ensure_scenes_dataset",
    "load_scenes_captions",
    "load_scenes_vqa",
    "read_manifest",
    "split_first_image_id",
    "write_scenes_dataset",
]

FORMAT = "mmadapt-scenes"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
IMAGE_TEMPLATE = "{image_id:012d}.png"
QUESTIONS_PER_IMAGE = 5
CAPTIONS_PER_IMAGE = 5
ANSWERS_PER_QUESTION = 10
IDS_PER_SPLIT = 1_000_000
_KNOWN_SPLIT_BLOCKS = {"train": 1, "val": 2, "test": 3}
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")

_INFO = {
    "description": "mmadapt synthetic scenes (coloured shapes) in the VQA v2 / COCO formats",
    "url": "https://github.com/mmadapt/mmadapt",
    "version": "1.0",
    "year": 2026,
    "contributor": "mmadapt",
    "date_created": "2026-01-01 00:00:00",
}
_LICENSE = {"name": "Creative Commons Attribution 4.0 International License",
            "url": "http://creativecommons.org/licenses/by/4.0/"}
_NUMBER_WORDS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five"}


def split_first_image_id(split: str) -> int:
    """The first image id of ``split``'s block (train 1,000,000; val 2,000,000; test 3,000,000; others hashed)."""
    _check_split_name(split)
    block = _KNOWN_SPLIT_BLOCKS.get(split)
    if block is None:
        block = 10 + zlib.crc32(split.encode("utf-8")) % 990
    return block * IDS_PER_SPLIT


def write_scenes_dataset(
    root: PathLike,
    split: str,
    n_images: int,
    seed: int,
    image_size: int = 64,
    max_objects: int = 3,
) -> dict[str, Path]:
    """Write ``n_images`` synthetic scenes of ``split`` under ``root`` and record them in the manifest.

    Returns the paths written: ``{"questions", "annotations", "captions", "images" (the folder),
    "manifest"}``. The split's manifest entry is removed first and added back last, so a writer killed
    half-way leaves a split that :func:`ensure_scenes_dataset` rewrites. Stale images of an earlier,
    larger write of the same split are deleted.
    """
    _check_split_name(split)
    if not 0 < n_images < IDS_PER_SPLIT:
        raise ConfigError(f"n_images: expected 1..{IDS_PER_SPLIT - 1}, got {n_images}")
    if image_size < 16:
        raise ConfigError(f"image_size: expected >= 16, got {image_size}")
    if not 1 <= max_objects <= len(scenes.SHAPES):
        raise ConfigError(f"max_objects: expected 1..{len(scenes.SHAPES)}, got {max_objects}")

    root = Path(root)
    _update_manifest(root, split, None)
    image_dir = root / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    subtype = f"synthetic_{split}"
    first_id = split_first_image_id(split)

    images: list[dict[str, Any]] = []
    questions: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    captions: list[dict[str, Any]] = []
    written: set[str] = set()
    for index in range(n_images):
        image_id = first_id + index
        rng = random.Random(f"{FORMAT}/{seed}/{split}/{index}")
        scene = scenes.sample_scene(rng, max_objects=max_objects)
        file_name = IMAGE_TEMPLATE.format(image_id=image_id)
        scenes.render_scene(scene, image_size, rng).save(image_dir / file_name, format="PNG", compress_level=1)
        written.add(file_name)
        images.append({"id": image_id, "file_name": file_name, "width": image_size, "height": image_size,
                       "license": 0})
        for k, q in enumerate(scenes.questions_for_scene(scene, rng)):
            qid = image_id * 10 + k
            questions.append({"image_id": image_id, "question": q.question, "question_id": qid})
            annotations.append({
                "question_id": qid,
                "image_id": image_id,
                "question_type": q.question_type,
                "answer_type": q.answer_type,
                "answers": _human_answers(q, rng),
                "multiple_choice_answer": q.answer,
            })
        for k, text in enumerate(scenes.captions_for_scene(scene, rng, n=CAPTIONS_PER_IMAGE)):
            captions.append({"image_id": image_id, "id": image_id * 10 + k, "caption": text})
    _remove_stale_images(image_dir, written)

    files = {"questions": f"{split}_questions.json", "annotations": f"{split}_annotations.json",
             "captions": f"{split}_captions.json"}
    write_json_atomic(root / files["questions"], {
        "info": _INFO, "task_type": "Open-Ended", "data_type": FORMAT, "data_subtype": subtype,
        "license": _LICENSE, "questions": questions,
    })
    write_json_atomic(root / files["annotations"], {
        "info": _INFO, "license": _LICENSE, "data_type": FORMAT, "data_subtype": subtype,
        "annotations": annotations,
    })
    write_json_atomic(root / files["captions"], {
        "info": _INFO, "licenses": [{"id": 0, **_LICENSE}], "images": images, "annotations": captions,
    })
    entry = {
        "n_images": n_images, "seed": seed, "image_size": image_size, "max_objects": max_objects,
        "data_subtype": subtype, "first_image_id": first_id, "image_root": f"images/{split}",
        "image_template": IMAGE_TEMPLATE, "n_questions": len(questions), "n_captions": len(captions),
        "files": files,
    }
    manifest = _update_manifest(root, split, entry)
    return {**{k: root / v for k, v in files.items()}, "images": image_dir, "manifest": manifest}


def ensure_scenes_dataset(
    root: PathLike,
    splits: Mapping[str, int],
    seed: int = 0,
    image_size: int = 64,
    max_objects: int = 3,
) -> dict[str, dict[str, Path]]:
    """Make sure ``root`` holds ``splits`` (``{"train": 2000, "val": 500}``) generated with these settings.

    A split is (re)written only if the manifest lacks it, records other sizes / seed / settings, or its
    files are gone; otherwise the files on disk are reused. Returns ``{split: paths}`` as
    :func:`write_scenes_dataset` does.
    """
    if not splits:
        raise ConfigError("splits: expected at least one split, e.g. {'train': 2000, 'val': 500}")
    root = Path(root)
    out: dict[str, dict[str, Path]] = {}
    for split, n_images in splits.items():
        wanted = {"n_images": n_images, "seed": seed, "image_size": image_size, "max_objects": max_objects}
        entry = _manifest_or_empty(root).get("splits", {}).get(split)
        if entry is not None and _entry_is_current(root, entry, wanted):
            out[split] = _entry_paths(root, entry)
        else:
            out[split] = write_scenes_dataset(root, split, n_images, seed, image_size, max_objects)
    return out


def read_manifest(root: PathLike) -> dict[str, Any]:
    """Read and check ``root/manifest.json`` (raises :class:`DataError` if missing or of another format)."""
    path = Path(root) / MANIFEST
    manifest = read_json(path)
    if manifest.get("format") != FORMAT:
        raise DataError(f"{path}: format: expected {FORMAT!r}, got {manifest.get('format')!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{path}: format_version: expected {FORMAT_VERSION}, got {manifest.get('format_version')!r}"
        )
    return manifest


def load_scenes_vqa(root: PathLike, split: str, check_images: bool = True) -> list[VQASample]:
    """The VQA samples of ``split`` of the synthetic dataset at ``root`` (via
    :func:`~mmadapt.data.formats.vqa_v2.load_vqa`)."""
    root = Path(root)
    entry = _split_entry(root, split)
    paths = _entry_paths(root, entry)
    return load_vqa(paths["questions"], paths["annotations"], image_root=paths["images"],
                    image_template=entry["image_template"], check_images=check_images)


def load_scenes_captions(root: PathLike, split: str, check_images: bool = True) -> list[CaptionSample]:
    """The caption samples of ``split`` of the synthetic dataset at ``root`` (one per image)."""
    root = Path(root)
    entry = _split_entry(root, split)
    paths = _entry_paths(root, entry)
    return load_coco_captions(paths["captions"], paths["images"], check_images=check_images)


def _human_answers(q: scenes.Question, rng: random.Random) -> list[dict[str, Any]]:
    """Ten answers to ``q`` as VQA annotators give them: mostly verbatim, sometimes a variant spelling.

    About a third of the questions get 1..3 variants that the official normalisation (lower-case, strip
    punctuation and articles, number words to digits) maps back to ``q.answer``; at least 7 of 10 answers
    stay verbatim, so the raw majority is the true answer too.
    """
    answers = [q.answer] * ANSWERS_PER_QUESTION
    if rng.random() < 1 / 3:
        variants = _variants(q.answer)
        for slot in rng.sample(range(ANSWERS_PER_QUESTION), rng.randint(1, 3)):
            answers[slot] = rng.choice(variants)
    return [
        {"answer": a, "answer_confidence": "yes" if rng.random() < 0.9 else "maybe", "answer_id": i + 1}
        for i, a in enumerate(answers)
    ]


def _variants(answer: str) -> list[str]:
    """Spellings of ``answer`` that the official VQA normalisation maps back to it."""
    if answer in _NUMBER_WORDS:  # no "2.": re-implementations of the period rule differ next to digits
        return [_NUMBER_WORDS[answer], _NUMBER_WORDS[answer].capitalize(), f" {answer}"]
    variants = [answer.capitalize(), f"{answer}.", f" {answer}", answer.upper()]
    if answer not in ("yes", "no"):
        variants += [f"the {answer}", f"a {answer}" if answer[0] not in "aeiou" else f"an {answer}"]
    return [v for v in variants if v != answer]


def _check_split_name(split: str) -> None:
    if not isinstance(split, str) or not _SPLIT_NAME.match(split):
        raise ConfigError(f"split: expected a name of letters, digits, '_' or '-', got {split!r}")


def _remove_stale_images(image_dir: Path, keep: set[str]) -> None:
    """Delete images of ours (12-digit names) left from an earlier write with more images."""
    for name in os.listdir(image_dir):
        if name not in keep and re.fullmatch(r"\d{12}\.png", name):
            (image_dir / name).unlink(missing_ok=True)


def _manifest_or_empty(root: Path) -> dict[str, Any]:
    if not (root / MANIFEST).exists():
        return {}
    try:
        return read_manifest(root)
    except DataError:
        return {}  # unreadable or of an older format: everything gets rewritten


def _update_manifest(root: Path, split: str, entry: dict[str, Any] | None) -> Path:
    """Set (or, with ``entry=None``, remove) ``split`` in ``root/manifest.json``, atomically."""
    manifest = _manifest_or_empty(root) or {"format": FORMAT, "format_version": FORMAT_VERSION,
                                            "image_template": IMAGE_TEMPLATE, "splits": {}}
    splits = dict(manifest.get("splits", {}))
    if entry is None:
        splits.pop(split, None)
    else:
        splits[split] = entry
    manifest["splits"] = dict(sorted(splits.items()))
    return write_json_atomic(root / MANIFEST, manifest)


def _split_entry(root: Path, split: str) -> dict[str, Any]:
    manifest = read_manifest(root)
    entry = manifest.get("splits", {}).get(split)
    if entry is None:
        raise DataError(
            f"{root / MANIFEST}: splits.{split} missing (have {sorted(manifest.get('splits', {}))})"
        )
    return entry


def _entry_is_current(root: Path, entry: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Does ``entry`` record the ``wanted`` settings, with its files (and first / last image) on disk?"""
    if any(entry.get(k) != v for k, v in wanted.items()):
        return False
    try:
        paths = _entry_paths(root, entry)
        first, n = int(entry["first_image_id"]), int(entry["n_images"])
        template = str(entry["image_template"])
    except (KeyError, TypeError, ValueError):
        return False
    needed = [paths["questions"], paths["annotations"], paths["captions"],
              paths["images"] / template.format(image_id=first),
              paths["images"] / template.format(image_id=first + n - 1)]
    return all(p.exists() for p in needed)


def _entry_paths(root: Path, entry: dict[str, Any]) -> dict[str, Path]:
    """The files a manifest entry names, each checked to lie inside ``root`` (DataError if not)."""
    files, source = entry["files"], f"{root / MANIFEST}: splits entry"
    return {
        **{key: resolve_inside(root, files[key], f"{source} files.{key}")
           for key in ("questions", "annotations", "captions")},
        "images": resolve_inside(root, entry["image_root"], f"{source} image_root"),
        "manifest": root / MANIFEST,
    }


@dataclass
class SyntheticScenesConfig(DatasetConfig):
    """The synthetic scenes set (VQA v2 questions / annotations and COCO captions) under ``root``, written if
    missing: ``split`` and ``n_images`` choose the part, ``seed`` makes it reproducible."""

    root: str | None = None
    split: str | None = None
    n_images: int | None = None
    seed: int = 0


@register_format("synthetic_scenes", SyntheticScenesConfig, serves=("vqa", "caption"))
def read_synthetic_scenes(cfg: SyntheticScenesConfig, ctx: ReadContext) -> Split:
    require_fields(cfg, ("root", "split", "n_images"), ctx.where)
    paths = ensure_scenes_dataset(cfg.root, {cfg.split: cfg.n_images}, seed=cfg.seed)[cfg.split]
    if ctx.kind == "caption":
        return Split("caption", load_scenes_captions(cfg.root, cfg.split))
    entry = read_manifest(cfg.root)["splits"][cfg.split]
    samples = load_vqa(paths["questions"], paths.get("annotations"), image_root=paths["images"],
                       image_template=entry["image_template"])
    return Split("vqa", samples, questions=paths["questions"], annotations=paths.get("annotations"))
