"""Write a generated (synthetic) split once and reuse it: ``ensure_generated(root, split, n, seed, writer)``;
and :class:`GeneratedConfig`, the keys every generator format shares (``root``, ``split``, ``n_samples``,
``seed``).

The generators of :mod:`mmadapt.data.synthetic` (``write_video_dataset``, ``write_point_cloud_dataset``, ...) write a
split's files and return its manifest (or table) path. Here a split is written under a file lock (parallel
test processes or ranks share one copy), and a stamp ``<root>/<split>.stamp.json`` records what was asked
for (generator, size, seed, options) and the returned path. The stamp is written *last*, so a run killed
mid-generation leaves no stamp and the split is simply written again; a stamp that no longer matches the
request, or whose path is gone, also triggers a rewrite.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from mmadapt.config import DatasetConfig
from mmadapt.data.split import ReadContext, Split, require_fields
from mmadapt.errors import DataError
from mmadapt.io._files import resolve_inside


@dataclass
class GeneratedConfig(DatasetConfig):
    """A generated split: written under ``root`` if missing (``split``: its name, ``n_samples``, ``seed``),
    reused while the request is unchanged."""

    root: str | None = None
    split: str | None = None
    n_samples: int | None = None
    seed: int = 0


def generate(cfg: GeneratedConfig, ctx: ReadContext, writer: Callable[..., Path], **options: Any) -> Path:
    """The split ``cfg`` asks for, written by ``writer`` if missing; returns what the writer returns."""
    require_fields(cfg, ("root", "split", "n_samples"), ctx.where)
    return ensure_generated(cfg.root, cfg.split, cfg.n_samples, cfg.seed, writer, **options)


def generated_manifest(cfg: GeneratedConfig, ctx: ReadContext, writer: Callable[..., Path]) -> Split:
    """The labelled split of a generator that writes a JSON-lines manifest (paths relative to its folder)."""
    from mmadapt.data.formats.manifest import manifest_records

    path = generate(cfg, ctx, writer)
    return Split("labelled", manifest_records(path, path.parent, ctx.label_key))


def ensure_generated(root: str | Path, split: str, n: int, seed: int, writer: Callable[..., Path],
                     **options: Any) -> Path:
    """The path ``writer(root, split, n, seed, **options)`` returns, written only if not already current."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = root / f"{split}.stamp.json"
    wanted = {"writer": f"{writer.__module__}.{writer.__qualname__}", "n": n, "seed": seed, "options": options}
    with FileLock(str(root / f".{split}.lock")):
        if stamp.is_file():
            try:
                recorded = json.loads(stamp.read_text())
            except json.JSONDecodeError:
                recorded = {}
            try:  # a stamp that names a file outside root is not ours: write the split again
                path = resolve_inside(root, recorded.get("path"), str(stamp))
            except DataError:
                path = None
            if recorded.get("request") == wanted and path is not None and path.is_file():
                return path
        path = Path(writer(root, split, n, seed, **options))
        tmp = stamp.with_suffix(".tmp")
        tmp.write_text(json.dumps({"request": wanted, "path": str(path.relative_to(root))}, indent=1))
        tmp.replace(stamp)
        return path
