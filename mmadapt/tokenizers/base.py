"""TokenBatch and the Tokenizer contract: raw modality tensors → tokens in one shared width ``D``."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class TokenBatch:
    """Tokens of one modality, padded to a common length.

    - ``tokens`` [B, N, D]: the embeddings;
    - ``mask`` [B, N] (bool): True for real tokens, False for padding;
    - ``coords`` [B, N, k] or None: where each token sits (2D patch grid (row, col); time index; xyz).
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    coords: torch.Tensor | None = None

    def __post_init__(self) -> None:
        B, N, _ = self.tokens.shape
        if self.mask.shape != (B, N):
            raise ValueError(f"TokenBatch: mask shape {tuple(self.mask.shape)} != tokens' [B, N] = {(B, N)}")
        if self.coords is not None and self.coords.shape[:2] != (B, N):
            raise ValueError(f"TokenBatch: coords shape {tuple(self.coords.shape)} does not start with {(B, N)}")


class Tokenizer(nn.Module, abc.ABC):
    """A trainable (or frozen) map from one modality's raw tensor to a :class:`TokenBatch` of width ``dim``."""

    dim: int

    @abc.abstractmethod
    def forward(self, inputs) -> TokenBatch: ...
