"""One small registry for every kind of part: tokenizers, backbones, adapters, heads, tasks, assemblies and
dataset formats.

Parts register themselves with a decorator at import time::

    @register("adapters", "epalm")
    class EPALMAdapter(nn.Module): ...

and are looked up by name (``get("adapters", "epalm")``). ``mmadapt info`` lists what is registered.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

KINDS = ("tokenizers", "backbones", "adapters", "heads", "tasks", "assemblies", "datasets")
_REGISTRY: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}

# Modules whose import registers the built-in parts; imported lazily so `import mmadapt` stays light.
_BUILTIN_MODULES = (
    "mmadapt.tokenizers",
    "mmadapt.backbones",
    "mmadapt.adapters",
    "mmadapt.heads",
    "mmadapt.tasks",
    "mmadapt.models",
    "mmadapt.data.formats",
    "mmadapt.data.synthetic",
)
_loaded = False


def register(kind: str, name: str) -> Callable[[Any], Any]:
    """Class/function decorator: make ``obj`` available as ``kind/name``."""
    if kind not in _REGISTRY:
        raise KeyError(f"unknown registry kind {kind!r}; expected one of {KINDS}")

    def deco(obj: Any) -> Any:
        existing = _REGISTRY[kind].get(name)
        if existing is not None and existing is not obj:
            raise KeyError(f"{kind}/{name} is already registered to {existing!r}")
        _REGISTRY[kind][name] = obj
        return obj

    return deco


def load_builtins() -> None:
    """Import the modules that register mmadapt's own parts (idempotent)."""
    global _loaded
    if not _loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        _loaded = True


def get(kind: str, name: str) -> Any:
    load_builtins()
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY.get(kind, {}))) or "none"
        raise KeyError(f"no {kind[:-1]} named {name!r} (registered: {known})") from None


def names(kind: str) -> list[str]:
    load_builtins()
    return sorted(_REGISTRY[kind])


def catalogue() -> dict[str, list[str]]:
    """Everything registered, as ``mmadapt info --json`` prints it."""
    load_builtins()
    return {kind: sorted(entries) for kind, entries in _REGISTRY.items()}
