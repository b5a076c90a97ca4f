"""The zoo's on-disk cache: one verified, atomically created directory per (name, build spec).

Layout (root = ``$MMADAPT_HOME``, default ``~/.cache/mmadapt``)::

    <root>/zoo/<short>-<spec_hash>/        a normal Hugging Face model directory + manifest.json
    <root>/zoo/<short>-<spec_hash>.lock    file lock held while verifying / building that entry
    <root>/zoo/.<short>-<spec_hash>.tmp-*  a build in progress (renamed into place when complete)

``manifest.json`` lists every file with its size and sha256, the full build spec and the build metrics
(accuracies, seconds). An entry is used only if the manifest parses, names the expected spec hash and every
listed file lies inside the entry and has the recorded size and hash; anything else (a truncated
safetensors, a deleted file, a garbled manifest) is rebuilt, with one log line saying why.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from filelock import FileLock

from mmadapt.errors import DataError
from mmadapt.io._files import resolve_inside

logger = logging.getLogger("mmadapt.zoo")

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
ZOO_SUBDIR = "zoo"

#: ``build(out_dir, spec, progress) -> metrics``: writes the model files into ``out_dir`` (run with
#: ``spec["threads"]`` torch threads).
Builder = Callable[[Path, dict, bool], dict]


def cache_root() -> Path:
    """``$MMADAPT_HOME`` or ``~/.cache/mmadapt`` (read on every call, so tests can monkeypatch it)."""
    return Path(os.environ.get("MMADAPT_HOME") or Path.home() / ".cache" / "mmadapt").expanduser()


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


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_table(directory: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {"size", "sha256"}}`` for every file under ``directory`` except the manifest."""
    table = {}
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if rel != MANIFEST:
            table[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    return table


def read_manifest(directory: Path) -> dict:
    """The parsed ``manifest.json`` of an entry (raises on a missing or unreadable one)."""
    return json.loads((Path(directory) / MANIFEST).read_text())


def verify_entry(directory: Path, expected_hash: str | None = None) -> str | None:
    """Why ``directory`` is not a usable zoo entry, or ``None`` when it is."""
    directory = Path(directory)
    if not directory.is_dir():
        return "missing"
    try:
        manifest = read_manifest(directory)
    except FileNotFoundError:
        return f"{MANIFEST} missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"{MANIFEST} unreadable ({type(e).__name__}: {e})"
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) or not manifest["files"]:
        return f"{MANIFEST} has no file table"
    if manifest.get("format") != MANIFEST_FORMAT:
        return f"{MANIFEST} format {manifest.get('format')!r}, expected {MANIFEST_FORMAT}"
    if expected_hash is not None and manifest.get("spec_hash") != expected_hash:
        return f"{MANIFEST} spec_hash {manifest.get('spec_hash')!r}, expected {expected_hash!r}"
    for rel, info in manifest["files"].items():
        try:
            path = resolve_inside(directory, rel, f"{directory / MANIFEST}: files")
        except DataError as e:
            return str(e)
        if not path.is_file():
            return f"file {rel} missing"
        try:
            size, digest = int(info["size"]), str(info["sha256"])
        except (KeyError, TypeError, ValueError):
            return f"{MANIFEST} entry for {rel} malformed"
        if path.stat().st_size != size:
            return f"file {rel} has {path.stat().st_size} bytes, manifest says {size}"
        if sha256_file(path) != digest:
            return f"file {rel} sha256 mismatch"
    return None


@contextlib.contextmanager
def _tmp_build_dir(final: Path) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_dir(new: Path, final: Path) -> None:
    """Move ``new`` to ``final``; an old ``final`` is first moved aside, then deleted."""
    if final.exists() or final.is_symlink():
        trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, trash / "entry")
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(new, final)


def get_or_build(name: str, spec: dict, builder: Builder, *, root: Path | None = None,
                 rebuild: bool = False) -> Path:
    """Return the verified cache entry for ``(name, spec)``, building it first if needed.

    The whole check-and-build runs under a per-entry file lock, so concurrent callers (parallel pytest,
    the ranks of a multi-process run) build once and never see a half-written directory: the build goes
    to a temporary directory next to the entry, gets its manifest, is verified, then is renamed into place.
    """
    root = cache_root() if root is None else Path(root)
    final = entry_dir(root, name, spec)
    final.parent.mkdir(parents=True, exist_ok=True)
    digest = spec_hash(spec)
    with FileLock(str(final) + ".lock"):
        reason = "rebuild requested" if rebuild else verify_entry(final, digest)
        if reason is None:
            return final
        if reason != "missing":
            logger.warning("zoo: rebuilding %s at %s: %s", name, final, reason)
        else:
            logger.info("zoo: building %s at %s", name, final)
        with _tmp_build_dir(final) as tmp:
            start = time.perf_counter()
            with _torch_threads(spec.get("threads")):
                metrics = builder(tmp, spec, not quiet())
            manifest = {
                "format": MANIFEST_FORMAT,
                "name": name,
                "spec_hash": digest,
                "spec": spec,
                "metrics": metrics,
                "build_seconds": round(time.perf_counter() - start, 2),
                "versions": _versions(),
                "files": file_table(tmp),
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            problem = verify_entry(tmp, digest)
            if problem is not None:  # pragma: no cover - would mean the builder raced with itself
                raise RuntimeError(f"zoo: freshly built {name} in {tmp} does not verify: {problem}")
            _replace_dir(tmp, final)
        return final


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
