"""MSR-VTT video–text retrieval captions (format ``msrvtt_retrieval``), either layout:

* a CSV with ``video_id`` and ``sentence`` columns, e.g. the 1k-A test split ``MSRVTT_JSFUSION_test.csv``
  (other columns are kept for the file name template, e.g. ``video``);
* ``MSRVTT_data.json`` (``{"sentences": [{"video_id": ..., "caption": ...}, ...]}``).

One :class:`Caption` per sentence; the clip's file is ``image_root / image_template`` filled from the row
(default ``{video_id}.mp4``), refused if it leads outside the root.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from mmadapt.config import DatasetConfig
from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.errors import ConfigError, DataError
from mmadapt.io._files import template_path

DEFAULT_TEMPLATE = "{video_id}.mp4"


@dataclass(frozen=True)
class Caption:
    video_id: str
    video_path: Path
    sentence: str


def read_captions(path: Path, video_root: Path, template: str) -> list[Caption]:
    """MSR-VTT captions: a CSV with ``video_id`` and ``sentence`` columns (other columns are kept for the
    template, e.g. ``video``) or ``MSRVTT_data.json`` (``sentences``: [{video_id, caption}])."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from None
        items = data.get("sentences") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise DataError(f"{path}: expected MSRVTT_data.json's layout, an object with a 'sentences' list")
        rows = [{**item, "sentence": item.get("caption")} if isinstance(item, dict) else item for item in items]
    else:
        rows = list(csv.DictReader(text.splitlines()))
    captions = []
    for i, row in enumerate(rows):
        where = f"{path}: [{i}]"
        if not isinstance(row, dict) or row.get("video_id") in (None, "") or not isinstance(row.get("sentence"), str):
            raise DataError(f"{where}: needs a video_id and a sentence (caption)")
        video_path = template_path(video_root, template, row, where)
        captions.append(Caption(str(row["video_id"]), video_path, row["sentence"].strip()))
    if not captions:
        raise DataError(f"{path}: no captions")
    return captions


@dataclass
class MSRVTTRetrievalConfig(DatasetConfig):
    """MSR-VTT retrieval: ``annotations`` = the caption CSV (``video_id``, ``sentence``) or
    ``MSRVTT_data.json``; videos under ``image_root`` (default: the file's folder) named by
    ``image_template`` (default ``{video_id}.mp4``)."""

    annotations: str | None = None
    image_root: str | None = None
    image_template: str | None = None


@register_format("msrvtt_retrieval", MSRVTTRetrievalConfig, serves=("pairs",))
def read_msrvtt_retrieval(cfg: MSRVTTRetrievalConfig, ctx: ReadContext) -> Split:
    if cfg.annotations is None:
        raise ConfigError(f"{ctx.where}.annotations: required for msrvtt_retrieval (captions CSV or JSON)")
    path = Path(cfg.annotations)
    root = Path(cfg.image_root) if cfg.image_root else path.parent
    return Split("pairs", read_captions(path, root, cfg.image_template or DEFAULT_TEMPLATE))
