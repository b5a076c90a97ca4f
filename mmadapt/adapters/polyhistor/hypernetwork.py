"""Decomposed HyperNetworks and Layer-wise Scaling Kernels (Polyhistor, Liu et al., NeurIPS 2022).

A Hyperformer-style hypernetwork maps (task, layer) to a whole ``d × r`` adapter matrix, so its output
layer holds ``embed × d × r`` weights. The decomposed form splits it: a *task* hypernetwork emits a
``d × rank`` factor from the task embedding, a *layer* hypernetwork a ``rank × r`` factor from the layer
embedding, and the adapter matrix is their product — ``embed × rank × (d + r)`` weights for every task and
layer. Layer-wise Scaling Kernels let one template width serve every stage of a hierarchical encoder:
``W = template ⊗ K`` with a small learned ``k × k`` kernel per layer.

The factor shapes, the ``1 / sqrt(rank · width)`` normalisation, which embedding feeds which bias, the
Kronecker order ``template ⊗ K`` and every initialisation are mmadapt's choices (the method section of the
paper could not be read here): ``docs/methods/polyhistor.md`` gives each one and why.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class DecomposedHyperNetwork(nn.Module):
    """Adapter matrices ``W_down [d, r]`` and ``W_up [r, d]`` (and their biases) for any (task, layer).

    ``W_down = T_down(e_task) @ L_down(e_layer) / sqrt(rank·d)`` and
    ``W_up = L_up(e_layer) @ T_up(e_task) / sqrt(rank·r)``; ``b_down`` from the layer embedding, ``b_up``
    from the task embedding. ``T_up`` and the ``b_up`` map start at zero, so every generated adapter starts
    as the identity; at the first step only those two maps receive a gradient (everything else sits behind
    ``W_up = 0``). The other maps keep ``nn.Linear``'s default initialisation: with N(0, 1) embeddings the
    generated ``W_down`` entries have variance ≈ ``1 / (9 d)`` whatever the rank.
    """

    def __init__(self, width: int, bottleneck: int, rank: int, task_dim: int, layer_dim: int):
        super().__init__()
        self.width, self.bottleneck, self.rank = width, bottleneck, rank
        self.task_down = nn.Linear(task_dim, width * rank)
        self.layer_down = nn.Linear(layer_dim, rank * bottleneck)
        self.task_up = nn.Linear(task_dim, rank * width)
        self.layer_up = nn.Linear(layer_dim, bottleneck * rank)
        self.bias_down = nn.Linear(layer_dim, bottleneck)
        self.bias_up = nn.Linear(task_dim, width)
        for zero in (self.task_up, self.bias_up):
            nn.init.zeros_(zero.weight)
            nn.init.zeros_(zero.bias)

    def forward(self, task_emb: torch.Tensor, layer_emb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``task_emb`` [T, Et], ``layer_emb`` [Et] of one layer → ``w_down`` [T, d, r], ``b_down`` [T, r],
        ``w_up`` [T, r, d], ``b_up`` [T, d]."""
        t, d, r, k = task_emb.shape[0], self.width, self.bottleneck, self.rank
        task_down = self.task_down(task_emb).view(t, d, k)
        layer_down = self.layer_down(layer_emb).view(k, r)
        task_up = self.task_up(task_emb).view(t, k, d)
        layer_up = self.layer_up(layer_emb).view(r, k)
        w_down = task_down @ layer_down / math.sqrt(k * d)
        w_up = layer_up @ task_up / math.sqrt(k * r)
        b_down = self.bias_down(layer_emb).expand(t, r)
        return w_down, b_down, w_up, self.bias_up(task_emb)


class LayerScalingKernel(nn.Module):
    """One layer's ``k × k`` kernels that expand template adapter matrices by a Kronecker product:
    ``[d_0, r_0] → [d_0·k, r_0·k]`` (and the biases by repetition). ``k = 1`` is a learned scalar.

    Both kernels start N(0, 1 / k): the expanded matrix's entries then have the template's variance divided
    by ``k``, i.e. ≈ ``1 / (9 d_s)`` — what Polyhistor's own per-stage hypernetworks give at width ``d_s``."""

    def __init__(self, factor: int):
        super().__init__()
        self.factor = factor
        self.down = nn.Parameter(torch.randn(factor, factor) / math.sqrt(factor))
        self.up = nn.Parameter(torch.randn(factor, factor) / math.sqrt(factor))

    def forward(self, w_down: torch.Tensor, b_down: torch.Tensor, w_up: torch.Tensor,
                b_up: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Templates with a leading task axis ``[T, ...]`` → this layer's matrices ``[T, d_0·k, r_0·k]`` ..."""
        k = self.factor
        expand = torch.vmap(torch.kron, in_dims=(0, None))
        return (expand(w_down, self.down), b_down.repeat_interleave(k, dim=-1),
                expand(w_up, self.up), b_up.repeat_interleave(k, dim=-1))
