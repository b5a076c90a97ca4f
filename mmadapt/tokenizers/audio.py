"""Audio → AST-style spectrogram patch tokens (Gong et al., 2021).

A (padded) filterbank ``[frames, n_mels]`` is read as an image with the mel axis as rows and time as
columns, normalised as AST does (``(x - norm_mean) / (2 · norm_std)``), and cut into ``patch_size``²
patches every ``stride`` bins on both axes (AST: 16 × 16, stride 10, i.e. overlap 6) by one Conv2d.
Frames past a clip's length are set to 0 after normalisation (the dataset mean), and patches that lie
wholly in that padding are masked out. Position: a frequency table (first half of the channels) plus a time
table (second half), sin-cos initialised, learned unless ``learned_position`` is false.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch
from einops import rearrange
from torch import nn

from mmadapt.errors import ConfigError
from mmadapt.registry import register
from mmadapt.tokenizers.base import TokenBatch, Tokenizer, sincos_table

__all__ = ["AudioTokenizer", "AudioTokenizerConfig"]


@dataclass
class AudioTokenizerConfig:
    """Feature extraction (:mod:`mmadapt.io.audio`) and patching settings.

    - ``sample_rate``, ``kind``, ``n_mels``, ``frame_length_ms``, ``frame_shift_ms``: passed to
      ``load_audio`` / ``audio_features`` (AST: 16 kHz kaldi fbank, 128 mels, 25 ms windows every 10 ms).
    - ``max_frames``: clips are cut to this many frames on load (AST: 1024 ≈ 10.24 s); also the longest
      input ``forward`` accepts (size of the time table).
    - ``patch_size``, ``stride``: square patches over (mel, time) and their step on both axes.
    - ``norm_mean``, ``norm_std``: AST's AudioSet fbank statistics; features become (x - mean) / (2 · std).
    - ``learned_position``: train the sin-cos-initialised position tables (else they stay fixed).
    """

    name: str = "audio"
    sample_rate: int = 16000
    kind: Literal["fbank", "log_mel"] = "fbank"
    n_mels: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    max_frames: int = 1024
    patch_size: int = 16
    stride: int = 10
    norm_mean: float = -4.2677393
    norm_std: float = 4.5689974
    learned_position: bool = True

    def validate(self) -> None:
        for key in ("sample_rate", "n_mels", "max_frames", "patch_size", "stride"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: expected >= 1, got {getattr(self, key)}")
        for key in ("frame_length_ms", "frame_shift_ms", "norm_std"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key}: expected > 0, got {getattr(self, key)}")
        if self.stride > self.patch_size:
            raise ConfigError(f"stride: must be <= patch_size (got {self.stride} > {self.patch_size}); a larger "
                              "stride would skip spectrogram bins")
        for key in ("n_mels", "max_frames"):
            if getattr(self, key) < self.patch_size:
                raise ConfigError(f"{key}: must be >= patch_size (got {getattr(self, key)} < {self.patch_size})")

    def n_patches(self, length: int) -> int:
        """Patches along an axis of ``length`` bins: (length - patch_size) // stride + 1."""
        return (length - self.patch_size) // self.stride + 1


@register("tokenizers", "audio")
class AudioTokenizer(Tokenizer):
    """``features`` [B, F, n_mels] + ``lengths`` [B] → ``tokens`` [B, n_freq · n_time, D].

    n_freq = (n_mels - patch) // stride + 1, n_time = (F - patch) // stride + 1; tokens ordered frequency
    first, then time (as AST); ``coords`` (freq_idx, time_idx) [B, N, 2] long; ``mask`` False exactly for
    patches whose first frame is at or past the clip's length (wholly in padding).
    """

    config_class = AudioTokenizerConfig

    def __init__(self, dim: int, config: AudioTokenizerConfig | None = None):
        super().__init__()
        cfg = self._set_config(dim, config)
        self.proj = nn.Conv2d(1, dim, kernel_size=cfg.patch_size, stride=cfg.stride)
        half = dim // 2
        tables = {
            "freq_position": sincos_table(cfg.n_patches(cfg.n_mels), dim, 0, half),
            "time_position": sincos_table(cfg.n_patches(cfg.max_frames), dim, half, dim),
        }
        self._add_position_tables(tables, cfg.learned_position)

    # ------------------------------------------------------------------------------------------ data side
    def load(self, source: str | os.PathLike[str] | torch.Tensor) -> torch.Tensor:
        """An audio file or a waveform [S] (at ``sample_rate``) → ``features`` [frames ≤ max_frames, n_mels];
        a features tensor [frames, n_mels] passes through."""
        from mmadapt.io.audio import audio_features, load_audio

        cfg = self.config
        if isinstance(source, torch.Tensor):
            if source.ndim == 2:
                return source
            waveform = source
        else:
            # Enough samples for max_frames frames, no more: long files are not read past what is kept.
            seconds = ((cfg.max_frames - 1) * cfg.frame_shift_ms + cfg.frame_length_ms) / 1000.0
            waveform = load_audio(source, sample_rate=cfg.sample_rate, mono=True, max_seconds=seconds)
        features = audio_features(waveform, cfg.sample_rate, kind=cfg.kind, n_mels=cfg.n_mels,
                                  frame_length_ms=cfg.frame_length_ms, frame_shift_ms=cfg.frame_shift_ms)
        return features[: cfg.max_frames]

    def collate(self, samples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Features [F_i, n_mels] → ``{"features": [B, F, n_mels], "lengths": [B]}``, zero-padded at the end
        to F = max(max F_i, patch_size)."""
        if not samples:
            raise ValueError("audio tokenizer: collate got no samples")
        n_mels = self.config.n_mels
        for i, s in enumerate(samples):
            if s.ndim != 2 or s.shape[1] != n_mels:
                raise ValueError(f"audio tokenizer: sample {i} has shape {list(s.shape)}, expected "
                                 f"[frames, n_mels={n_mels}]")
        lengths = torch.tensor([s.shape[0] for s in samples], dtype=torch.long)
        frames = max(int(lengths.max()), self.config.patch_size)
        features = samples[0].new_zeros(len(samples), frames, n_mels)
        for i, s in enumerate(samples):
            features[i, : s.shape[0]] = s
        return {"features": features, "lengths": lengths}

    # ------------------------------------------------------------------------------------------ model side
    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> TokenBatch:
        """``features`` [B, F, n_mels], ``lengths`` [B] real frames per clip (None: all F are real) →
        TokenBatch(tokens [B, N, D], mask [B, N], coords [B, N, 2] long)."""
        cfg = self.config
        self._check(features, lengths)
        B, F, _ = features.shape
        device = features.device
        if lengths is None:
            lengths = torch.full((B,), F, dtype=torch.long, device=device)
        lengths = lengths.to(device)
        real = torch.arange(F, device=device)[None, :] < lengths[:, None]  # [B, F]
        x = torch.where(real[..., None], (features - cfg.norm_mean) / (2 * cfg.norm_std), 0.0)
        grid = self.proj(rearrange(x, "b t m -> b 1 m t"))  # [B, D, n_freq, n_time]
        n_freq, n_time = grid.shape[-2:]
        position = self.freq_position[:n_freq, None] + self.time_position[None, :n_time]  # [n_freq, n_time, D]
        tokens = rearrange(grid, "b d f t -> b (f t) d") + rearrange(position, "f t d -> (f t) d")
        starts = torch.arange(n_time, device=device) * cfg.stride  # first frame of each time patch
        mask = (starts[None, :] < lengths[:, None])[:, None, :].expand(B, n_freq, n_time)
        axes = torch.meshgrid(torch.arange(n_freq, device=device), torch.arange(n_time, device=device),
                              indexing="ij")
        coords = rearrange(torch.stack(axes, dim=-1), "f t k -> (f t) k").expand(B, -1, -1)
        return TokenBatch(tokens, rearrange(mask, "b f t -> b (f t)"), coords)

    def _check(self, features: torch.Tensor, lengths: torch.Tensor | None) -> None:
        cfg = self.config
        if features.ndim != 3 or features.shape[2] != cfg.n_mels:
            raise ValueError(f"audio tokenizer: features must be [B, frames, n_mels={cfg.n_mels}], got "
                             f"{list(features.shape)}")
        F = features.shape[1]
        if not cfg.patch_size <= F <= cfg.max_frames:
            raise ValueError(f"audio tokenizer: features {list(features.shape)} has {F} frames, expected "
                             f"patch_size={cfg.patch_size} <= frames <= max_frames={cfg.max_frames} "
                             "(collate pads short clips)")
        if lengths is not None and tuple(lengths.shape) != (features.shape[0],):
            raise ValueError(f"audio tokenizer: lengths must be [B={features.shape[0]}], got {list(lengths.shape)}")
