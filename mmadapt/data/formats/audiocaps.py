"""Audio captioning in the AudioCaps CSV format.

AudioCaps ships ``train.csv`` / ``val.csv`` / ``test.csv`` with the columns
``audiocap_id,youtube_id,start_time,caption`` — one row per caption (val / test: five rows per clip). Clips
are the 10-s segments ``youtube_id`` from ``start_time``; how they are stored is up to the user, so the file
name comes from ``template`` (default ``"{youtube_id}.wav"``; e.g. ``"{youtube_id}_{start_time}.wav"``).
Rows of the same clip are grouped into one :class:`~mmadapt.data.formats.coco_captions.CaptionSample` (its
``image_path`` is the audio file), so captioning trains and scores exactly as for COCO.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from mmadapt.config import DatasetConfig
from mmadapt.data.formats.coco_captions import CaptionSample
from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.errors import ConfigError, DataError
from mmadapt.io._files import not_utf8, one_line, template_path

PathLike = str | os.PathLike[str]
COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
DEFAULT_TEMPLATE = "{youtube_id}.wav"


@dataclass
class AudioCapsConfig(DatasetConfig):
    """AudioCaps: ``annotations`` = the CSV, audio under ``image_root`` (default: the CSV's folder) named by
    ``image_template`` (default ``{youtube_id}.wav``)."""

    annotations: str | None = None
    image_root: str | None = None
    image_template: str | None = None


@register_format("audiocaps", AudioCapsConfig, serves=("caption",))
def read_audiocaps(cfg: AudioCapsConfig, ctx: ReadContext) -> Split:
    if cfg.annotations is None:
        raise ConfigError(f"{ctx.where}.annotations: required for format audiocaps (the CSV)")
    return Split("caption", load_audiocaps(cfg.annotations, cfg.image_root, cfg.image_template))


def load_audiocaps(path: PathLike, audio_root: PathLike | None = None, template: str | None = None) -> list[CaptionSample]:
    """Read an AudioCaps CSV; ``audio_root`` defaults to the file's folder. Clip ids follow first appearance."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("youtube_id", "caption") if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: missing column(s) {', '.join(missing)} (AudioCaps has {', '.join(COLUMNS)})")
            rows = list(reader)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: {not_utf8(path)}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({one_line(exc)})") from None
    if not rows:
        raise DataError(f"{path}: no captions")
    root = Path(audio_root) if audio_root is not None else path.parent
    template = template or DEFAULT_TEMPLATE
    clips: dict[tuple[str, str], CaptionSample] = {}
    for line, row in enumerate(rows, start=2):
        if not row.get("youtube_id") or not (row.get("caption") or "").strip():
            raise DataError(f"{path}:{line}: empty youtube_id or caption")
        key = (row["youtube_id"], row.get("start_time") or "")
        if key not in clips:
            audio_path = template_path(root, template, row, f"{path}:{line}")
            clips[key] = CaptionSample(image_id=len(clips), image_path=audio_path)
        clips[key].captions.append(row["caption"].strip())
    return list(clips.values())
