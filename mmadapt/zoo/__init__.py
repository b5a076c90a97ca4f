"""The offline model zoo: tiny backbones built *and briefly pretrained* here, deterministically, cached.

``zoo:`` names stand in for Hugging Face ids wherever the library loads a backbone::

    path = zoo_path("zoo:tiny-opt")                 # builds on first use (minutes), then verified & reused
    AutoModelForCausalLM.from_pretrained(path); AutoTokenizer.from_pretrained(path)
    path = zoo_path("zoo:tiny-vit")
    ViTModel.from_pretrained(path, add_pooling_layer=False); AutoImageProcessor.from_pretrained(path)

    resolve_pretrained("zoo:tiny-vit")  -> "<MMADAPT_HOME>/zoo/tiny-vit-<hash>"
    resolve_pretrained("facebook/opt-125m") -> "facebook/opt-125m"   (unchanged)

Entries live under ``$MMADAPT_HOME/zoo`` (default ``~/.cache/mmadapt``); see :mod:`mmadapt.zoo.cache`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from mmadapt.names import register_scheme
from mmadapt.zoo.cache import cache_root, deep_merge, get_or_build, read_manifest

ZOO_PREFIX = "zoo:"

# name -> module with DEFAULT_SPEC, QUICK_OVERRIDES and build(out_dir, spec, progress) -> metrics
_BUILDERS = {
    "zoo:tiny-opt": "mmadapt.zoo.tiny_opt",
    "zoo:tiny-vit": "mmadapt.zoo.tiny_vit",
    "zoo:tiny-timesformer": "mmadapt.zoo.tiny_timesformer",
    "zoo:tiny-ast": "mmadapt.zoo.tiny_ast",
    "zoo:tiny-swin": "mmadapt.zoo.tiny_swin",
}

__all__ = ["ZOO_PREFIX", "is_zoo_name", "zoo_names", "zoo_path", "resolve_pretrained", "build_entry",
           "zoo_spec", "zoo_manifest", "cache_root"]


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


def zoo_path(name: str, *, rebuild: bool = False) -> Path:
    """The local Hugging Face model directory of zoo model ``name`` (full spec), built on first use."""
    return build_entry(name, rebuild=rebuild)


def zoo_manifest(name: str) -> dict:
    """The manifest (spec, build metrics, file hashes) of ``name``'s full entry, building it if needed."""
    return read_manifest(zoo_path(name))


def resolve_pretrained(name_or_path: str) -> str:
    """``"zoo:tiny-opt"`` → its local directory (built if needed); HF ids and paths are returned unchanged."""
    if is_zoo_name(name_or_path):
        return str(zoo_path(name_or_path))
    return name_or_path


register_scheme("zoo", resolve_pretrained)
