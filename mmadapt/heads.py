"""Task heads that turn features into outputs (importing this registers them).

Text outputs come from the frozen LM's own output embedding (see :class:`~mmadapt.models.PerceptualLM`);
the heads here serve encoder assemblies.
"""

from __future__ import annotations

import torch
from torch import nn

from mmadapt.registry import register
from mmadapt.tokenizers.base import TokenBatch


@register("heads", "classification")
class ClassificationHead(nn.Module):
    """Masked mean of the tokens → LayerNorm → Linear: ``TokenBatch`` [B, N, D] → logits [B, n_classes]."""

    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, n_classes)

    def forward(self, batch: TokenBatch) -> torch.Tensor:
        w = batch.mask.unsqueeze(-1).to(batch.tokens.dtype)
        pooled = (batch.tokens * w).sum(dim=1) / w.sum(dim=1).clamp(min=1)
        return self.fc(self.norm(pooled))

