"""Video → spatio-temporal patch tokens: VideoMAE-style tubelets (Conv3d) or per-frame patches (Conv2d).

Position information is added here, because the frozen encoder's own patch and position embeddings are
bypassed: a time table plus factorised row and column tables, summed. They start as fixed sin-cos values —
the row table fills the first half of the channels and the column table the second half, which is exactly
the 2D sin-cos layout of the zoo ViT's own position embeddings — and are learned unless
``learned_position`` is false.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

import torch
from einops import rearrange
from torch import nn

from mmadapt.errors import ConfigError
from mmadapt.registry import register
from mmadapt.tokenizers.base import TokenBatch, Tokenizer, sincos_table

__all__ = ["VideoTokenizer", "VideoTokenizerConfig"]


@dataclass
class VideoTokenizerConfig:
    """How clips are read and cut into tokens.

    - ``n_frames``, ``sampling``, ``fps``, ``backend``: passed to :func:`mmadapt.io.video.load_video`;
      ``n_frames`` is also the longest clip :meth:`VideoTokenizer.forward` accepts (size of the time table).
    - ``image_size``: frames are resized to ``image_size``² on load; also the largest frame side accepted.
    - ``mode``: ``"tubelet"`` embeds ``tubelet_size`` × ``patch_size`` × ``patch_size`` blocks with one
      Conv3d (one token per tubelet); ``"frame"`` embeds every frame's ``patch_size``² patches with one
      Conv2d (one token per frame and patch).
    - ``mean`` / ``std``: per-channel normalisation applied inside ``forward`` to frames in [0, 1].
    - ``learned_position``: train the sin-cos-initialised position tables (else they stay fixed).
    - ``frame_order``: ``"shuffle"`` puts the loaded frames in a random order (a new permutation per load):
      the ablation that shows whether a model uses time — on an order-dependent task it must fall to chance.
    """

    name: str = "video"
    n_frames: int = 8
    image_size: int = 64
    sampling: Literal["uniform", "random"] = "uniform"
    fps: float | None = None
    backend: Literal["auto", "decord", "pyav"] = "auto"
    mode: Literal["tubelet", "frame"] = "tubelet"
    tubelet_size: int = 2
    patch_size: int = 8
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    learned_position: bool = True
    frame_order: Literal["keep", "shuffle"] = "keep"

    def validate(self) -> None:
        for key in ("n_frames", "image_size", "tubelet_size", "patch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: expected >= 1, got {getattr(self, key)}")
        if self.patch_size > self.image_size:
            raise ConfigError(f"patch_size: must be <= image_size (got {self.patch_size} > {self.image_size})")
        if self.mode == "tubelet" and self.n_frames % self.tubelet_size:
            raise ConfigError(
                f"n_frames: must be a multiple of tubelet_size in tubelet mode (got {self.n_frames} frames, "
                f"tubelet_size {self.tubelet_size})"
            )
        if self.fps is not None and self.fps <= 0:
            raise ConfigError(f"fps: expected > 0 or null, got {self.fps}")
        for key in ("mean", "std"):
            if len(getattr(self, key)) != 3:
                raise ConfigError(f"{key}: expected 3 values (R, G, B), got {getattr(self, key)}")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std: expected values > 0, got {self.std}")


@register("tokenizers", "video")
class VideoTokenizer(Tokenizer):
    """``frames`` [B, T, 3, H, W] in [0, 1] → ``tokens`` [B, N, D] with ``coords`` (time, row, col) [B, N, 3].

    tubelet mode: N = (T / tubelet_size) · (H / patch_size) · (W / patch_size), time = tubelet index;
    frame mode: N = T · (H / patch_size) · (W / patch_size), time = frame index. Tokens are ordered time,
    then row, then column; every token is real (mask all True).
    """

    config_class = VideoTokenizerConfig

    def __init__(self, dim: int, config: VideoTokenizerConfig | None = None):
        super().__init__()
        cfg = self._set_config(dim, config)
        p = cfg.patch_size
        if cfg.mode == "tubelet":
            t = cfg.tubelet_size
            self.proj: nn.Module = nn.Conv3d(3, dim, kernel_size=(t, p, p), stride=(t, p, p))
            n_time = cfg.n_frames // t
        else:
            self.proj = nn.Conv2d(3, dim, kernel_size=p, stride=p)
            n_time = cfg.n_frames
        grid = cfg.image_size // p
        half = dim // 2
        tables = {
            "time_position": sincos_table(n_time, dim, 0, dim),
            "row_position": sincos_table(grid, dim, 0, half),
            "col_position": sincos_table(grid, dim, half, dim),
        }
        self._add_position_tables(tables, cfg.learned_position)
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------------------------------ data side
    def load(self, source: str | os.PathLike[str] | torch.Tensor) -> torch.Tensor:
        """A video file → ``frames`` [n_frames, 3, image_size, image_size] in [0, 1]; a tensor passes through."""
        if isinstance(source, torch.Tensor):
            return source
        from mmadapt.io.video import load_video

        cfg = self.config
        frames = load_video(source, n_frames=cfg.n_frames, sampling=cfg.sampling, fps=cfg.fps,
                            size=cfg.image_size, backend=cfg.backend)
        if cfg.frame_order == "shuffle":
            frames = frames[torch.randperm(frames.shape[0])]
        return frames

    def collate(self, samples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Clips [T, 3, H, W] of one common shape → ``{"frames": [B, T, 3, H, W]}``."""
        if not samples:
            raise ValueError("video tokenizer: collate got no samples")
        shapes = {tuple(s.shape) for s in samples}
        if len(shapes) > 1:
            raise ValueError(f"video tokenizer: clips in one batch must share [T, 3, H, W], got {sorted(shapes)}")
        return {"frames": torch.stack(samples)}

    # ------------------------------------------------------------------------------------------ model side
    def forward(self, frames: torch.Tensor) -> TokenBatch:
        """``frames`` [B, T, 3, H, W] → TokenBatch(tokens [B, N, D], mask [B, N], coords [B, N, 3] long)."""
        self._check(frames)
        B = frames.shape[0]
        x = (frames - self.mean) / self.std
        if self.config.mode == "tubelet":
            grid = self.proj(rearrange(x, "b t c h w -> b c t h w"))  # [B, D, T/t, H/p, W/p]
        else:
            grid = rearrange(self.proj(rearrange(x, "b t c h w -> (b t) c h w")), "(b t) d h w -> b d t h w", b=B)
        n_t, rows, cols = grid.shape[-3:]
        tokens = rearrange(grid, "b d t h w -> b (t h w) d")
        position = (self.time_position[:n_t, None, None] + self.row_position[None, :rows, None]
                    + self.col_position[None, None, :cols])  # [T', H', W', D]
        tokens = tokens + rearrange(position, "t h w d -> (t h w) d")
        device = frames.device
        axes = torch.meshgrid(torch.arange(n_t, device=device), torch.arange(rows, device=device),
                              torch.arange(cols, device=device), indexing="ij")
        coords = rearrange(torch.stack(axes, dim=-1), "t h w k -> (t h w) k").expand(B, -1, -1)
        mask = torch.ones(B, n_t * rows * cols, dtype=torch.bool, device=device)
        return TokenBatch(tokens, mask, coords)

    def _check(self, frames: torch.Tensor) -> None:
        cfg = self.config
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"video tokenizer: frames must be [B, T, 3, H, W], got {list(frames.shape)}")
        if not frames.is_floating_point():
            raise ValueError(f"video tokenizer: frames must be float in [0, 1], got {frames.dtype} (load_video "
                             "returns float frames)")
        T, H, W = frames.shape[1], frames.shape[3], frames.shape[4]
        if T < (cfg.tubelet_size if cfg.mode == "tubelet" else 1):
            raise ValueError(f"video tokenizer: frames {list(frames.shape)} has T={T} frames, too few for one token")
        if cfg.mode == "tubelet" and T % cfg.tubelet_size:
            raise ValueError(f"video tokenizer: frames {list(frames.shape)} has T={T} frames, not a multiple of "
                             f"tubelet_size={cfg.tubelet_size}")
        if T > cfg.n_frames:
            raise ValueError(f"video tokenizer: frames {list(frames.shape)} has T={T} frames, more than "
                             f"n_frames={cfg.n_frames}")
        p = cfg.patch_size
        if H % p or W % p or not p <= H <= cfg.image_size or not p <= W <= cfg.image_size:
            raise ValueError(f"video tokenizer: frame size {H}×{W} must be a multiple of patch_size={p} from {p} "
                             f"to image_size={cfg.image_size} (frames {list(frames.shape)})")
