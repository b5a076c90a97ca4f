"""The frozen-feature cache: what an adapter reads from a frozen encoder, computed once, memory-mapped.

eP-ALM reads only the frozen vision encoder's per-layer [CLS] states; with the encoder frozen and its
preprocessing deterministic, those are a pure function of (input file, encoder weights, preprocessing). They
are computed once (``mmadapt cache-features <recipe>``) into a store that training memory-maps: a cached
training step neither decodes the image nor runs the encoder.

Layout of a store, ``<train.feature_cache>/<key>/``::

    features.npy   [N, *row_shape] rows (numpy .npy, opened read-only with mmap_mode="r")
    index.json     {"rows": {sha256 of a file's bytes: row}, "row_shape": [...], "dtype": "torch.float32"}
    meta.json      the key material (below), for people and for `mmadapt cache-features` reports

``key`` = the first 20 hex digits of the sha256 of the key material: the adapter's feature kind (eP-ALM:
``layer_cls``), the encoder's identity and a sha256 of its weights, its preprocessing configuration and image
loader, the encoder's dtype, and this store's format version. A file is looked up by the sha256 of its bytes,
so an edited file misses (and is recomputed), a renamed copy hits; new weights, another preprocessing or
another feature kind give another key, so a stale store is never read (delete old keys with ``rm -r``).
A store is written under ``.tmp-<key>-<pid>`` and renamed into place: a killed build leaves no half store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmadapt.errors import ConfigError, DataError

FORMAT_VERSION = 1
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.float32,
                 torch.float64: np.float64}


# ------------------------------------------------------------------------------------------------ keys
def weights_digest(module: torch.nn.Module) -> str:
    """sha256 over the names, shapes, dtypes and bytes of ``module``'s state (parameters and buffers)."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def preprocessing_description(vision) -> str:
    """The encoder's preprocessing as text: a transformers image processor's configuration, or the repr of a
    torchvision transform (open_clip), plus the image loader used before it."""
    loader = f"{type(vision).__module__}.{type(vision).__qualname__}.load"
    processor = getattr(vision, "processor", None)
    if processor is not None and hasattr(processor, "to_dict"):
        config = processor.to_dict()
        config.pop("_processor_class", None)
        return json.dumps({"loader": loader, "processor": config}, sort_keys=True, default=str)
    transform = getattr(vision, "transform", None)
    if transform is None:
        raise ConfigError(f"train.feature_cache: cannot describe the preprocessing of {type(vision).__name__}")
    return json.dumps({"loader": loader, "transform": repr(transform)}, sort_keys=True)


def key_material(vision, feature_kind: str) -> dict:
    """Everything the cached features depend on besides the input file."""
    return {"format": FORMAT_VERSION, "feature": feature_kind, "encoder": vision.identity,
            "weights_sha256": weights_digest(vision), "preprocessing": preprocessing_description(vision),
            "dtype": str(vision.dtype)}


def key_of(material: dict) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:20]


class FileDigests:
    """sha256 of files' bytes, remembered per (path, size, mtime) so an unchanged file is hashed once."""

    def __init__(self):
        self._memo: dict[str, tuple[int, int, str]] = {}

    def __call__(self, path: str | os.PathLike) -> str:
        path = str(path)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror})") from None
        memo = self._memo.get(path)
        if memo is not None and memo[:2] == (st.st_size, st.st_mtime_ns):
            return memo[2]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
        self._memo[path] = (st.st_size, st.st_mtime_ns, digest)
        return digest


# ----------------------------------------------------------------------------------------------- store
class FeatureStore:
    """One key's rows, memory-mapped read-only. ``rows_for(paths)`` → row or None per path;
    ``read(rows)`` → a tensor [len(rows), *row_shape] in the dtype the encoder produced."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        index = json.loads((self.directory / "index.json").read_text())
        self.meta = json.loads((self.directory / "meta.json").read_text())
        self.rows: dict[str, int] = index["rows"]
        self.row_shape = tuple(index["row_shape"])
        self.dtype = getattr(torch, index["dtype"].removeprefix("torch."))
        self.features = np.load(self.directory / "features.npy", mmap_mode="r")
        self.digests = FileDigests()

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def key(self) -> str:
        return self.directory.name

    def rows_for(self, paths: Sequence[str]) -> list[int | None]:
        out = []
        for path in paths:
            try:
                out.append(self.rows.get(self.digests(path)))
            except DataError:
                out.append(None)  # the loader will report the file
        return out

    def read(self, rows: Sequence[int]) -> torch.Tensor:
        order = np.asarray(rows, dtype=np.int64)
        return torch.from_numpy(np.ascontiguousarray(self.features[order])).to(self.dtype)


def open_store(root: str | Path, material: dict) -> FeatureStore | None:
    """The store of ``material``'s key under ``root``, or None if there is none (never built, or stale)."""
    directory = Path(root) / key_of(material)
    if not (directory / "index.json").is_file():
        return None
    return FeatureStore(directory)


@dataclass
class BuildReport:
    store: FeatureStore
    files: int  # paths asked for
    unique: int  # distinct contents among them
    reused: int  # contents already in the store
    computed: int
    failed: list[str]  # "path: error" for files that could not be read
    seconds: float


def build_store(root: str | Path, material: dict, paths: Sequence[str],
                compute: Callable[[list[str]], torch.Tensor], batch_size: int = 32,
                progress: Callable[[int], None] | None = None) -> BuildReport:
    """Make sure every readable file of ``paths`` has a row in ``material``'s store under ``root``.

    ``compute(paths)`` → features [len(paths), *row_shape] (it raises :class:`DataError` for a bad file; the
    batch is then retried one file at a time so only the bad file is left out and reported). Rows already in
    the store are kept; the new store replaces the old one by a rename.
    """
    t0 = time.perf_counter()
    root = Path(root)
    key = key_of(material)
    old = open_store(root, material)
    digests = old.digests if old is not None else FileDigests()
    failed: list[str] = []
    wanted: dict[str, str] = {}  # digest → first path with that content
    for path in paths:
        try:
            wanted.setdefault(digests(path), str(path))
        except DataError as exc:
            failed.append(str(exc))
    have = dict(old.rows) if old is not None else {}
    todo = [(d, p) for d, p in wanted.items() if d not in have]

    new_rows: list[tuple[str, torch.Tensor]] = []
    for i in range(0, len(todo), batch_size):
        chunk = todo[i:i + batch_size]
        try:
            feats = compute([p for _, p in chunk])
            new_rows.extend((d, feats[j]) for j, (d, _) in enumerate(chunk))
        except DataError:
            for d, p in chunk:  # find the bad file(s)
                try:
                    new_rows.append((d, compute([p])[0]))
                except DataError as exc:
                    failed.append(str(exc))
        if progress is not None:
            progress(len(chunk))

    if old is not None and not new_rows:
        return BuildReport(old, len(paths), len(wanted), len(set(wanted) & set(have)), 0, failed,
                           time.perf_counter() - t0)
    if old is None and not new_rows:
        raise DataError(f"feature cache: none of the {len(paths)} files could be read: {failed[:3]}")

    row_shape = tuple(old.row_shape) if old is not None else tuple(new_rows[0][1].shape)
    dtype = old.dtype if old is not None else new_rows[0][1].dtype
    for d, f in new_rows:
        if tuple(f.shape) != row_shape:
            raise DataError(f"feature cache: {wanted[d]}: features of shape {tuple(f.shape)}, expected {row_shape}")
    tmp = root / f".tmp-{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n_old = len(have)
    out = np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=_NUMPY_DTYPES[dtype],
                                    shape=(n_old + len(new_rows), *row_shape))
    index = dict(have)
    if old is not None:
        for start in range(0, n_old, 4096):  # old rows keep their numbers
            out[start:start + 4096] = old.features[start:start + 4096]
    for j, (d, f) in enumerate(new_rows):
        out[n_old + j] = f.to(torch.float32 if dtype == torch.bfloat16 else dtype).numpy()
        index[d] = n_old + j
    out.flush()
    del out
    (tmp / "index.json").write_text(json.dumps({"rows": index, "row_shape": list(row_shape), "dtype": str(dtype)}))
    (tmp / "meta.json").write_text(json.dumps(material, indent=2))
    final = root / key
    if final.exists():
        aside = root / f".old-{key}-{os.getpid()}"
        final.rename(aside)
        tmp.rename(final)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        tmp.rename(final)
    return BuildReport(FeatureStore(final), len(paths), len(wanted), len(set(wanted) & set(have)), len(new_rows),
                       failed, time.perf_counter() - t0)


# ------------------------------------------------------------------------------------ with an assembly
def _cacheable(model):
    """(vision encoder, adapter) of a model whose adapter reads cacheable frozen-encoder features."""
    from mmadapt.models.perceptual_lm import PerceptualLM

    if not isinstance(model, PerceptualLM) or model.adapter.feature_kind is None:
        adapter = model.config.adapter.name if model.config.adapter is not None else "none"
        raise ConfigError(f"train.feature_cache: {model.config.assembly} with adapter {adapter} reads no cacheable "
                          "frozen-encoder features (perceptual_lm with epalm does)")
    return model.vision, model.adapter


def cache_root(config) -> Path:
    if not config.train.feature_cache:
        raise ConfigError("train.feature_cache: not set; name a directory, e.g. train.feature_cache=cache/features")
    return Path(config.train.feature_cache)


def attach_feature_cache(model, config) -> str:
    """Let ``model`` read its training features from the store of ``config.train.feature_cache`` that matches
    its encoder, preprocessing and adapter; returns a one-line report (also when no store matches)."""
    vision, adapter = _cacheable(model)
    root = cache_root(config)
    material = key_material(vision, adapter.feature_kind)
    store = open_store(root, material)
    model.use_feature_cache(store)
    if store is None:
        return (f"feature cache: no store under {root} for this encoder / preprocessing (key {key_of(material)}); "
                f"training runs the encoder — build one with `mmadapt cache-features <recipe>`")
    return f"feature cache: {root / store.key} ({len(store):,} inputs, rows {list(store.row_shape)})"


def cache_training_features(model, config, examples, batch_size: int = 32, quiet: bool = False) -> BuildReport:
    """Compute the adapter's encoder features of every training image into ``config.train.feature_cache``."""
    from tqdm.auto import tqdm

    vision, adapter = _cacheable(model)
    material = key_material(vision, adapter.feature_kind)
    paths = list(dict.fromkeys(ex.image_path for ex in examples))
    model.eval()

    def compute(batch_paths: list[str]) -> torch.Tensor:
        images = [vision.load(p) for p in batch_paths]
        return adapter.encoder_features(vision, vision.preprocess(images).to(model.device)).cpu()

    with tqdm(total=len(paths), disable=quiet, desc="cache-features", unit="file") as bar:
        return build_store(cache_root(config), material, paths, compute, batch_size, progress=bar.update)
