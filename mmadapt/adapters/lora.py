"""peft LoRA inside the frozen encoder (by default its attention's query / value projections), shared by
every task.

peft inserts the LoRA layers into the backbone's own modules (``inject_adapter_in_model``); this adapter
keeps references to their ``lora_A`` / ``lora_B`` weights so that they are what the assembly trains and
saves (the frozen base weights never enter the adapter's state dict).
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


def _default_targets(model: nn.Module) -> list[str]:
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for pair in _QUERY_VALUE:
        if set(pair) <= leaves:
            return pair
    raise ConfigError("model.adapter.target_modules: the encoder has no q_proj / v_proj or query / value "
                      "layers; name the linear layers to adapt")


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
        from peft import LoraConfig, inject_adapter_in_model
        from peft.tuners.lora import LoraLayer

        targets = self.config.target_modules or _default_targets(backbone.model)
        peft_config = LoraConfig(r=self.config.r, lora_alpha=self.config.alpha, lora_dropout=self.config.dropout,
                                 target_modules=targets)
        try:
            inject_adapter_in_model(peft_config, backbone.model, adapter_name=_PEFT_NAME)
        except ValueError as exc:
            raise ConfigError(f"model.adapter.target_modules: {exc}") from None
        for path, module in backbone.model.named_modules():
            if isinstance(module, LoraLayer):
                self.layers[path.replace(".", "__")] = nn.ModuleDict(
                    {"A": module.lora_A[_PEFT_NAME], "B": module.lora_B[_PEFT_NAME]})
        if not len(self.layers):
            raise ConfigError(f"model.adapter.target_modules: no layer of the encoder matches {targets}")

    def add_task(self, name: str) -> None:
        """LoRA is shared: a new task only needs its decoder."""

    def block_hook(self, tasks: Sequence[str]) -> None:
        return None
