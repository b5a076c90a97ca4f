"""The contract of adapters inside a frozen hierarchical encoder that serves several dense tasks at once.

A :class:`DenseAdapter` sits after every block of the encoder (``HFSwin.set_block_hook``). A
*task-specific* adapter (Polyhistor, Polyhistor-Lite, per-task bottlenecks) gives each task its own adapted
features: the assembly repeats the batch once per task (task-major, ``[T·B, ...]``) so that one forward
pass of the frozen encoder computes every task's features, and the hook applies task ``i``'s weights to
the ``i``-th slice. A shared adapter (one bottleneck set, LoRA) runs on the batch once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F

from mmadapt.adapters.base import Adapter
from mmadapt.backbones.base import StageBlockHook
from mmadapt.errors import ConfigError



class DenseAdapter(Adapter):
    """Base class: subclasses are built as ``cls(config, backbone, task_names)``."""

    assemblies = ("dense_multitask",)
    task_specific: ClassVar[bool] = True

    def attach(self, backbone) -> None:
        """Called once by the assembly; adapters that live inside the backbone's modules insert them here."""

    def add_task(self, name: str) -> None:
        """Make room for a new task (existing tasks' weights untouched)."""
        raise ConfigError(f"model.adapter ({self.config.name}): cannot add a task")

    def block_hook(self, tasks: Sequence[str]) -> StageBlockHook | None:
        """The per-block function for a forward pass over ``tasks`` (task-major slices if task-specific)."""
        raise NotImplementedError


def add_bottleneck(hidden: torch.Tensor, w_down: torch.Tensor, b_down: torch.Tensor, w_up: torch.Tensor,
                   b_up: torch.Tensor, scale: float) -> torch.Tensor:
    """``hidden + scale · (GELU(hidden W_down + b_down) W_up + b_up)`` with one weight set per group.

    ``hidden`` [G·B, L, C] (G groups of B samples, group-major); ``w_down`` [G, C, r], ``b_down`` [G, r],
    ``w_up`` [G, r, C], ``b_up`` [G, C]. G = 1 applies one set to the whole batch.
    """
    groups = w_down.shape[0]
    n, length, width = hidden.shape
    if n % groups:
        raise ValueError(f"adapter: batch of {n} is not {groups} task slices")
    x = hidden.reshape(groups, (n // groups) * length, width)
    w_down, b_down, w_up, b_up = (t.to(x.dtype) for t in (w_down, b_down, w_up, b_up))
    h = F.gelu(torch.baddbmm(b_down[:, None], x, w_down))
    delta = torch.baddbmm(b_up[:, None], h, w_up)
    return hidden + scale * delta.reshape(n, length, width)


def stage_widths(backbone, reduction: int) -> tuple[list[int], list[int], list[int]]:
    """(stage of each block, each stage's width, each stage's bottleneck width) of ``backbone``."""
    stages = [stage for stage, _ in backbone.blocks()]
    widths = list(backbone.hidden_sizes)
    bottlenecks = []
    for s, width in enumerate(widths):
        if width % reduction:
            raise ConfigError(f"model.adapter.reduction: {reduction} does not divide stage {s}'s width {width}")
        bottlenecks.append(width // reduction)
    return stages, widths, bottlenecks
