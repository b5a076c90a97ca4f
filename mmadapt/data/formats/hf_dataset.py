"""Hugging Face ``datasets`` as a dataset source: local Parquet / Arrow / JSON Lines files or a
``save_to_disk`` directory, read by the ``datasets`` library, memory-mapped or streamed::

    tasks:
      vqa:
        train: {format: hf_dataset, data_files: "data/vqav2/train-*.parquet"}   # columns image, question, answers
      caption:
        train: {format: hf_dataset, path: data/coco_disk, caption_column: sentences, streaming: false}
      classification:
        train: {format: hf_dataset, data_files: "data/pets/*.parquet", label_column: label}

Each row becomes the library's own sample, so everything after the reader (tasks, the answer vocabulary,
official result files, DataLoader workers, ``mmadapt shard``) is what the other formats get:

========= ===================================================== =========================================
kind      sample                                                 columns (config key: default)
========= ===================================================== =========================================
vqa       :class:`~mmadapt.data.formats.vqa_v2.VQASample`        ``question_column``: question,
                                                                 ``answers_column``: answers (strings, or
                                                                 VQA v2's ``{"answer": ...}`` records)
caption   :class:`~mmadapt.data.formats.coco_captions.CaptionSample` ``caption_column``: captions (a list, or
                                                                 one string)
labelled  ``(media, label)``                                      ``label_column``: label (a ``ClassLabel``
                                                                 index reads as its name)
========= ===================================================== =========================================

``image_column`` (default ``image``) holds the media: an ``Image`` / ``Audio`` / ``Video`` feature (its
encoded bytes, never decoded by ``datasets``), raw ``binary`` bytes, or a path string resolved inside
``root`` (a path cannot leave it). ``id_column`` / ``image_id_column`` give the question / image ids (default:
the row number; an image id that is a string is hashed to a stable int, the VQA result files need ints).

Memory-mapped (default): the dataset's Arrow files are mapped, a sample holds a :class:`DatasetCell` — row
and column of its media — and the bytes are read when the (worker) process loads the batch, so a split of
any size costs only its text in memory. ``streaming: true`` reads the files in one pass without the Arrow
cache ``datasets`` would otherwise write (for Parquet / JSON files); the samples then carry their encoded
media bytes in memory — meant for evaluation sets and for ``mmadapt shard``, which turns a stream into
WebDataset shards that train with random access. A row whose media cell is empty is a recorded bad sample
when it is loaded, like a missing file.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmadapt.config import DatasetConfig
from mmadapt.data.formats.coco_captions import CaptionSample
from mmadapt.data.formats.vqa_v2 import VQASample
from mmadapt.data.split import LabelSpace, ReadContext, Split, register_format
from mmadapt.errors import ConfigError, DataError
from mmadapt.io._files import resolve_inside
from mmadapt.io.shard_member import MediaBlob

BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".jsonl": "json", ".json": "json"}
#: the config key naming the column each sample kind needs besides the media
COLUMN_KEYS = {"vqa": "question_column", "caption": "caption_column", "labelled": "label_column"}


@dataclass
class HFDatasetConfig(DatasetConfig):
    """Hugging Face datasets: ``path`` = a ``save_to_disk`` directory, or ``data_files`` = local Parquet /
    Arrow / JSON Lines files (a glob; ``builder`` from their extension unless given) of split ``hf_split``
    (default train); ``streaming`` reads them in one pass; the column keys name the fields (see the module);
    ``root``: where path-string media columns point."""

    path: str | None = None
    data_files: str | None = None
    builder: str | None = None
    hf_split: str = "train"
    streaming: bool = False
    image_column: str = "image"
    question_column: str = "question"
    answers_column: str = "answers"
    caption_column: str = "captions"
    label_column: str = "label"
    id_column: str | None = None
    image_id_column: str | None = None
    root: str | None = None

    def validate(self) -> None:
        super().validate()
        if (self.path is None) == (self.data_files is None):
            raise ConfigError("path / data_files: give one of them (a save_to_disk directory, or data files)")
        if self.builder is not None and self.builder not in set(BUILDERS.values()):
            raise ConfigError(f"builder: expected one of {sorted(set(BUILDERS.values()))}, got {self.builder!r}")
        if self.streaming and self.path is not None:
            raise ConfigError("streaming: a save_to_disk directory is memory-mapped already; stream data_files")


@dataclass(frozen=True)
class DatasetCell(MediaBlob):
    """The media of row ``row`` of a memory-mapped dataset (``source``: how :func:`_open` finds it again in
    a fresh process), ``name`` its original file name (for its extension and messages)."""

    source: tuple
    row: int
    column: str
    name: str
    size: int

    def __str__(self) -> str:
        return f"{self.source[1]}[{self.row}].{self.column} ({self.name})"

    def read(self) -> bytes:
        data = _media_bytes(_open(self.source)[self.row][self.column])
        if data is None:
            raise DataError(f"{self}: no media in this cell")
        return data


@dataclass(frozen=True)
class InMemoryMedia(MediaBlob):
    """Encoded media read from a stream: ``name`` (its original file name), its bytes."""

    where: str
    name: str
    data: bytes
    size: int

    def __str__(self) -> str:
        return f"{self.where} ({self.name})"

    def read(self) -> bytes:
        return self.data


@functools.lru_cache(maxsize=8)
def _open(source: tuple):
    """The dataset ``source`` names, its media columns left encoded; cached per process (a forked worker
    inherits the parent's memory-mapped dataset)."""
    import datasets

    kind, where, builder, split, columns = source
    if kind == "disk":
        ds = datasets.load_from_disk(where)
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split]
    else:
        ds = datasets.load_dataset(builder, data_files=where, split=split)
    return _undecoded(ds, columns)


def _undecoded(ds, columns: tuple[str, ...]):
    import datasets

    media = (datasets.Image, datasets.Audio, datasets.Video)
    for col in columns:
        feature = ds.features.get(col) if ds.features else None
        if isinstance(feature, media):
            ds = ds.cast_column(col, type(feature)(decode=False))
    return ds


def _media_bytes(value: Any) -> bytes | None:
    """The encoded bytes of a media cell: ``{"bytes", "path"}`` of an Image / Audio / Video feature, or raw
    bytes."""
    if isinstance(value, dict):
        value = value.get("bytes")
    return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) and len(value) else None


@register_format("hf_dataset", HFDatasetConfig, serves=("vqa", "caption", "labelled"))
def read_hf_dataset(cfg: HFDatasetConfig, ctx: ReadContext) -> Split:
    import datasets

    where = cfg.path or cfg.data_files
    builder = (cfg.builder or BUILDERS.get(Path(cfg.data_files).suffix.lower())) if cfg.data_files else None
    if cfg.data_files and builder is None:
        raise ConfigError(f"{ctx.where}.builder: cannot tell the format of {cfg.data_files!r} from its extension "
                          f"(expected one of {sorted(BUILDERS)}); set builder")
    if cfg.path is not None and not Path(cfg.path).is_dir():
        raise ConfigError(f"{ctx.where}.path: {cfg.path}: no such directory (a datasets save_to_disk folder)")
    source = ("disk" if cfg.path else "files", where, builder, cfg.hf_split, (cfg.image_column,))
    try:
        if cfg.streaming:
            ds = _undecoded(datasets.load_dataset(builder, data_files=where, split=cfg.hf_split, streaming=True),
                            (cfg.image_column,))
        else:
            ds = _open(source)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"{ctx.where}: {where}: {str(exc).splitlines()[0][:300]}") from None
    names = list(ds.features) if ds.features else None  # a stream of JSON files may not know its columns yet
    for key in (COLUMN_KEYS[ctx.kind], "image_column"):
        if names is not None and getattr(cfg, key) not in names:
            raise ConfigError(f"{ctx.where}.{key}: the dataset has no column {getattr(cfg, key)!r} (its columns: "
                              f"{', '.join(names)})")
    label_names = _label_names(ds, cfg.label_column) if ctx.kind == "labelled" else None
    samples = []
    for i, row in enumerate(ds):
        if cfg.limit is not None and i >= cfg.limit:  # read_split keeps the first `limit`: read no further
            break
        media = _media(cfg, ctx, source, i, row[cfg.image_column])
        samples.append(_sample(cfg, ctx, i, row, media, label_names))
    if not samples:
        raise DataError(f"{ctx.where}: {where}: no rows")
    # a ClassLabel column is the dataset's own class list, in its index order
    return Split(ctx.kind, samples, label_space=LabelSpace(classes=label_names))


def _label_names(ds, column: str) -> list[str] | None:
    import datasets

    feature = ds.features.get(column) if ds.features else None
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def _media(cfg: HFDatasetConfig, ctx: ReadContext, source: tuple, row: int, value: Any):
    """What the sample holds for its media: a path inside ``root``, a lazy :class:`DatasetCell` (memory-
    mapped), or the bytes themselves (streamed)."""
    if isinstance(value, str):
        if cfg.root is None:
            raise ConfigError(f"{ctx.where}.root: column {cfg.image_column!r} holds paths ({value!r}): set root")
        return resolve_inside(cfg.root, value, f"{source[1]}[{row}].{cfg.image_column}")
    name = (value.get("path") if isinstance(value, dict) else None) or f"{row}.bin"
    data = _media_bytes(value)
    if cfg.streaming:
        return InMemoryMedia(str(source[1]), os.path.basename(name), data or b"", len(data or b""))
    return DatasetCell(source, row, cfg.image_column, os.path.basename(name), len(data or b""))


def _int_id(value: Any, row: int) -> int:
    if value is None:
        return row
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int.from_bytes(hashlib.blake2b(str(value).encode(), digest_size=6).digest(), "big")


def _sample(cfg: HFDatasetConfig, ctx: ReadContext, row: int, fields: dict, media, label_names):
    image_id = _int_id(fields.get(cfg.image_id_column) if cfg.image_id_column else None, row)
    if ctx.kind == "labelled":
        label = fields[cfg.label_column]
        return (media, label_names[label] if label_names is not None and isinstance(label, int) else label)
    if ctx.kind == "caption":
        captions = fields[cfg.caption_column]
        return CaptionSample(image_id=image_id, image_path=media,
                             captions=[captions] if isinstance(captions, str) else [str(c) for c in captions or []])
    answers = fields.get(cfg.answers_column) or []
    answers = [a["answer"] if isinstance(a, dict) else str(a) for a in answers]
    question_id = _int_id(fields.get(cfg.id_column) if cfg.id_column else None, row)
    # VQA v2's own columns, where the dataset has them (the Hub's VQAv2 copies do)
    optional = {k: fields.get(k) for k in ("multiple_choice_answer", "question_type", "answer_type")}
    return VQASample(question_id=question_id, image_id=image_id, question=str(fields[cfg.question_column]),
                     image_path=media, answers=answers, **optional)
