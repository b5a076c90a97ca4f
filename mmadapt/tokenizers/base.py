"""TokenBatch and the Tokenizer contract: raw modality tensors → tokens in one shared width ``D``."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mmadapt.errors import ConfigError


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
    #: the config dataclass a recipe's ``model.tokenizer`` section builds (set by configurable subclasses)
    config_class: type

    @abc.abstractmethod
    def forward(self, inputs) -> TokenBatch: ...

    def _set_config(self, dim: int, config: Any | None) -> Any:
        """Validate ``config`` (``self.config_class()`` when None), set ``self.dim`` and ``self.config``, and
        return the config. A :class:`ConfigError` from ``validate()`` is re-raised as
        ``tokenizer.<field>: ...``, the key a recipe sets (``model.tokenizer.<field>``)."""
        cfg = config if config is not None else self.config_class()
        try:
            cfg.validate()
        except ConfigError as exc:
            raise ConfigError(f"tokenizer.{exc}") from None
        self.dim, self.config = dim, cfg
        return cfg

    def _add_position_tables(self, tables: dict[str, torch.Tensor], learned: bool) -> None:
        """Register each ``name → table`` as a trained :class:`~torch.nn.Parameter` when ``learned``, else as a
        fixed, non-persistent buffer (rebuilt by ``__init__``, so not saved in the state dict)."""
        for key, table in tables.items():
            if learned:
                self.register_parameter(key, nn.Parameter(table))
            else:
                self.register_buffer(key, table, persistent=False)


def sincos_table(n: int, dim: int, lo: int, hi: int) -> torch.Tensor:
    """Fixed sin-cos position table ``[n, dim]`` (float32) for positions ``0 .. n-1``.

    Fills channels ``[lo, lo + w)``, ``w`` the even part of ``hi - lo``: sines in the first ``w / 2``,
    cosines in the next, frequencies ``1 / 10000^(i / (w/2))`` for ``i = 0 .. w/2 - 1`` (computed in
    float64); every other channel is zero. Two tables over ``[0, dim/2)`` and ``[dim/2, dim)``, summed,
    give the 2D sin-cos layout of MAE / ViT position embeddings.
    """
    half = (hi - lo) // 2
    table = torch.zeros(n, dim)
    if half:
        omega = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float64) / half)
        angles = torch.arange(n, dtype=torch.float64)[:, None] * omega[None]
        table[:, lo:lo + 2 * half] = torch.cat([angles.sin(), angles.cos()], dim=1).float()
    return table
