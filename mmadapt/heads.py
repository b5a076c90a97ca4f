"""Task heads that turn an encoder's output tokens into predictions (importing this registers them).

Text outputs come from the frozen LM's own output embedding (see :class:`~mmadapt.models.PerceptualLM`);
the heads here serve encoder assemblies (:class:`~mmadapt.models.AdaptedEncoder`). Each head pools the
tokens (masked mean over real tokens, or the [CLS] at position 0), normalises, projects, and owns its loss.
"""

from __future__ import annotations

import abc
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mmadapt.registry import register
from mmadapt.tokenizers.base import TokenBatch


class PooledHead(nn.Module, abc.ABC):
    """``TokenBatch`` [B, N, D] → pool → LayerNorm → Linear → [B, n_outputs]."""

    def __init__(self, dim: int, n_outputs: int, pool: Literal["mean", "cls"] = "mean"):
        super().__init__()
        if pool not in ("mean", "cls"):
            raise ValueError(f"head pool: expected 'mean' or 'cls', got {pool!r}")
        self.pool = pool
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, n_outputs)

    def forward(self, batch: TokenBatch) -> torch.Tensor:
        if self.pool == "cls":
            pooled = batch.tokens[:, 0]
        else:
            w = batch.mask.unsqueeze(-1).to(batch.tokens.dtype)
            pooled = (batch.tokens * w).sum(dim=1) / w.sum(dim=1).clamp(min=1)
        return self.fc(self.norm(pooled))

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
