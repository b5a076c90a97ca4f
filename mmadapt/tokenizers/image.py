"""Image → patch tokens (Meta-Transformer / ViT style convolutional patch embedding).

Data side: :meth:`ImagePatchTokenizer.load` reads a file with :func:`mmadapt.io.image.load_image` (RGB, EXIF
orientation applied) and resizes it to ``image_size`` (bicubic, the ViT convention; ``resize: pad``
keeps the aspect ratio and pads with black instead of stretching); :meth:`collate` stacks. The forward pass
normalises with ``mean`` / ``std``, embeds ``patch_size`` patches and adds a learned position embedding
of the patch grid (the frozen encoder's own patch and position embeddings are bypassed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from einops import rearrange
from PIL import Image
from torch import nn

from mmadapt.errors import ConfigError
from mmadapt.registry import register
from mmadapt.tokenizers.base import TokenBatch, Tokenizer


@dataclass
class ImageTokenizerConfig:
    name: str = "image"
    image_size: int = 64
    patch_size: int = 8
    resize: Literal["stretch", "pad"] = "stretch"
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])

    def validate(self) -> None:
        if self.patch_size < 1 or self.image_size % self.patch_size:
            raise ConfigError(f"image_size: {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"mean/std: expected 3 values each and std > 0, got {self.mean} / {self.std}")


@register("tokenizers", "image")
class ImagePatchTokenizer(Tokenizer):
    """``pixels`` [B, 3, S, S] in [0, 1] → ``tokens`` [B, (S/p)², D] with (row, col) ``coords`` [B, N, 2].

    Every token is real (mask all True).
    """

    config_class = ImageTokenizerConfig

    def __init__(self, dim: int, config: ImageTokenizerConfig | None = None):
        super().__init__()
        self.config = config = config or ImageTokenizerConfig()
        config.validate()
        self.dim, self.patch_size = dim, config.patch_size
        side = config.image_size // config.patch_size
        self.proj = nn.Conv2d(3, dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.position = nn.Parameter(torch.randn(side * side, dim) * 0.02)
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------------------------------ data side
    def load(self, source) -> torch.Tensor:
        """A path (or a PIL image, or a tensor [3, S, S] that passes through) → [3, S, S] float in [0, 1]."""
        if isinstance(source, torch.Tensor):
            return source
        from mmadapt.io.image import load_image

        image = source if isinstance(source, Image.Image) else load_image(source)
        size = self.config.image_size
        if self.config.resize == "pad":
            scale = size / max(image.size)
            inner = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.Resampling.BICUBIC)
            image = Image.new("RGB", (size, size))
            image.paste(inner, ((size - inner.width) // 2, (size - inner.height) // 2))
        else:
            image = image.resize((size, size), Image.Resampling.BICUBIC)
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()

    def collate(self, samples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"pixels": torch.stack(samples)}

    # ---------------------------------------------------------------------------------------- the tokens
    def forward(self, pixels: torch.Tensor) -> TokenBatch:
        S = self.config.image_size
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, S, S):
            raise ValueError(f"image tokenizer: expected pixels [B, 3, {S}, {S}], got {list(pixels.shape)}")
        B = pixels.shape[0]
        x = (pixels.to(self.proj.weight.dtype) - self.mean) / self.std
        grid = self.proj(x)  # [B, D, S/p, S/p]
        rows, cols = grid.shape[-2:]
        tokens = rearrange(grid, "b d h w -> b (h w) d") + self.position
        rc = torch.stack(torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij"), dim=-1)
        coords = rearrange(rc, "h w k -> (h w) k").to(pixels.device).expand(B, -1, -1)
        return TokenBatch(tokens, torch.ones(B, rows * cols, dtype=torch.bool, device=pixels.device), coords)
