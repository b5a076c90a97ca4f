"""Readers and writers for the official VQA v2 file formats.

Questions file (``v2_OpenEnded_mscoco_val2014_questions.json``)::

    {"info": {...}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val2014",
     "license": {...},
     "questions": [{"image_id": 262148, "question": "Where is he looking?", "question_id": 262148000}, ...]}

Annotations file (``v2_mscoco_val2014_annotations.json``; absent for test / test-dev)::

    {"info": {...}, "license": {...}, "data_type": "mscoco", "data_subtype": "val2014",
     "annotations": [{"question_id": 262148000, "image_id": 262148, "question_type": "where is",
                      "answer_type": "other", "multiple_choice_answer": "down",
                      "answers": [{"answer": "down", "answer_confidence": "yes", "answer_id": 1}, ...]}]}

Results file (what the official evaluator reads)::

    [{"question_id": 262148000, "answer": "down"}, ...]

Images follow the COCO convention ``{image_root}/COCO_{data_subtype}_{image_id:012d}.jpg`` unless an
``image_template`` (fields ``{image_id}`` and ``{data_subtype}``, relative to ``image_root``) says otherwise.

Every problem in a file is a :class:`~mmadapt.errors.DataError` naming the file and the field, e.g.
``val_questions.json: questions[12].question_id missing``.
"""

from __future__ import annotations

import os
import string
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    "COCO_IMAGE_TEMPLATE",
    "VQASample",
    "format_image_path",
    "load_vqa",
    "load_vqa_results",
    "training_answer",
    "write_vqa_results",
]

COCO_IMAGE_TEMPLATE = "COCO_{data_subtype}_{image_id:012d}.jpg"
_TEMPLATE_FIELDS = frozenset({"image_id", "data_subtype"})


@dataclass
class VQASample:
    """One question about one image, with its ground-truth answers when the split has annotations.

    ``answers`` holds the (usually ten) human answers verbatim; it is empty, and the three fields after it
    are ``None``, for splits without annotations (test, test-dev).
    """

    question_id: int
    image_id: int
    question: str
    image_path: Path
    answers: list[str] = field(default_factory=list)
    multiple_choice_answer: str | None = None
    question_type: str | None = None
    answer_type: str | None = None


def training_answer(sample: VQASample) -> str | None:
    """The answer a question trains on: its ``multiple_choice_answer`` (the most common human answer), else
    the most common of its ``answers``; ``None`` without answers (a test split)."""
    if sample.multiple_choice_answer:
        return sample.multiple_choice_answer
    if sample.answers:
        return Counter(sample.answers).most_common(1)[0][0]
    return None


@dataclass
class VQAv2Config(DatasetConfig):
    """The official VQA v2 files: ``questions`` (+ ``annotations``, absent for test splits) JSON, images
    under ``image_root`` named by ``image_template`` (default COCO's
    ``COCO_{data_subtype}_{image_id:012d}.jpg``)."""

    questions: str | None = None
    annotations: str | None = None
    image_root: str | None = None
    image_template: str | None = None


@register_format("vqa_v2", VQAv2Config, serves=("vqa",))
def read_vqa_v2(cfg: VQAv2Config, ctx: ReadContext) -> Split:
    if cfg.questions is None:
        raise ConfigError(f"{ctx.where}.questions: required for format vqa_v2")
    samples = load_vqa(cfg.questions, cfg.annotations, image_root=cfg.image_root, image_template=cfg.image_template)
    return Split("vqa", samples, questions=Path(cfg.questions),
                 annotations=Path(cfg.annotations) if cfg.annotations else None)


def load_vqa(
    questions_path: PathLike,
    annotations_path: PathLike | None = None,
    image_root: PathLike | None = None,
    image_template: str | None = None,
    check_images: bool = True,
) -> list[VQASample]:
    """Read a VQA v2 questions file (and optionally its annotations) into samples, in question order.

    Args:
        questions_path: the official questions JSON.
        annotations_path: the official annotations JSON; ``None`` for splits without answers. When given,
            every question must have exactly one annotation, with the same ``image_id``.
        image_root: folder the image paths are relative to (default: the questions file's folder); a
            ``data_subtype`` or template that leads outside it is refused.
        image_template: file name pattern with ``{image_id}`` / ``{data_subtype}`` fields, relative to
            ``image_root`` (default :data:`COCO_IMAGE_TEMPLATE`).
        check_images: check once that every referenced image exists.

    Raises:
        DataError: a missing or malformed file or field, duplicate question ids, an annotation without a
            question (or the reverse), or missing images (first path and count).
        ConfigError: ``image_template`` uses an unknown field.
    """
    qfile = os.fspath(questions_path)
    template = image_template if image_template is not None else COCO_IMAGE_TEMPLATE
    _check_template(template)
    root = Path(image_root) if image_root is not None else Path(qfile).parent

    doc = read_json(qfile)
    subtype = optional(doc, "data_subtype", str, qfile, "")
    if subtype is None and "data_subtype" in _template_fields(template):
        raise DataError(f"{qfile}: data_subtype missing (needed by image_template {template!r})")
    questions = require(doc, "questions", list, qfile, "")

    samples: list[VQASample] = []
    position: dict[int, int] = {}
    paths: dict[int, Path] = {}
    for i, q in enumerate(questions):
        where = f"questions[{i}]"
        qid = require(q, "question_id", int, qfile, where)
        image_id = require(q, "image_id", int, qfile, where)
        text = require(q, "question", str, qfile, where)
        if qid in position:
            raise DataError(f"{qfile}: {where}.question_id {qid} duplicates questions[{position[qid]}]")
        position[qid] = i
        if image_id not in paths:
            paths[image_id] = resolve_inside(root, format_image_path(template, image_id, subtype), f"{qfile}: {where}")
        samples.append(VQASample(qid, image_id, text, paths[image_id]))

    if annotations_path is not None:
        _attach_annotations(samples, position, os.fspath(annotations_path), qfile, subtype)
    if check_images:
        check_images_exist(paths.values(), qfile, f"image_root={root}, image_template={template!r}")
    return samples


def format_image_path(template: str, image_id: int, data_subtype: str | None) -> str:
    """The image file name for ``image_id``: ``template`` with ``{image_id}`` / ``{data_subtype}`` filled in."""
    return template.format(image_id=image_id, data_subtype=data_subtype)


def write_vqa_results(path: PathLike, results: Iterable[tuple[int, str]]) -> Path:
    """Write ``[(question_id, answer), ...]`` in the official results format ``[{"question_id", "answer"}]``.

    Question ids may be Python, numpy or torch integers. Duplicate question ids are refused (the official
    evaluator would silently keep one). The file is written atomically; returns its path.
    """
    records: list[dict[str, Any]] = []
    for i, (qid, answer) in enumerate(results):
        if not isinstance(answer, str):
            raise DataError(f"results[{i}].answer: expected str, got {type(answer).__name__}")
        records.append({"question_id": result_id(qid, "question_id", i), "answer": answer})
    check_unique_results((r["question_id"] for r in records), "question_id", path)
    return write_json_atomic(path, records)


def load_vqa_results(path: PathLike) -> dict[int, str]:
    """Read an official VQA results file back into ``{question_id: answer}``."""
    where = os.fspath(path)
    doc = read_json(where, list)
    out: dict[int, str] = {}
    for i, r in enumerate(doc):
        qid = require(r, "question_id", int, where, f"[{i}]")
        answer = require(r, "answer", str, where, f"[{i}]")
        if qid in out:
            raise DataError(f"{where}: [{i}].question_id {qid} appears twice")
        out[qid] = answer
    return out


def _attach_annotations(
    samples: list[VQASample], position: dict[int, int], afile: str, qfile: str, subtype: str | None
) -> None:
    """Fill answers / types from the annotations file into ``samples`` (matched by question id)."""
    doc = read_json(afile)
    asubtype = optional(doc, "data_subtype", str, afile, "")
    if subtype is not None and asubtype is not None and asubtype != subtype:
        raise DataError(f"{afile}: data_subtype {asubtype!r} does not match {qfile} ({subtype!r})")
    annotations = require(doc, "annotations", list, afile, "")

    seen: dict[int, int] = {}
    for i, a in enumerate(annotations):
        where = f"annotations[{i}]"
        qid = require(a, "question_id", int, afile, where)
        image_id = require(a, "image_id", int, afile, where)
        if qid in seen:
            raise DataError(f"{afile}: {where}.question_id {qid} duplicates annotations[{seen[qid]}]")
        seen[qid] = i
        if qid not in position:
            raise DataError(f"{afile}: {where}.question_id {qid} has no question in {qfile}")
        sample = samples[position[qid]]
        if image_id != sample.image_id:
            raise DataError(
                f"{afile}: {where}.image_id {image_id} does not match question {qid} in {qfile} "
                f"(image_id {sample.image_id})"
            )
        answers = require(a, "answers", list, afile, where)
        if not answers:
            raise DataError(f"{afile}: {where}.answers is empty")
        sample.answers = [require(x, "answer", str, afile, f"{where}.answers[{j}]") for j, x in enumerate(answers)]
        sample.multiple_choice_answer = require(a, "multiple_choice_answer", str, afile, where)
        sample.question_type = require(a, "question_type", str, afile, where)
        sample.answer_type = require(a, "answer_type", str, afile, where)

    if len(seen) != len(samples):
        unanswered = [s.question_id for s in samples if s.question_id not in seen]
        raise DataError(
            f"{afile}: {len(unanswered)} of {len(samples)} questions in {qfile} have no annotation, "
            f"first question_id {unanswered[0]}"
        )


def _template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _check_template(template: str) -> None:
    """Refuse a template with unknown fields or bad syntax before reading any file."""
    try:
        names = _template_fields(template)
    except ValueError as exc:
        raise ConfigError(f"image_template {template!r}: {exc}") from None
    unknown = names - _TEMPLATE_FIELDS
    if unknown or "image_id" not in names:
        raise ConfigError(
            f"image_template {template!r}: fields must be {{image_id}} (required) and {{data_subtype}}, "
            f"got {sorted(names)}"
        )
    try:
        format_image_path(template, 1, "subtype")
    except (ValueError, KeyError, IndexError) as exc:
        raise ConfigError(f"image_template {template!r}: {exc}") from None
