"""Polyhistor and Polyhistor-Lite: hypernetwork-generated bottleneck adapters in every block of a frozen
hierarchical encoder, one set of generated weights per task (Liu et al., NeurIPS 2022).

Per forward pass over tasks ``[t_1 .. t_A]`` (the batch repeated once per task, task-major)::

    task embeddings [A, Et], layer embedding e_l ─hypernetworks─▶ W_down [A, d_s, r_s], W_up [A, r_s, d_s]
    block l's output x [A·B, L, d_s] ─▶ x + scale · (GELU(x W_down + b_down) W_up + b_up)   (slice i: task t_i)

No official code exists, and of the paper only the abstract, the introduction and the figure captions could
be read here; ``docs/methods/polyhistor.md`` lists what those fix and every choice made where they do not
(position after each block's output, linear hypernetworks, the task half of ``W_up`` at zero so the
adapters start as the identity, ...). Task embeddings are keyed by task name, so :meth:`add_task` adds one
embedding and leaves every other task's generated weights — and outputs — unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmadapt.adapters.dense import DenseAdapter, add_bottleneck, stage_widths
from mmadapt.adapters.polyhistor.config import PolyhistorConfig, PolyhistorLiteConfig
from mmadapt.adapters.polyhistor.hypernetwork import DecomposedHyperNetwork, LayerScalingKernel
from mmadapt.backbones.base import StageBlockHook
from mmadapt.errors import ConfigError
from mmadapt.registry import register


class _HyperAdapter(DenseAdapter):
    """Task / layer embeddings and the hook; subclasses build ``self.layer_weights(tasks)``."""

    def __init__(self, config: PolyhistorConfig, backbone, task_names: Sequence[str]):
        super().__init__()
        self.config = config
        self.block_stages, self.widths, self.bottlenecks = stage_widths(backbone, config.reduction)
        self.task_embeddings = nn.ParameterDict()
        for name in task_names:
            self.add_task(name)
        self.layer_embeddings = nn.Parameter(torch.randn(len(self.block_stages), config.layer_embed_dim))

    def add_task(self, name: str) -> None:
        if name in self.task_embeddings:
            raise ConfigError(f"model.adapter ({self.config.name}): task {name!r} already exists")
        device = next(iter(self.task_embeddings.values())).device if len(self.task_embeddings) else None
        self.task_embeddings[name] = nn.Parameter(torch.randn(self.config.task_embed_dim, device=device))

    def task_matrix(self, tasks: Sequence[str]) -> torch.Tensor:
        unknown = [t for t in tasks if t not in self.task_embeddings]
        if unknown:
            raise ConfigError(f"model.adapter ({self.config.name}): unknown task(s) {unknown}; "
                              f"known: {list(self.task_embeddings)}")
        return torch.stack([self.task_embeddings[t] for t in tasks])

    def layer_weights(self, task_emb: torch.Tensor, block: int) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def block_hook(self, tasks: Sequence[str]) -> StageBlockHook:
        task_emb = self.task_matrix(tasks)
        scale = self.config.scale

        def hook(index: int, stage: int, hidden: torch.Tensor) -> torch.Tensor:
            return add_bottleneck(hidden, *self.layer_weights(task_emb, index), scale)

        return hook


@register("adapters", "polyhistor")
class Polyhistor(_HyperAdapter):
    """Decomposed HyperNetworks, one set per stage (each stage's width ``d_s``, bottleneck ``d_s / reduction``)."""

    config_class = PolyhistorConfig

    def __init__(self, config: PolyhistorConfig, backbone, task_names: Sequence[str]):
        super().__init__(config, backbone, task_names)
        self.hypernetworks = nn.ModuleList(
            DecomposedHyperNetwork(width, r, config.rank, config.task_embed_dim, config.layer_embed_dim)
            for width, r in zip(self.widths, self.bottlenecks))

    def layer_weights(self, task_emb: torch.Tensor, block: int) -> tuple[torch.Tensor, ...]:
        return self.hypernetworks[self.block_stages[block]](task_emb, self.layer_embeddings[block])


@register("adapters", "polyhistor_lite")
class PolyhistorLite(_HyperAdapter):
    """Decomposed Lite-HyperNetworks (one set, at the narrowest stage's width) + Layer-wise Scaling Kernels."""

    config_class = PolyhistorLiteConfig

    def __init__(self, config: PolyhistorLiteConfig, backbone, task_names: Sequence[str]):
        super().__init__(config, backbone, task_names)
        base = min(self.widths)
        factors = []
        for s, width in enumerate(self.widths):
            if width % base:
                raise ConfigError(f"model.adapter (polyhistor_lite): stage {s}'s width {width} is not a multiple "
                                  f"of the narrowest stage's {base}")
            factors.append(width // base)
        self.hypernetwork = DecomposedHyperNetwork(base, base // config.reduction, config.rank,
                                                   config.task_embed_dim, config.layer_embed_dim)
        self.scaling_kernels = nn.ModuleList(LayerScalingKernel(factors[s]) for s in self.block_stages)

    def layer_weights(self, task_emb: torch.Tensor, block: int) -> tuple[torch.Tensor, ...]:
        template = self.hypernetwork(task_emb, self.layer_embeddings[block])
        return self.scaling_kernels[block](*template)
