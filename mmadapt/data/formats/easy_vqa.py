"""easy-VQA (format ``easy_vqa``): 5,000 images of one coloured shape (64 × 64 px) and 48,248 questions about
them with 13 answers, as the pip package ``easy-vqa`` ships them (mmadapt's extra ``[easy_vqa]``)::

    <root>/answers.txt                   the 13 answers, one a line
    <root>/{train,test}/questions.json   [[question, answer, image_id], ...]
    <root>/{train,test}/images/{image_id}.png

``root`` defaults to the installed package's ``data`` folder (4,000 training images / 38,575 questions, 1,000
test images / 9,673 questions); a copy of that layout elsewhere can be named instead. Each question is a
VQA sample scored with the official VQA scorer: its ten reference answers are the one answer repeated (so the
accuracy is exact match), its answer type ``yes/no`` or ``other``, its question type the question's template —
the question with its colour and shape words replaced by ``<color>`` and ``<shape>`` (``is there a <color>
shape in the image?``; 24 templates). Question ids number the questions in file order.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from mmadapt.config import DatasetConfig
from mmadapt.data._records import check_images_exist, read_json
from mmadapt.data.formats.vqa_v2 import VQASample
from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.errors import ConfigError, DataError

SPLITS = ("train", "test")
COLORS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")
SHAPES = ("circle", "rectangle", "triangle")
_COLOR_WORDS = re.compile(rf"\b({'|'.join(COLORS)})\b")
_SHAPE_WORDS = re.compile(rf"\b({'|'.join(SHAPES)})\b")


@dataclass
class EasyVQAConfig(DatasetConfig):
    """easy-VQA: ``split`` train / test of the installed ``easy-vqa`` package's data, or of a copy of its
    layout under ``root``."""

    split: str | None = None
    root: str | None = None


@register_format("easy_vqa", EasyVQAConfig, serves=("vqa",))
def read_easy_vqa(cfg: EasyVQAConfig, ctx: ReadContext) -> Split:
    if cfg.split not in SPLITS:
        raise ConfigError(f"{ctx.where}.split: expected train or test, got {cfg.split!r}")
    root = Path(cfg.root) if cfg.root else package_root(ctx.where)
    return Split("vqa", load_easy_vqa(root, cfg.split))


def package_root(where: str = "easy_vqa") -> Path:
    """The ``data`` folder of the installed ``easy-vqa`` package."""
    spec = importlib.util.find_spec("easy_vqa")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"{where}: the pip package easy-vqa is not installed (pip install easy-vqa, mmadapt's extra "
                          "[easy_vqa]), and no root names a copy of its data")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def load_easy_vqa(root: Path, split: str, check_images: bool = True) -> list[VQASample]:
    """The questions of ``split`` under ``root``, in file order."""
    file = root / split / "questions.json"
    rows = read_json(file, top=list)
    samples = []
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str) and isinstance(row[1], str)
                and isinstance(row[2], int) and not isinstance(row[2], bool)):
            raise DataError(f"{file}: [{i}]: expected [question, answer, image_id], got {str(row)[:60]}")
        question, answer, image_id = row
        samples.append(VQASample(question_id=i, image_id=image_id, question=question,
                                 image_path=root / split / "images" / f"{image_id}.png", answers=[answer] * 10,
                                 multiple_choice_answer=answer, question_type=question_template(question),
                                 answer_type="yes/no" if answer in ("yes", "no") else "other"))
    if not samples:
        raise DataError(f"{file}: no questions")
    if check_images:
        check_images_exist((s.image_path for s in samples), str(file), f"images under {root / split / 'images'}")
    return samples


def question_template(question: str) -> str:
    """``"is there a red circle?"`` → ``"is there a <color> <shape>?"``."""
    return _SHAPE_WORDS.sub("<shape>", _COLOR_WORDS.sub("<color>", question))
