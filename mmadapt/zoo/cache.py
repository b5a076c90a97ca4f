"""The zoo's on-disk cache: one verified, atomically created directory per (name, build spec).

Layout (root = ``$MMADAPT_HOME``, default ``~/.cache/mmadapt``)::

    <root>/zoo/<short>-<spec_hash>/        a normal Hugging Face model directory + manifest.json
    <root>/zoo/<short>-<spec_hash>.lock    file lock held while verifying / building that entry
    <root>/zoo/.<short>-<spec_hash>.tmp-*  a build in progress (renamed into place when complete)

``manifest.json`` (see :mod:`mmadapt.io.verified_dir`) lists every file with its size and sha256, the full
build spec and the build metrics (accuracies, seconds). An entry is used only if the manifest parses, names
the expected spec hash and every listed file has the recorded size and hash; anything else is rebuilt, with
one log line saying why.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable

from mmadapt.io import verified_dir
from mmadapt.io.verified_dir import MANIFEST, cache_root, file_table, read_manifest, sha256_file

logger = logging.getLogger("mmadapt.zoo")

__all__ = ["MANIFEST", "cache_root", "file_table", "read_manifest", "sha256_file", "quiet", "deep_merge",
           "spec_hash", "entry_dir", "verify_entry", "get_or_build"]

ZOO_SUBDIR = "zoo"

#: ``build(out_dir, spec, progress) -> metrics``: writes the model files into ``out_dir`` (run with
#: ``spec["threads"]`` torch threads).
Builder = Callable[[Path, dict, bool], dict]


def quiet() -> bool:
    """True when ``MMADAPT_QUIET`` is set to a truthy value: no progress bars."""
    return os.environ.get("MMADAPT_QUIET", "").strip().lower() not in ("", "0", "false", "no")


def deep_merge(base: dict, overrides: dict | None) -> dict:
    """A copy of ``base`` with ``overrides`` merged in (nested dicts merged key by key).

    Unknown keys are refused, so a typo in an override cannot silently build the default spec.
    """
    out = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if key not in out:
            raise KeyError(f"unknown zoo spec key {key!r}; known: {sorted(out)}")
        if isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def spec_hash(spec: dict) -> str:
    """12 hex digits of sha256 over the canonical JSON of ``spec``."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def entry_dir(root: Path, name: str, spec: dict) -> Path:
    """``<root>/zoo/<name without 'zoo:'>-<spec_hash>``."""
    short = name.split(":", 1)[-1]
    return Path(root) / ZOO_SUBDIR / f"{short}-{spec_hash(spec)}"


def verify_entry(directory: Path, expected_hash: str | None = None) -> str | None:
    """Why ``directory`` is not a usable zoo entry (of spec hash ``expected_hash``), or ``None``."""
    return verified_dir.verify_entry(directory, None if expected_hash is None else {"spec_hash": expected_hash})


def get_or_build(name: str, spec: dict, builder: Builder, *, root: Path | None = None,
                 rebuild: bool = False) -> Path:
    """Return the verified cache entry for ``(name, spec)``, building it first if needed (under a file
    lock, into a temporary directory renamed into place: :func:`mmadapt.io.verified_dir.get_or_create`)."""
    root = cache_root() if root is None else Path(root)

    def build(tmp: Path) -> dict:
        start = time.perf_counter()
        with _torch_threads(spec.get("threads")):
            metrics = builder(tmp, spec, not quiet())
        return {"name": name, "spec": spec, "metrics": metrics,
                "build_seconds": round(time.perf_counter() - start, 2), "versions": _versions()}

    return verified_dir.get_or_create(entry_dir(root, name, spec), {"spec_hash": spec_hash(spec)}, build,
                                      what=name, log=logger, recreate=rebuild)


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Run a build with ``spec["threads"]`` torch threads (part of the spec: it can change the numerics),
    restoring the caller's setting afterwards."""
    import torch

    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _versions() -> dict[str, str]:
    import tokenizers
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__}
