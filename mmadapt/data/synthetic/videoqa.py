"""Synthetic video QA (format ``synthetic_videoqa``): the moving-shape clips of
:func:`~mmadapt.data.synthetic.video.write_video_dataset` with two questions each — "which way does the shape
move?" (needs the frame order) and "what shape is moving?" — in the MSRVTT-QA layout (``<split>_qa.json``),
deterministic given (split, seed). The words are :mod:`mmadapt.data.synthetic.media_text`'s."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from mmadapt.data.formats.msrvtt_qa import load_video_qa
from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.data.synthetic.generated import GeneratedConfig, generate
from mmadapt.data.synthetic.media_text import DIRECTION_QUESTION, SHAPE_QUESTION, VIDEO_TEMPLATE, direction_word
from mmadapt.data.synthetic.video import write_video_dataset

PathLike = str | os.PathLike[str]


def write_videoqa_dataset(root: PathLike, split: str, n: int, seed: int) -> Path:
    """``n`` clips and ``2 n`` questions of ``split``; returns ``<root>/<split>_qa.json`` (MSRVTT-QA format)."""
    root = Path(root)
    manifest = write_video_dataset(root, split, n, seed)
    items = []
    for video_id, line in enumerate(manifest.read_text(encoding="utf-8").splitlines()):
        clip = json.loads(line)
        common = {"video_id": video_id, "video": clip["path"]}
        items.append({"id": 2 * video_id, **common, "question": DIRECTION_QUESTION,
                      "answer": direction_word(clip["label"])})
        items.append({"id": 2 * video_id + 1, **common, "question": SHAPE_QUESTION, "answer": clip["shape"]})
    path = root / f"{split}_qa.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(items, indent=0), encoding="utf-8")
    tmp.replace(path)
    return path


@dataclass
class SyntheticVideoQAConfig(GeneratedConfig):
    """Moving-shape clips with two questions each (direction, shape) in the MSRVTT-QA layout, generated under
    ``root`` (``split``, ``n_samples``, ``seed``)."""


@register_format("synthetic_videoqa", SyntheticVideoQAConfig, serves=("vqa",))
def read_synthetic_videoqa(cfg: SyntheticVideoQAConfig, ctx: ReadContext) -> Split:
    return Split("vqa", load_video_qa(generate(cfg, ctx, write_videoqa_dataset), cfg.root, VIDEO_TEMPLATE))
