"""Pooled heads that turn an encoder's output tokens into predictions (importing this registers them).

They serve encoder assemblies (:class:`~mmadapt.models.AdaptedEncoder`). Each head pools the
tokens (masked mean over real tokens, the [CLS] at position 0, or max ‖ [CLS]), normalises or runs an MLP,
projects, and owns its loss.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mmadapt.registry import register
from mmadapt.tokenizers.base import TokenBatch


class PooledHead(nn.Module, abc.ABC):
    """``TokenBatch`` [B, 1+N, D] ([CLS] first) → pool → [B, n_outputs].

    ``pool``: ``mean`` (masked, over every real token), ``cls`` (position 0), ``max_cls`` (Any2Point's
    authors: ``[max over the real tokens after [CLS] ‖ [CLS]]``, [B, 2D]). ``mlp`` empty: LayerNorm →
    Linear; ``mlp`` = hidden widths: for each, Linear (no bias) → BatchNorm1d → ReLU → Dropout(``dropout``),
    then the output Linear (the authors' ``ClsHead``, no LayerNorm).
    """

    def __init__(self, dim: int, n_outputs: int, pool: Literal["mean", "cls", "max_cls"] = "mean",
                 mlp: Sequence[int] = (), dropout: float = 0.5):
        super().__init__()
        if pool not in ("mean", "cls", "max_cls"):
            raise ValueError(f"head pool: expected 'mean', 'cls' or 'max_cls', got {pool!r}")
        self.pool = pool
        width = 2 * dim if pool == "max_cls" else dim
        if mlp:
            layers: list[nn.Module] = []
            for hidden in mlp:
                layers += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout)]
                width = hidden
            self.norm = nn.Identity()
            self.mlp = nn.Sequential(*layers)
        else:
            self.norm = nn.LayerNorm(width)
            self.mlp = nn.Identity()
        self.fc = nn.Linear(width, n_outputs)

    def forward(self, batch: TokenBatch) -> torch.Tensor:
        if self.pool == "cls":
            pooled = batch.tokens[:, 0]
        elif self.pool == "max_cls":
            rest = batch.tokens[:, 1:].masked_fill(~batch.mask[:, 1:, None], -torch.inf)
            pooled = torch.cat([rest.amax(dim=1), batch.tokens[:, 0]], dim=-1)
        else:
            w = batch.mask.unsqueeze(-1).to(batch.tokens.dtype)
            pooled = (batch.tokens * w).sum(dim=1) / w.sum(dim=1).clamp(min=1)
        return self.fc(self.mlp(self.norm(pooled)))

    @abc.abstractmethod
    def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor: ...


@register("heads", "classification")
class ClassificationHead(PooledHead):
    """Logits [B, n_classes]; cross-entropy against class indices [B]."""

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), labels.long())


@register("heads", "regression")
class RegressionHead(PooledHead):
    """Values [B, n_outputs]; mean squared error against targets [B] or [B, n_outputs]."""

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs.float(), labels.float().view_as(outputs))
