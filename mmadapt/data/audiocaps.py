"""Audio captioning in the AudioCaps CSV format.

AudioCaps ships ``train.csv`` / ``val.csv`` / ``test.csv`` with the columns
``audiocap_id,youtube_id,start_time,caption`` — one row per caption (val / test: five rows per clip). Clips
are the 10-s segments ``youtube_id`` from ``start_time``; how they are stored is up to the user, so the file
name comes from ``template`` (default ``"{youtube_id}.wav"``; e.g. ``"{youtube_id}_{start_time}.wav"``).
Rows of the same clip are grouped into one :class:`~mmadapt.data.coco_captions.CaptionSample` (its
``image_path`` is the audio file), so captioning trains and scores exactly as for COCO.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from mmadapt.data.coco_captions import CaptionSample
from mmadapt.errors import DataError
from mmadapt.io._files import not_utf8, one_line, template_path

PathLike = str | os.PathLike[str]
COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
DEFAULT_TEMPLATE = "{youtube_id}.wav"


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
