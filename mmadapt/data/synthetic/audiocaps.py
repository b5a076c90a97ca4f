"""Synthetic audio captioning (format ``synthetic_audiocaps``): the sound clips of
:func:`~mmadapt.data.synthetic.audio.write_audio_dataset` with five reference captions each (paraphrases of
the sound's class, drawn per clip) in the AudioCaps columns (``<split>.csv``), deterministic given (split,
seed). The words are :mod:`mmadapt.data.synthetic.media_text`'s."""

from __future__ import annotations

import csv
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from mmadapt.data.formats.audiocaps import load_audiocaps
from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.data.synthetic.audio import write_audio_dataset
from mmadapt.data.synthetic.generated import GeneratedConfig, generate
from mmadapt.data.synthetic.media_text import AUDIO_TEMPLATE, CAPTIONS

PathLike = str | os.PathLike[str]


def write_audiocaps_dataset(root: PathLike, split: str, n: int, seed: int) -> Path:
    """``n`` clips of ``split`` with five captions each; returns ``<root>/<split>.csv`` (AudioCaps columns)."""
    root = Path(root)
    manifest = write_audio_dataset(root, split, n, seed)
    rng = random.Random(f"audiocaps/{split}/{seed}")
    rows = []
    for index, line in enumerate(manifest.read_text(encoding="utf-8").splitlines()):
        clip = json.loads(line)
        youtube_id = clip["path"].removesuffix(".wav")
        for caption in rng.sample(CAPTIONS[clip["label"]], len(CAPTIONS[clip["label"]])):
            rows.append({"audiocap_id": len(rows), "youtube_id": youtube_id, "start_time": 0, "caption": caption})
    path = root / f"{split}.csv"
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["audiocap_id", "youtube_id", "start_time", "caption"])
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


@dataclass
class SyntheticAudioCapsConfig(GeneratedConfig):
    """Sound clips with five captions each in the AudioCaps layout, generated under ``root`` (``split``,
    ``n_samples``, ``seed``)."""


@register_format("synthetic_audiocaps", SyntheticAudioCapsConfig, serves=("caption",))
def read_synthetic_audiocaps(cfg: SyntheticAudioCapsConfig, ctx: ReadContext) -> Split:
    return Split("caption", load_audiocaps(generate(cfg, ctx, write_audiocaps_dataset), cfg.root, AUDIO_TEMPLATE))
