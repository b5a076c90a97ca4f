"""Torch ``Dataset``\\ s over loaded VQA / caption samples, tolerant of bad images.

Each item is a plain dict. The image is read with :func:`mmadapt.io.image.load_image`; if that fails, the
item carries ``"image": None`` and the one-line reason in ``"error"`` instead of raising, so an evaluation
loop can record the bad sample and go on (training code may drop such items in its collate function).

VQA item::

    {"image": PIL.Image | None, "error": str | None, "image_path": str,
     "question_id": int, "image_id": int, "question": str,
     "answers": list[str], "multiple_choice_answer": str | None,
     "question_type": str | None, "answer_type": str | None}

Caption item (``per_caption=False``: one per image, for evaluation)::

    {"image": PIL.Image | None, "error": str | None, "image_path": str,
     "image_id": int, "captions": list[str]}

``per_caption=True`` (training: one item per (image, caption) pair) adds ``"caption": str`` and
``"caption_index": int``. Images without captions contribute no pairs.

The default ``collate_fn`` of a ``DataLoader`` cannot stack PIL images or ``None``; use
:func:`collate_as_lists` to get ``{key: [values...]}`` and tokenise in the model's own collate step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from mmadapt.data.formats.coco_captions import CaptionSample
from mmadapt.data.formats.vqa_v2 import VQASample
from mmadapt.io.batch import load_one
from mmadapt.io.image import load_image

__all__ = ["CaptionDataset", "VQADataset", "collate_as_lists"]

ImageTransform = Callable[[Image.Image], Any]


class VQADataset(Dataset[dict[str, Any]]):
    """One item per question; see the module docstring for the item layout.

    ``transform`` (optional) is applied to the loaded image; its result replaces ``"image"``.
    """

    def __init__(self, samples: Sequence[VQASample], transform: ImageTransform | None = None) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.samples[index]
        image, error = _load(s.image_path, self.transform)
        return {
            "image": image,
            "error": error,
            "image_path": str(s.image_path),
            "question_id": s.question_id,
            "image_id": s.image_id,
            "question": s.question,
            "answers": list(s.answers),
            "multiple_choice_answer": s.multiple_choice_answer,
            "question_type": s.question_type,
            "answer_type": s.answer_type,
        }


class CaptionDataset(Dataset[dict[str, Any]]):
    """One item per image (``per_caption=False``) or per (image, caption) pair (``per_caption=True``)."""

    def __init__(
        self,
        samples: Sequence[CaptionSample],
        per_caption: bool = False,
        transform: ImageTransform | None = None,
    ) -> None:
        self.samples = list(samples)
        self.per_caption = per_caption
        self.transform = transform
        # (sample index, caption index) for every item; caption index -1 means "the whole image".
        self._index: list[tuple[int, int]] = (
            [(i, k) for i, s in enumerate(self.samples) for k in range(len(s.captions))]
            if per_caption
            else [(i, -1) for i in range(len(self.samples))]
        )

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i, k = self._index[index]
        s = self.samples[i]
        image, error = _load(s.image_path, self.transform)
        item: dict[str, Any] = {
            "image": image,
            "error": error,
            "image_path": str(s.image_path),
            "image_id": s.image_id,
            "captions": list(s.captions),
        }
        if k >= 0:
            item["caption"] = s.captions[k]
            item["caption_index"] = k
        return item


def collate_as_lists(items: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Batch dict items into ``{key: [value of each item]}`` without stacking (for ``DataLoader``)."""
    if not items:
        return {}
    return {key: [item.get(key) for item in items] for key in items[0]}


def _load(path: Any, transform: ImageTransform | None) -> tuple[Any, str | None]:
    """The (transformed) image at ``path`` and no error, or ``None`` and the one-line reason it failed."""
    image, error = load_one(path, load_image)
    if error is not None:
        return None, error
    return (transform(image) if transform is not None else image), None
