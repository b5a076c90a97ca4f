"""Write a split as WebDataset tar shards (``mmadapt shard``), to be read back with format ``webdataset``.

::

    split = read the task's split through its own format (the same samples a run trains on)
    write_shards(dataset_config, read_context, out_dir, max_per_shard=1000)
      -> out_dir/shard-000000.tar ... (webdataset.ShardWriter) + out_dir/split.json

Each sample becomes one WebDataset key (``000000``, ``000001``, ... in the split's order): ``{key}.json`` holds
its non-file fields (tagged, see :mod:`mmadapt.data.formats.webdataset`), ``{key}.{field}{ext}`` the bytes of
each file it names. A file several samples name is stored once, with the first of them. ``split.json`` records
the sample kind, the sample class, the label space *as the source format gave it* (what ``read_split`` derives
from the samples kept — classes, answers — is derived again when the shards are read, so a ``limit`` on them
behaves as on the source), the shards with their sample counts, and copies of the official VQA questions /
annotations files the split scores against. A sample whose file cannot be read (missing, permission denied)
is reported, one line each, and left out; a file that reads but does not decode is copied as it is and is a
bad sample in the shards as it was on disk.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmadapt.config import DatasetConfig
from mmadapt.data.formats.webdataset import SPLIT_FILE, encoded_fields, sample_class_name
from mmadapt.data.split import ReadContext, dataset_format
from mmadapt.errors import ConfigError, DataError
from mmadapt.io._files import one_line
from mmadapt.io.shard_member import MediaBlob

__all__ = ["ShardReport", "write_shards"]

SHARD_PATTERN = "shard-%06d.tar"


@dataclass
class ShardReport:
    """What :func:`write_shards` wrote: ``samples`` in ``shards`` files under ``out``, and one line per
    sample left out (``skipped``)."""

    out: Path
    kind: str
    samples: int
    shards: list[str]
    skipped: list[str] = field(default_factory=list)


class _Writer:
    """Encodes samples into WebDataset records, storing each distinct file once."""

    def __init__(self, max_per_shard: int):
        self.max_per_shard = max_per_shard
        self.stored: dict[str, list[str]] = {}  # source path -> ["$media", [shard file, member]]

    def encode(self, value: Any, key: str, field_name: str, index: int, files: dict[str, bytes]) -> Any:
        """``value`` as a JSON value; a path is read into ``files`` (member suffix → bytes) on first use."""
        if isinstance(value, (Path, MediaBlob)) or (field_name == "source" and isinstance(value, str)):
            blob = isinstance(value, MediaBlob)  # media inside a store (a dataset cell, another shard)
            path = str(value) if blob else os.fspath(value)
            if path not in self.stored:
                suffix = f"{field_name}{(value.suffix if blob else Path(path).suffix).lower()}"
                # OSError / DataError: the caller skips the sample
                files[suffix] = value.read() if blob else Path(path).read_bytes()
                self.stored[path] = [SHARD_PATTERN % (index // self.max_per_shard), f"{key}.{suffix}"]
            return {"$media": self.stored[path]}
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu()
            return {"$tensor": {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                                "data": t.flatten().tolist()}}
        if isinstance(value, dict):
            return {"$dict": {k: self.encode(v, key, f"{field_name}.{k}", index, files) for k, v in value.items()}}
        if isinstance(value, (list, tuple)):
            return [self.encode(v, key, field_name, index, files) for v in value]
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        raise ConfigError(f"mmadapt shard: field {field_name!r} holds a {type(value).__name__}, which a shard "
                          "cannot store")


def write_shards(cfg: DatasetConfig, ctx: ReadContext, out: str | os.PathLike[str], max_per_shard: int = 1000,
                 report=print) -> ShardReport:
    """Read the split ``cfg`` names (its own format, ``limit`` applied) and write it as shards under ``out``;
    ``report`` gets one line per sample left out. Returns what was written."""
    if max_per_shard < 1:
        raise ConfigError(f"--max-samples-per-shard: expected >= 1, got {max_per_shard}")
    import webdataset

    split = dataset_format(cfg.format).read(cfg, ctx)
    samples = split.samples[: cfg.limit] if cfg.limit else split.samples
    if not samples:
        raise DataError(f"{ctx.where}: no samples to shard")
    class_name = sample_class_name(samples[0])
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("shard-*.tar"):
        old.unlink()
    writer, skipped, counts = _Writer(max_per_shard), [], []
    with webdataset.ShardWriter(str(root / SHARD_PATTERN), maxcount=max_per_shard, maxsize=float("inf"),
                                verbose=0, encoder=False, mtime=0.0) as sink:
        for sample in samples:
            index, key, files = sum(counts), f"{sum(counts):06d}", {}
            stored_before = dict(writer.stored)
            try:
                record = {name: writer.encode(value, key, name, index, files)
                          for name, value in encoded_fields(sample).items()}
            except OSError as exc:
                writer.stored = stored_before
                skipped.append(f"{exc.filename or sample}: cannot read file "
                               f"({exc.strerror or one_line(exc)}); sample left out")
                report(skipped[-1])
                continue
            except DataError as exc:  # media inside a store that cannot be read (an empty dataset cell)
                writer.stored = stored_before
                skipped.append(f"{one_line(exc)}; sample left out")
                report(skipped[-1])
                continue
            sink.write({"__key__": key, "json": json.dumps(record).encode("utf-8"), **files})
            if index // max_per_shard == len(counts):
                counts.append(0)
            counts[-1] += 1
    shards = [SHARD_PATTERN % i for i in range(len(counts))]
    meta = {"kind": split.kind, "sample_class": class_name, "source_format": cfg.format, "where": ctx.where,
            "label_space": dataclasses.asdict(split.label_space),
            "limited": bool(split.limited or (cfg.limit and len(split.samples) > cfg.limit)),
            "shards": [{"file": f, "samples": n} for f, n in zip(shards, counts)], "samples": sum(counts),
            "skipped": skipped}
    for key in ("questions", "annotations"):
        official = getattr(split, key)
        meta[key] = None
        if official is not None:
            meta[key] = f"{key}.json"
            shutil.copyfile(official, root / meta[key])
    (root / SPLIT_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return ShardReport(root, split.kind, sum(counts), shards, skipped)
