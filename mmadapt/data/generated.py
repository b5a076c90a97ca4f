"""Write a generated (synthetic) split once and reuse it: ``ensure_generated(root, split, n, seed, writer)``.

The generators of :mod:`mmadapt.data` (``write_video_dataset``, ``write_point_cloud_dataset``, ...) write a
split's files and return its manifest (or table) path. Here a split is written under a file lock (parallel
test processes or ranks share one copy), and a stamp ``<root>/<split>.stamp.json`` records what was asked
for (generator, size, seed, options) and the returned path. The stamp is written *last*, so a run killed
mid-generation leaves no stamp and the split is simply written again; a stamp that no longer matches the
request, or whose path is gone, also triggers a rewrite.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from mmadapt.errors import DataError
from mmadapt.io._files import resolve_inside


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
