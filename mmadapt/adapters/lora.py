"""peft LoRA inside the frozen encoder (by default its attention's query / value projections), shared by
every task.

peft inserts the LoRA layers into the backbone's own modules (``inject_adapter_in_model``); this adapter
keeps references to their ``lora_A`` / ``lora_B`` weights so that they are what the assembly trains and
saves (the frozen base weights never enter the adapter's state dict). :func:`inject_lora` does that for any
frozen model; SOLO uses it on the frozen LM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from mmadapt.adapters.dense import DenseAdapter
from mmadapt.errors import ConfigError
from mmadapt.registry import register

_PEFT_NAME = "default"
#: query / value projection names, by transformers generation (5: q_proj / v_proj; 4: query / value)
_QUERY_VALUE = (["q_proj", "v_proj"], ["query", "value"])
#: fused query-key-value projections (GPT-2, Phi-3, GPT-NeoX / Falcon / BLOOM, MPT)
_FUSED_QKV = ("c_attn", "qkv_proj", "query_key_value", "Wqkv")


def _default_targets(model: nn.Module, key: str) -> list[str]:
    """The attention's query / value projections; for a model without separate ones, peft's own default for
    its architecture, else its fused query-key-value projection."""
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for pair in _QUERY_VALUE:
        if set(pair) <= leaves:
            return pair
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

    config = getattr(model, "config", None)  # a Hugging Face model; other modules have no architecture name
    known = PEFT_DEFAULTS.get(getattr(config, "model_type", None))
    if known and set(known) <= leaves:
        return list(known)
    fused = [name for name in _FUSED_QKV if name in leaves]
    if fused:
        return fused[:1]
    raise ConfigError(f"{key}.target_modules: the model has no q_proj / v_proj, query / value or fused "
                      f"query-key-value layers; name the linear layers to adapt")


def inject_lora(config: "LoRAConfig", model: nn.Module, key: str = "model.adapter") -> nn.ModuleDict:
    """Insert peft LoRA layers into ``model`` (in place) and return their weights as
    ``{"<module path with __>": {"A": lora_A, "B": lora_B}}``, the modules an adapter owns and saves.

    ``config.target_modules`` None means the attention's query / value projections. ``key`` is the recipe
    key of ``config``, for errors (e.g. ``model.adapter.lora``).
    """
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    from transformers.pytorch_utils import Conv1D

    targets = config.target_modules or _default_targets(model, key)
    # GPT-2-style Conv1D projections store their weight transposed (peft's fan_in_fan_out)
    conv1d = any(isinstance(m, Conv1D) and name.rsplit(".", 1)[-1] in targets for name, m in model.named_modules())
    peft_config = LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=targets,
                             fan_in_fan_out=conv1d)
    try:
        inject_adapter_in_model(peft_config, model, adapter_name=_PEFT_NAME)
    except ValueError as exc:
        raise ConfigError(f"{key}.target_modules: {exc}") from None
    layers = nn.ModuleDict()
    for path, module in model.named_modules():
        if isinstance(module, LoraLayer):
            layers[path.replace(".", "__")] = nn.ModuleDict({"A": module.lora_A[_PEFT_NAME],
                                                             "B": module.lora_B[_PEFT_NAME]})
    if not len(layers):
        raise ConfigError(f"{key}.target_modules: no layer of the model matches {targets}")
    return layers


def remove_lora(model: nn.Module) -> int:
    """Delete the LoRA weights :func:`inject_lora` put into ``model`` (its layers then compute the base layer
    alone); returns how many layers had them."""
    from peft.tuners.lora import LoraLayer

    removed = 0
    for module in model.modules():
        if isinstance(module, LoraLayer) and _PEFT_NAME in module.lora_A:
            module.delete_adapter(_PEFT_NAME)
            removed += 1
    configs = model.__dict__.get("peft_config")  # the record inject_adapter_in_model keeps on the model
    if isinstance(configs, dict):
        configs.pop(_PEFT_NAME, None)
        if not configs:
            del model.peft_config
    return removed


@dataclass
class LoRAConfig:
    """LoRA of rank ``r`` (scaling ``alpha / r``) on the encoder's linear layers named in ``target_modules``."""

    name: str = "lora"
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] | None = None  # None: the attention's query / value projections

    def validate(self) -> None:
        if self.r < 1:
            raise ConfigError(f"r: expected a positive integer, got {self.r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout: expected a value in [0, 1), got {self.dropout}")


@register("adapters", "lora")
class LoRA(DenseAdapter):
    config_class = LoRAConfig
    task_specific = False

    def __init__(self, config: LoRAConfig, backbone, task_names: Sequence[str]):
        super().__init__()
        self.config = config
        self.layers = nn.ModuleDict()  # filled by attach: "<module path>" → {A, B}

    def attach(self, backbone) -> None:
        self.layers.update(inject_lora(self.config, backbone.model))

    def add_task(self, name: str) -> None:
        """LoRA is shared: a new task only needs its decoder."""

    def block_hook(self, tasks: Sequence[str]) -> None:
        return None
