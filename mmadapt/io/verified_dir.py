"""Directories of model files vouched for by a ``manifest.json``: verified on every use, created atomically.

The zoo (:mod:`mmadapt.zoo.cache`) and the packaged models (:mod:`mmadapt.packaged`) keep what they build
under ``$MMADAPT_HOME`` (default ``~/.cache/mmadapt``) this way::

    <root>/<kind>/<entry>/        the files + manifest.json
    <root>/<kind>/<entry>.lock    file lock held while verifying / creating that entry
    <root>/<kind>/.<entry>.tmp-*  a creation in progress (renamed into place when complete)

``manifest.json`` lists every other file with its size and sha256, next to whatever the creator records
(a build spec, metrics, the source file's hash). An entry is used only if the manifest parses, carries the
expected values (:func:`verify_entry`'s ``expected``) and every listed file lies inside the entry with the
recorded size and hash; anything else (a truncated safetensors, a deleted file, a garbled manifest) is
created again, with one log line saying why.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from filelock import FileLock

from mmadapt.errors import DataError
from mmadapt.io._files import resolve_inside

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1

#: ``create(out_dir) -> manifest fields``: writes the entry's files into ``out_dir``.
Creator = Callable[[Path], dict]


def cache_root() -> Path:
    """``$MMADAPT_HOME`` or ``~/.cache/mmadapt`` (read on every call, so tests can monkeypatch it)."""
    return Path(os.environ.get("MMADAPT_HOME") or Path.home() / ".cache" / "mmadapt").expanduser()


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


def verify_entry(directory: Path, expected: dict[str, Any] | None = None) -> str | None:
    """Why ``directory`` is not a usable entry, or ``None`` when it is (every key of ``expected`` must
    hold its value in the manifest; every listed file must have its recorded size and sha256)."""
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
    for key, value in (expected or {}).items():
        if manifest.get(key) != value:
            return f"{MANIFEST} {key} {manifest.get(key)!r}, expected {value!r}"
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


def get_or_create(final: Path, expected: dict[str, Any], create: Creator, *, what: str,
                  log: logging.Logger, recreate: bool = False) -> Path:
    """Return the verified entry ``final``, creating it first if it is missing, damaged or ``recreate``.

    The whole check-and-create runs under a per-entry file lock, so concurrent callers (parallel pytest,
    the ranks of a multi-process run) create once and never see a half-written directory: ``create`` writes
    into a temporary directory next to the entry, which gets its manifest (``format``, ``expected``, the
    fields ``create`` returns, the file table), is verified, then is renamed into place. ``what`` names the
    entry in the log line ("zoo:tiny-opt").
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        reason = "rebuild requested" if recreate else verify_entry(final, expected)
        if reason is None:
            return final
        if reason != "missing":
            log.warning("%s: rebuilding at %s: %s", what, final, reason)
        else:
            log.info("%s: building at %s", what, final)
        with _tmp_dir(final) as tmp:
            fields = create(tmp)
            manifest = {"format": MANIFEST_FORMAT, **expected, **fields, "files": file_table(tmp)}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            problem = verify_entry(tmp, expected)
            if problem is not None:  # pragma: no cover - would mean the creator raced with itself
                raise RuntimeError(f"{what}: freshly built entry {tmp} does not verify: {problem}")
            _replace_dir(tmp, final)
        return final


@contextlib.contextmanager
def _tmp_dir(final: Path) -> Iterator[Path]:
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
