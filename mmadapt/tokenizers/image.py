"""Image → patch tokens (Meta-Transformer / ViT style convolutional patch embedding)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from mmadapt.registry import register
from mmadapt.tokenizers.base import TokenBatch, Tokenizer


@register("tokenizers", "image")
class ImagePatchTokenizer(Tokenizer):
    """``pixels`` [B, C, H, W] → ``tokens`` [B, (H/p)·(W/p), D] with (row, col) ``coords``.

    H and W must be multiples of ``patch_size``; every token is real (mask all True).
    """

    def __init__(self, dim: int, patch_size: int = 16, in_channels: int = 3):
        super().__init__()
        self.dim, self.patch_size = dim, patch_size
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, pixels: torch.Tensor) -> TokenBatch:
        B, _, H, W = pixels.shape
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f"image tokenizer: image size {H}×{W} is not a multiple of patch_size {p}")
        grid = self.proj(pixels)  # [B, D, H/p, W/p]
        rows, cols = grid.shape[-2:]
        tokens = rearrange(grid, "b d h w -> b (h w) d")
        rc = torch.stack(torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij"), dim=-1)
        coords = rearrange(rc, "h w k -> (h w) k").to(pixels.device).expand(B, -1, -1)
        return TokenBatch(tokens, torch.ones(B, rows * cols, dtype=torch.bool, device=pixels.device), coords)
