"""The offline model zoo: tiny backbones pretrained here, deterministically, shipped with the package.

``zoo:`` names stand in for Hugging Face ids wherever the library loads a backbone::

    path = zoo_path("zoo:tiny-opt")                 # the shipped, manifest-verified weights: no build
    AutoModelForCausalLM.from_pretrained(path); AutoTokenizer.from_pretrained(path)
    path = zoo_path("zoo:tiny-vit")
    ViTModel.from_pretrained(path, add_pooling_layer=False); AutoImageProcessor.from_pretrained(path)

    resolve_pretrained("zoo:tiny-vit")  -> "<MMADAPT_HOME>/zoo/tiny-vit-<hash>"
    resolve_pretrained("facebook/opt-125m") -> "facebook/opt-125m"   (unchanged)

Each model's default entry ships inside the package (``mmadapt/zoo/shipped/<short>/``: the Hugging Face
files plus the ``manifest.json`` its build wrote — spec, held-out figures, file hashes), so a fresh install
needs no pretraining. :func:`build_entry` (and ``mmadapt zoo build NAME``) still builds any spec from
scratch into ``$MMADAPT_HOME/zoo`` (default ``~/.cache/mmadapt``; see :mod:`mmadapt.zoo.cache`); a shipped
entry that fails verification, or was built from another default spec than the code's, is not used: the
default is then built into the cache as before, with one log line saying why.
"""

from __future__ import annotations

import functools
import importlib
import logging
from pathlib import Path

import torch

from mmadapt.names import register_scheme
from mmadapt.zoo.cache import cache_root, deep_merge, get_or_build, read_manifest, spec_hash, verify_entry

logger = logging.getLogger("mmadapt.zoo")

ZOO_PREFIX = "zoo:"
SHIPPED_DIR = Path(__file__).parent / "shipped"

# name -> module with DEFAULT_SPEC, QUICK_OVERRIDES and build(out_dir, spec, progress) -> metrics
_BUILDERS = {
    "zoo:tiny-opt": "mmadapt.zoo.tiny_opt",
    "zoo:tiny-vit": "mmadapt.zoo.tiny_vit",
    "zoo:tiny-timesformer": "mmadapt.zoo.tiny_timesformer",
    "zoo:tiny-ast": "mmadapt.zoo.tiny_ast",
    "zoo:tiny-swin": "mmadapt.zoo.tiny_swin",
}

__all__ = ["ZOO_PREFIX", "is_zoo_name", "zoo_names", "zoo_path", "resolve_pretrained", "build_entry",
           "zoo_spec", "zoo_manifest", "shipped_entry", "held_out_figures", "read_manifest", "cache_root"]


def is_zoo_name(name: str) -> bool:
    """True for names of the form ``zoo:<model>`` (known or not)."""
    return isinstance(name, str) and name.startswith(ZOO_PREFIX)


def zoo_names() -> list[str]:
    """The zoo models that can be built: ``["zoo:tiny-opt", "zoo:tiny-vit"]``."""
    return list(_BUILDERS)


def _module(name: str):
    if name not in _BUILDERS:
        raise ValueError(f"unknown zoo model {name!r}; known: {', '.join(_BUILDERS)}")
    return importlib.import_module(_BUILDERS[name])


def zoo_spec(name: str, spec_overrides: dict | None = None, *, quick: bool = False) -> dict:
    """The build spec of ``name``: its default, with the quick test overrides if ``quick``, then
    ``spec_overrides`` (nested dicts merged; unknown keys refused), with ``train.bf16_autocast: "auto"``
    resolved for this CPU (:func:`resolve_autocast`)."""
    mod = _module(name)
    spec = deep_merge(mod.DEFAULT_SPEC, mod.QUICK_OVERRIDES) if quick else mod.DEFAULT_SPEC
    return resolve_autocast(deep_merge(spec, spec_overrides))


def native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls natively (oneDNN's own check: AVX512-BF16 or AMX)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_autocast(spec: dict) -> dict:
    """``spec`` with ``train.bf16_autocast: "auto"`` replaced by :func:`native_bf16` (other values as given):
    emulated bf16 makes a build ~15× slower than fp32 (see :mod:`mmadapt.zoo.pretrain`)."""
    train = spec.get("train", {})
    if train.get("bf16_autocast") != "auto":
        return spec
    return {**spec, "train": {**train, "bf16_autocast": native_bf16()}}


def build_entry(name: str, *, root: str | Path | None = None, spec_overrides: dict | None = None,
                quick: bool = False, rebuild: bool = False) -> Path:
    """Build (if missing or corrupt) and verify the entry of ``name`` under ``root``; return its directory.

    ``quick=True`` uses a few-step spec meant for tests (an untrained but well-formed model);
    ``spec_overrides`` changes any spec field. Each distinct spec is its own cache entry.
    """
    spec = zoo_spec(name, spec_overrides, quick=quick)
    return get_or_build(name, spec, _module(name).build, root=root, rebuild=rebuild)


def shipped_spec_problem(name: str, shipped: object) -> str | None:
    """Why a shipped manifest's spec is not ``name``'s default spec, or ``None`` when it is.

    ``train.bf16_autocast: "auto"`` matches whichever value the building machine resolved it to: the
    weights serve any CPU, however they were trained."""
    if not isinstance(shipped, dict) or not isinstance(shipped.get("train"), dict):
        return "its manifest has no spec"
    default = _module(name).DEFAULT_SPEC
    built_with = shipped["train"].get("bf16_autocast")
    if default["train"].get("bf16_autocast") == "auto" and isinstance(built_with, bool):
        default = deep_merge(default, {"train": {"bf16_autocast": built_with}})
    if shipped != default:
        return f"it was built from spec {spec_hash(shipped)}, the code's default is {spec_hash(default)}"
    return None


@functools.lru_cache(maxsize=None)
def shipped_entry(name: str) -> Path | None:
    """The verified entry of ``name``'s default spec shipped inside the package, or ``None`` (with one
    warning naming the reason) when it is absent, damaged or stale. Checked once per process."""
    _module(name)  # unknown names fail here
    directory = SHIPPED_DIR / name[len(ZOO_PREFIX):]
    if not directory.is_dir():
        return None
    reason = verify_entry(directory)
    if reason is None:
        manifest = read_manifest(directory)
        reason = shipped_spec_problem(name, manifest.get("spec"))
        if reason is None and manifest.get("spec_hash") != spec_hash(manifest["spec"]):
            reason = f"its manifest's spec_hash {manifest.get('spec_hash')!r} is not its spec's"
    if reason is not None:
        logger.warning("zoo: not using the shipped %s at %s: %s; building it into the cache instead",
                       name, directory, reason)
        return None
    return directory


def zoo_path(name: str, *, rebuild: bool = False) -> Path:
    """The local Hugging Face model directory of zoo model ``name`` (default spec): the shipped entry
    when it verifies, else the cache entry (built on first use). ``rebuild=True`` always builds from
    scratch into the cache."""
    if not rebuild:
        shipped = shipped_entry(name)
        if shipped is not None:
            return shipped
    return build_entry(name, rebuild=rebuild)


def zoo_manifest(name: str) -> dict:
    """The manifest (spec, build metrics, file hashes) of ``name``'s default entry (:func:`zoo_path`)."""
    return read_manifest(zoo_path(name))


def held_out_figures(metrics: dict) -> dict[str, float]:
    """The held-out accuracies in a build's metrics (every builder writes them under ``"accuracy"``)."""
    return {f"accuracy/{k}": float(v) for k, v in sorted(metrics.get("accuracy", {}).items())}


def resolve_pretrained(name_or_path: str) -> str:
    """``"zoo:tiny-opt"`` → its local directory (built if needed); HF ids and paths are returned unchanged."""
    if is_zoo_name(name_or_path):
        return str(zoo_path(name_or_path))
    return name_or_path


register_scheme("zoo", resolve_pretrained)
