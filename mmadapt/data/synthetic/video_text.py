"""Synthetic video–text clips whose meaning lies in frame ORDER: a screen cycling through three named colours
behind a shape, with one caption (MSR-VTT retrieval layout) and two questions (MSRVTT-QA layout) per clip::

    root/
      {split}_captions.csv     video_id,video,sentence      "3,val/000003.mp4,a disc on a screen cycling blue , red , green ."
      {split}_qa.json          [{id, video_id, video, question, answer}]
      {split}.jsonl            {"path": ..., "label": "blue-red-green", "shape": ...}: video classification by cycle
      {split}/000000.mp4 ...   H.264, size × size, n_frames frames

Each clip shows one grey shape (square, disc or diamond; random size and place) on a background that steps
through a *cycle* of three of :data:`COLOURS` — each colour for ``n_frames / 3`` frames, starting at a random
phase of the cycle. A caption names the cycle from its first colour in :data:`COLOURS` order ("blue , red ,
green"), so a caption is a property of the cycle, not of where the clip starts. What holds by construction:

* **no frame and no set of frames tells the order**: a cycle and its reverse (blue → red → green vs
  blue → green → red) show the same three colours for the same number of frames; only their order differs;
  "what colour comes after red?" is answerable only from frame order (a model blind to it tops out at 50%
  on those questions);
* a split with ``n ≤ 60`` clips has distinct captions (20 cycles × 3 shapes), so text → video retrieval has
  one right answer per caption; beyond 60, cycles repeat.

Deterministic in ``(seed, split, index)``.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmadapt.data.formats.manifest import manifest_records
from mmadapt.data.formats.msrvtt_qa import load_video_qa
from mmadapt.data.formats.msrvtt_retrieval import read_captions
from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.data.synthetic._manifest import check_split_n_seed, write_manifest
from mmadapt.data.synthetic.generated import GeneratedConfig, generate
from mmadapt.data.synthetic.video import SHAPES
from mmadapt.errors import ConfigError
from mmadapt.io.video import write_video

__all__ = ["COLOURS", "CYCLES", "AFTER_QUESTION", "SHAPE_QUESTION", "caption", "write_video_text_dataset"]

COLOURS: dict[str, tuple[int, int, int]] = {"blue": (40, 60, 230), "green": (30, 200, 60), "red": (230, 40, 40),
                                              "white": (245, 245, 245), "yellow": (235, 220, 40)}
#: every 3-colour cycle, written from its first colour in COLOURS order (so rotations are one cycle)
CYCLES: tuple[tuple[str, str, str], ...] = tuple(
    c for c in itertools.permutations(COLOURS, 3) if list(COLOURS).index(c[0]) < min(list(COLOURS).index(x) for x in c[1:])
)
AFTER_QUESTION = "what colour comes after {colour}?"
SHAPE_QUESTION = "what shape is on the screen?"
SHAPE_GREY = (128, 128, 128)


def caption(shape: str, cycle: tuple[str, str, str]) -> str:
    return f"a {shape} on a screen cycling {cycle[0]} , {cycle[1]} , {cycle[2]} ."


def _render(rng: np.random.Generator, shape: str, cycle: tuple[str, str, str], size: int, n_frames: int) -> np.ndarray:
    """uint8 [n_frames, size, size, 3]: the shape (fixed) on the cycling background, random phase."""
    radius = int(rng.integers(size // 8, size // 4 + 1))
    row, col = (int(v) for v in rng.integers(radius, size - radius, size=2))
    r, c = np.ogrid[:size, :size]
    d_row, d_col = np.abs(r - row), np.abs(c - col)
    inside = {"square": np.maximum(d_row, d_col) <= radius, "disc": d_row**2 + d_col**2 <= radius**2,
              "diamond": d_row + d_col <= radius}[shape]
    per_colour = n_frames // 3
    phase = int(rng.integers(n_frames))
    frames = np.empty((n_frames, size, size, 3), dtype=np.uint8)
    for t in range(n_frames):
        background = COLOURS[cycle[((t + phase) % n_frames) // per_colour]]
        frames[t] = np.where(inside[..., None], SHAPE_GREY, background)
    return frames


def write_video_text_dataset(root: str | os.PathLike[str], split: str, n: int, seed: int, size: int = 32,
                             n_frames: int = 6, fps: float = 4.0) -> Path:
    """Write ``n`` clips of ``split`` with captions, questions and a classification manifest under ``root``;
    returns the captions CSV."""
    check_split_n_seed(split, n, seed)
    if n_frames < 3 or n_frames % 3:
        raise ConfigError(f"n_frames: expected a multiple of 3 (one third per colour), got {n_frames}")
    if size < 16 or size % 2:
        raise ConfigError(f"size: expected an even number >= 16, got {size}")
    root = Path(root)
    (root / split).mkdir(parents=True, exist_ok=True)
    split_key = zlib.crc32(split.encode("utf-8"))
    combos = [(s, c) for c in CYCLES for s in SHAPES]
    order = np.random.default_rng([seed, split_key]).permutation(len(combos))
    rows, questions, records = [], [], []
    for index in range(n):
        shape, cycle = combos[int(order[index % len(combos)])]
        rng = np.random.default_rng([seed, split_key, index, 2])
        relative = f"{split}/{index:06d}.mp4"
        write_video(root / relative, _render(rng, shape, cycle, size, n_frames), fps)
        rows.append({"video_id": index, "video": relative, "sentence": caption(shape, cycle)})
        records.append({"path": relative, "label": "-".join(cycle), "shape": shape})
        asked = int(rng.integers(3))
        common = {"video_id": index, "video": relative}
        questions.append({"id": 2 * index, **common, "question": AFTER_QUESTION.format(colour=cycle[asked]),
                          "answer": cycle[(asked + 1) % 3]})
        questions.append({"id": 2 * index + 1, **common, "question": SHAPE_QUESTION, "answer": shape})
    _atomic_write(root / f"{split}_qa.json", json.dumps(questions, indent=0))
    write_manifest(root / f"{split}.jsonl", records)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["video_id", "video", "sentence"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return _atomic_write(root / f"{split}_captions.csv", text.getvalue())


def _atomic_write(path: Path, text: str) -> Path:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


@dataclass
class SyntheticVideoTextConfig(GeneratedConfig):
    """Colour-cycle clips (meaning in frame order), generated under ``root`` (``split``, ``n_samples``,
    ``seed``): read as retrieval pairs (one caption a clip), video QA (two questions a clip) or
    classification (the cycle)."""


@register_format("synthetic_video_text", SyntheticVideoTextConfig, serves=("pairs", "vqa", "labelled"))
def read_synthetic_video_text(cfg: SyntheticVideoTextConfig, ctx: ReadContext) -> Split:
    captions = generate(cfg, ctx, write_video_text_dataset)
    root = Path(cfg.root)
    if ctx.kind == "pairs":
        return Split("pairs", read_captions(captions, root, "{video}"))
    if ctx.kind == "vqa":
        return Split("vqa", load_video_qa(root / f"{cfg.split}_qa.json", root, "{video}"))
    return Split("labelled", manifest_records(captions.with_name(f"{cfg.split}.jsonl"), root, ctx.label_key))
