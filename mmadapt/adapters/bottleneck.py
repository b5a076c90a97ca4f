"""Plain bottleneck adapters after every block of a frozen hierarchical encoder: the Polyhistor paper's
baselines — one set per task (``per_task: true``) or one set shared by every task (``false``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mmadapt.adapters.dense import DenseAdapter, add_bottleneck, stage_widths
from mmadapt.backbones.base import StageBlockHook
from mmadapt.errors import ConfigError
from mmadapt.registry import register


@dataclass
class BottleneckConfig:
    """A bottleneck (width ``d_s / reduction``, GELU, zero-initialised up-projection) after every block."""

    name: str = "bottleneck"
    reduction: int = 4
    per_task: bool = True
    scale: float = 1.0

    def validate(self) -> None:
        if self.reduction < 1:
            raise ConfigError(f"reduction: expected a positive integer, got {self.reduction}")


class BottleneckSet(nn.Module):
    """One adapter per block: ``down`` [d, r] (+ bias), ``up`` [r, d] (+ bias, zero-initialised)."""

    def __init__(self, widths: list[int], bottlenecks: list[int], block_stages: list[int]):
        super().__init__()
        self.down = nn.ParameterList()
        self.down_bias = nn.ParameterList()
        self.up = nn.ParameterList()
        self.up_bias = nn.ParameterList()
        for stage in block_stages:
            d, r = widths[stage], bottlenecks[stage]
            self.down.append(nn.Parameter(torch.randn(d, r) / math.sqrt(d)))
            self.down_bias.append(nn.Parameter(torch.zeros(r)))
            self.up.append(nn.Parameter(torch.zeros(r, d)))
            self.up_bias.append(nn.Parameter(torch.zeros(d)))

    def weights(self, block: int) -> tuple[torch.Tensor, ...]:
        return self.down[block], self.down_bias[block], self.up[block], self.up_bias[block]


@register("adapters", "bottleneck")
class BottleneckAdapters(DenseAdapter):
    config_class = BottleneckConfig

    def __init__(self, config: BottleneckConfig, backbone, task_names: Sequence[str]):
        super().__init__()
        self.config = config
        self.task_specific = config.per_task
        self.block_stages, self.widths, self.bottlenecks = stage_widths(backbone, config.reduction)
        self.sets = nn.ModuleDict()
        for name in (task_names if config.per_task else ["shared"]):
            self.add_task(name)

    def add_task(self, name: str) -> None:
        if not self.config.per_task and len(self.sets):
            return  # one set serves every task
        if name in self.sets:
            raise ConfigError(f"model.adapter (bottleneck): task {name!r} already exists")
        self.sets[name] = BottleneckSet(self.widths, self.bottlenecks, self.block_stages)

    def block_hook(self, tasks: Sequence[str]) -> StageBlockHook:
        chosen = [self.sets[t] for t in tasks] if self.config.per_task else [self.sets["shared"]]
        scale = self.config.scale

        def hook(index: int, stage: int, hidden: torch.Tensor) -> torch.Tensor:
            parts = zip(*(s.weights(index) for s in chosen))
            return add_bottleneck(hidden, *(torch.stack(p) for p in parts), scale)

        return hook
