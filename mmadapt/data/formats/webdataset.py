"""WebDataset tar shards as a dataset source (format ``webdataset``), written by ``mmadapt shard``.

A shard directory (:func:`mmadapt.data.shards.write_shards`) holds ``shard-000000.tar``, ``shard-000001.tar``,
... in the standard WebDataset layout — the members of one sample share a key and sit together::

    000000.json              every field of the sample that is not a file (question, answers, label, a table row)
    000000.image_path.jpg    each media field: {key}.{field}{the source file's extension}
    000001.json              (a file used by several samples — an image with ten questions — is stored once;
    ...                       later samples refer to it)

and ``split.json``: ``{"kind", "sample_class", "label_space", "limited", "questions", "annotations",
"shards": [{"file", "samples"}], "samples", "skipped"}``. Reading (``{format: webdataset, shards: DIR}``) indexes
each tar from its headers only (the stdlib ``tarfile``: ``offset_data`` and ``size`` of every member, no
data read but the small JSON members), rebuilds each sample as the same class the source format gave (one
of :data:`SAMPLE_CLASSES`, an allowlist: no class is ever imported by a name read from a file) with every
media field a :class:`~mmadapt.io.shard_member.ShardMember` in place of the path, and returns the same
:class:`~mmadapt.data.split.Split`: kind, label space, samples in the original order. The media loaders of
:mod:`mmadapt.io` read a member with one ``pread``, so a corrupt member is a bad sample like a corrupt file
(recorded and skipped in training and evaluation), never a crash.

The per-sample JSON encodes values with tags: plain JSON for strings, numbers, booleans, ``None`` and lists
of them; ``{"$media": [shard file, member]}`` for a file; ``{"$tensor": {"dtype", "shape", "data"}}`` for an
in-memory tensor (a ScanObjectNN row; float32 values survive JSON exactly); ``{"$dict": {...}}`` for a
mapping (a table row, a dense sample's ``labels``).
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from mmadapt.config import DatasetConfig
from mmadapt.data.formats.coco_captions import CaptionSample
from mmadapt.data.formats.msrvtt_retrieval import Caption
from mmadapt.data.formats.pascal_context import DenseSample
from mmadapt.data.formats.vqa_v2 import VQASample
from mmadapt.data.split import KIND_NOUNS, LabelSpace, ReadContext, Split, register_format
from mmadapt.errors import ConfigError, DataError
from mmadapt.io.shard_member import ShardMember

__all__ = ["LABELLED", "SAMPLE_CLASSES", "SPLIT_FILE", "TENSOR_DTYPES", "WebDatasetConfig", "decode_value", "read_webdataset"]

SPLIT_FILE = "split.json"
#: the ``sample_class`` of ``(source, label)`` tuples (the ``labelled`` kind)
LABELLED = "labelled"
#: the sample classes a shard may hold, by the name ``split.json`` records
SAMPLE_CLASSES: dict[str, type] = {cls.__name__: cls for cls in (VQASample, CaptionSample, DenseSample, Caption)}
#: the dtypes an in-memory tensor of a record may have, by name
TENSOR_DTYPES: dict[str, torch.dtype] = {str(d).removeprefix("torch."): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8, torch.int16, torch.int32,
    torch.int64, torch.bool)}


@dataclass
class WebDatasetConfig(DatasetConfig):
    """WebDataset tar shards written by ``mmadapt shard``: ``shards`` = their directory (``split.json`` and
    ``shard-*.tar``); the samples, kind and label space are the source format's."""

    shards: str | None = None


@register_format("webdataset", WebDatasetConfig, serves=tuple(KIND_NOUNS))
def read_webdataset(cfg: WebDatasetConfig, ctx: ReadContext) -> Split:
    if not cfg.shards:
        raise ConfigError(f"{ctx.where}.shards: required for format webdataset (a directory `mmadapt shard` wrote)")
    root = Path(cfg.shards)
    meta_file = root / SPLIT_FILE
    if not meta_file.is_file():
        raise ConfigError(f"{ctx.where}.shards: {root}: no {SPLIT_FILE} (not a directory written by `mmadapt shard`)")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{meta_file}: cannot read ({' '.join(str(exc).split())})") from None
    if meta.get("kind") != ctx.kind:
        raise ConfigError(f"{ctx.where}.shards: {root} holds {meta.get('kind')!r} samples, this task reads "
                          f"{ctx.kind!r} ({KIND_NOUNS.get(ctx.kind, ctx.kind)})")
    name = meta.get("sample_class")
    if name != LABELLED and name not in SAMPLE_CLASSES:
        raise DataError(f"{meta_file}: sample_class {name!r} is not one of {[LABELLED, *SAMPLE_CLASSES]}")
    wanted = cfg.limit or None
    index: dict[str, dict[str, ShardMember]] = {}  # shard file -> member name -> member
    samples: list = []
    for entry in meta["shards"]:
        if wanted is not None and len(samples) >= wanted:
            break
        shard = root / entry["file"]
        members, records = _index_shard(shard)
        index[entry["file"]] = members
        for member_name, record in records:
            where = f"{shard}:{member_name}"
            values = {key: decode_value(value, root, index, where) for key, value in record.items()}
            samples.append((values["source"], values["label"]) if name == LABELLED else SAMPLE_CLASSES[name](**values))
        if len(records) != entry["samples"]:
            raise DataError(f"{shard}: holds {len(records)} samples, {meta_file} says {entry['samples']}")
    space = LabelSpace(**meta["label_space"])
    official = {key: (root / meta[key]) if meta.get(key) else None for key in ("questions", "annotations")}
    return Split(ctx.kind, samples, space, official["questions"], official["annotations"], bool(meta.get("limited")))


def _index_shard(shard: Path) -> tuple[dict[str, ShardMember], list[tuple[str, dict]]]:
    """Every member of ``shard`` (from the tar headers) and the decoded JSON record of each sample, in order."""
    members: dict[str, ShardMember] = {}
    records: list[tuple[str, dict]] = []
    try:
        with tarfile.open(shard, "r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                members[info.name] = ShardMember(str(shard), info.name, info.offset_data, info.size)
                if info.name.endswith(".json"):
                    raw = tar.extractfile(info).read()
                    try:
                        records.append((info.name, json.loads(raw)))
                    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                        raise DataError(f"{shard}:{info.name}: not a JSON record ({' '.join(str(exc).split())})") from None
    except FileNotFoundError:
        raise DataError(f"{shard}: shard not found") from None
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"{shard}: not a readable tar file ({' '.join(str(exc).split())})") from None
    return members, records


def decode_value(value: Any, root: Path, index: dict[str, dict[str, ShardMember]], where: str) -> Any:
    """A value of a per-sample JSON record, its tags (module docstring) resolved against the shards indexed."""
    if isinstance(value, list):
        return [decode_value(v, root, index, where) for v in value]
    if not isinstance(value, dict):
        return value
    if "$media" in value:
        shard, member = value["$media"]
        found = index.get(shard, {}).get(member)
        if found is None:
            raise DataError(f"{where}: refers to {shard}:{member}, which no earlier shard holds")
        return found
    if "$tensor" in value:
        t = value["$tensor"]
        if t.get("dtype") not in TENSOR_DTYPES:
            raise DataError(f"{where}: tensor dtype {t.get('dtype')!r} is not one of {sorted(TENSOR_DTYPES)}")
        return torch.tensor(t["data"], dtype=TENSOR_DTYPES[t["dtype"]]).reshape(t["shape"])
    if "$dict" in value:
        return {k: decode_value(v, root, index, where) for k, v in value["$dict"].items()}
    raise DataError(f"{where}: untagged object {sorted(value)} in a record")


def encoded_fields(sample: Any) -> dict[str, Any]:
    """The fields of a sample by name (``source`` and ``label`` of a ``(source, label)`` tuple)."""
    if isinstance(sample, tuple):
        return {"source": sample[0], "label": sample[1]}
    return {f.name: getattr(sample, f.name) for f in fields(sample)}


def sample_class_name(sample: Any) -> str:
    """The ``sample_class`` of ``sample`` in ``split.json``; a sample of another class is refused."""
    if isinstance(sample, tuple):
        return LABELLED
    name = type(sample).__name__
    if SAMPLE_CLASSES.get(name) is not type(sample):
        raise ConfigError(f"mmadapt shard: samples of class {name} cannot be sharded (known: "
                          f"{', '.join([LABELLED, *SAMPLE_CLASSES])})")
    return name
