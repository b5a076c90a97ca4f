"""The heads of All-in-One (:class:`~mmadapt.models.all_in_one.AllInOne`) over its pooled [B, D] output,
shaped and initialised as the authors' (showlab/all-in-one): the video QA / classification classifier and
the init of every Linear they add."""

from __future__ import annotations

import torch
from torch import nn


class ClassifierHead(nn.Module):
    """[B, D] → [B, n_outputs], by ``video_text.classifier``: ``openend`` — Dropout(0.5) → Linear(D, D/2) →
    LayerNorm → GELU → Linear (the authors' MSRVTT-QA / action-recognition head); ``vqav2`` — Linear(D, 2D) →
    LayerNorm → GELU → Linear (their VQAv2 head). Linear weights N(0, 0.02), zero biases (their
    ``init_weights``)."""

    def __init__(self, dim: int, n_outputs: int, shape: str = "openend"):
        super().__init__()
        if shape == "openend":
            hidden, layers = dim // 2, [nn.Dropout(0.5)]
        else:
            hidden, layers = 2 * dim, []
        self.net = nn.Sequential(*layers, nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.GELU(),
                                 nn.Linear(hidden, n_outputs))
        for m in self.net:
            if isinstance(m, nn.Linear):
                authors_init(m)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled)


def authors_init(linear: nn.Linear) -> nn.Linear:
    """``linear`` re-initialised as the authors' ``objectives.init_weights``: N(0, 0.02) weights, zero bias.
    Their retrieval score ``rank_output`` (Linear(D, 1)) starts so too: they copy it from their pretrained
    matching head's "match" row, initialised the same way."""
    nn.init.normal_(linear.weight, std=0.02)
    nn.init.zeros_(linear.bias)
    return linear
