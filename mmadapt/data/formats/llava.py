"""LLaVA-style conversation JSON (format ``llava``): visual instruction data as LLaVA, ShareGPT4V and most
of their successors ship it, read for VQA or captioning::

    [{"id": "000000033471", "image": "coco/train2017/000000033471.jpg",
      "conversations": [{"from": "human", "value": "<image>\\nWhat are the colors of the bus in the image?"},
                        {"from": "gpt", "value": "The bus in the image is white and red."},
                        {"from": "human", "value": "What feature can be seen on the back of the bus?"},
                        {"from": "gpt", "value": "The back of the bus features an advertisement."}]},
     ...]

The file is a JSON list (LLaVA's own) or JSON lines, one object a line. Images are ``image_root / image``
(default root: the file's folder), refused if the path leads outside the root. Entries without an
``image`` (the text-only conversations of instruction mixes) are not read.

- **VQA** (``kind vqa``): each human turn followed by a gpt turn is one question whose answer is the reply.
  The ``<image>`` placeholder and the whitespace around it are removed from the question; earlier turns are
  not part of it. Question ids number the questions in file order; image ids number the distinct images.
  The ten reference answers are the reply repeated (so the official VQA accuracy is exact match after its
  normalisation); the answer type is ``yes/no`` for a yes / no reply, ``number`` for a numeral, else
  ``other``; the question type is the question's first two words.
- **Captioning** (``kind caption``): every gpt reply of an image is a reference caption of it (pretraining
  sets such as LLaVA's 558k captions have one exchange per entry); entries of the same image are merged.

Every problem is a one-line :class:`~mmadapt.errors.DataError` naming the file and the entry, e.g.
``llava.json: [3].conversations[1].value: expected str, got int (7)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmadapt.config import DatasetConfig
from mmadapt.data._records import check_images_exist, optional, read_json, require
from mmadapt.data.formats.coco_captions import CaptionSample
from mmadapt.data.formats.vqa_v2 import VQASample
from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.errors import ConfigError, DataError
from mmadapt.io._files import resolve_inside
from mmadapt.io.json_records import read_json_lines

IMAGE_TOKEN = "<image>"
HUMAN, ASSISTANT = "human", "gpt"


@dataclass(frozen=True)
class Exchange:
    """One human turn and the reply to it, about one image."""

    entry: int  # index of the entry in the file
    image_id: int
    image_path: Path
    question: str
    answer: str


@dataclass
class LLaVAConfig(DatasetConfig):
    """LLaVA conversation JSON (``[{id, image, conversations: [{from, value}, ...]}]``, or JSON lines):
    ``annotations`` = the file, images under ``image_root`` (default: its folder). Read as questions
    (each human → gpt exchange) or as captions (the gpt replies of an image)."""

    annotations: str | None = None
    image_root: str | None = None


@register_format("llava", LLaVAConfig, serves=("vqa", "caption"))
def read_llava(cfg: LLaVAConfig, ctx: ReadContext) -> Split:
    if cfg.annotations is None:
        raise ConfigError(f"{ctx.where}.annotations: required for format llava (the conversation JSON)")
    exchanges = load_llava(cfg.annotations, cfg.image_root)
    if ctx.kind == "caption":
        return Split("caption", captions_of(exchanges))
    return Split("vqa", questions_of(exchanges))


def load_llava(path: str | os.PathLike[str], image_root: str | os.PathLike[str] | None = None,
               check_images: bool = True) -> list[Exchange]:
    """The human → gpt exchanges of a LLaVA conversation file, in file order."""
    file = os.fspath(path)
    entries = _entries(Path(file))
    root = Path(image_root) if image_root is not None else Path(file).parent
    image_ids: dict[str, int] = {}
    exchanges: list[Exchange] = []
    for i, entry in enumerate(entries):
        where = f"[{i}]"
        image = optional(entry, "image", str, file, where)
        turns = require(entry, "conversations", list, file, where)
        if image is None:
            continue
        if image not in image_ids:
            image_ids[image] = len(image_ids)
        image_path = resolve_inside(root, image, f"{file}: {where}.image")
        for t in range(len(turns) - 1):
            speaker = require(turns[t], "from", str, file, f"{where}.conversations[{t}]")
            reply_from = require(turns[t + 1], "from", str, file, f"{where}.conversations[{t + 1}]")
            if speaker != HUMAN or reply_from != ASSISTANT:
                continue
            question = require(turns[t], "value", str, file, f"{where}.conversations[{t}]")
            answer = require(turns[t + 1], "value", str, file, f"{where}.conversations[{t + 1}]").strip()
            question = " ".join(question.replace(IMAGE_TOKEN, " ").split())
            if not question or not answer:
                raise DataError(f"{file}: {where}.conversations[{t}]: empty question or reply")
            exchanges.append(Exchange(i, image_ids[image], image_path, question, answer))
    if not exchanges:
        raise DataError(f"{file}: no human → gpt exchange about an image")
    if check_images:
        check_images_exist((e.image_path for e in exchanges), file, f"image_root={root}")
    return exchanges


def questions_of(exchanges: list[Exchange]) -> list[VQASample]:
    """One VQA sample per exchange (ids in file order; ten identical reference answers)."""
    return [VQASample(question_id=k, image_id=e.image_id, question=e.question, image_path=e.image_path,
                      answers=[e.answer] * 10, multiple_choice_answer=e.answer,
                      question_type=" ".join(e.question.lower().split()[:2]), answer_type=_answer_type(e.answer))
            for k, e in enumerate(exchanges)]


def captions_of(exchanges: list[Exchange]) -> list[CaptionSample]:
    """One caption sample per image, its references the replies about it, in file order."""
    samples: dict[int, CaptionSample] = {}
    for e in exchanges:
        samples.setdefault(e.image_id, CaptionSample(e.image_id, e.image_path)).captions.append(e.answer)
    return list(samples.values())


def _entries(path: Path) -> list[Any]:
    """The file's entries: a JSON list, or JSON lines (one object a line)."""
    if path.suffix.lower() != ".jsonl":
        return read_json(path, top=list)
    return [entry for _, entry in read_json_lines(path)]


def _answer_type(answer: str) -> str:
    word = answer.lower().strip(" .!")
    if word in ("yes", "no"):
        return "yes/no"
    return "number" if word.isdigit() else "other"
