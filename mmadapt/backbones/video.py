"""Frozen video encoders: Hugging Face TimeSformer.

Same interface as the image encoders of :mod:`mmadapt.backbones.vision` (what eP-ALM's connector reads),
with clips in place of images:

- ``load(path or tensor) -> Tensor [T, 3, H, W]`` — ``T = num_frames`` frames, float in [0, 1];
- ``preprocess(clips: list[Tensor [T, 3, H, W]]) -> Tensor [B, T, 3, S, S]`` — resized (when needed) and
  normalised with the mean / std of the image processor saved with the model;
- ``layer_cls(pixel_values) -> Tensor [B, L, D]`` — the [CLS] token after each of the ``L`` blocks, through
  the model's final LayerNorm;
- ``layer_tokens(pixel_values) -> list[Tensor [B, 1 + N·T, D]]`` — every token after each block (no final
  norm); TimeSformer orders the ``N·T`` patch tokens patch-major (all frames of patch 0, then patch 1, ...).

TimeSformer's divided space-time blocks do not read a flat token sequence, so ``run_blocks`` (the encoder as
a shared transformer for other modalities) is not available.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmadapt.backbones.base import DTYPES, freeze
from mmadapt.backbones.vision import VisionEncoder
from mmadapt.errors import DataError
from mmadapt.names import resolve_name
from mmadapt.registry import register

__all__ = ["HFTimeSformer"]


def _pair(value) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, (list, tuple)) else (int(value), int(value))


@register("backbones", "hf_timesformer")
class HFTimeSformer(VisionEncoder):
    """``transformers.TimesformerModel`` with its image processor (a ``VideoMAEImageProcessor``).

    Clips must have exactly ``num_frames`` frames: the blocks reshape tokens by the configured frame count.
    """

    def __init__(self, model: nn.Module, processor, identity: str):
        super().__init__()
        self.model = freeze(model)
        self.processor = processor
        self.final_norm = model.layernorm
        config = model.config
        self.hidden_size = config.hidden_size
        self.num_layers = config.num_hidden_layers
        self.num_frames = config.num_frames
        self.image_size = _pair(config.image_size)
        self.identity = identity
        mean = torch.tensor(processor.image_mean, dtype=torch.float32).view(1, 1, 3, 1, 1)
        std = torch.tensor(processor.image_std, dtype=torch.float32).view(1, 1, 3, 1, 1)
        if not processor.do_normalize:
            mean, std = torch.zeros_like(mean), torch.ones_like(std)
        # buffers follow .to(device); not persistent: they come from the processor, never from a checkpoint
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    @classmethod
    def from_pretrained(cls, name: str, *, dtype: str = "float32", attn_implementation: str = "sdpa",
                        revision: str | None = None, trust_remote_code: bool = False,
                        **_: object) -> "HFTimeSformer":
        from transformers import AutoImageProcessor, TimesformerModel

        path = resolve_name(name)
        # TimeSformer has only its own ("eager") attention: transformers refuses "sdpa" for it, and "sdpa" is
        # the library-wide default, so it means "the best this model has" here.
        attn = "eager" if attn_implementation == "sdpa" else attn_implementation
        hub = {"revision": revision, "trust_remote_code": trust_remote_code}
        model = TimesformerModel.from_pretrained(path, dtype=DTYPES[dtype], attn_implementation=attn, **hub)
        processor = AutoImageProcessor.from_pretrained(path, **hub)
        return cls(model, processor, identity=f"hf_timesformer:{name}@{revision or 'main'}")

    # -- inputs -------------------------------------------------------------------------------------------------

    def load(self, source: str | os.PathLike[str] | torch.Tensor | np.ndarray) -> torch.Tensor:
        """A video file → float ``[T, 3, S, S]`` in [0, 1] (``T = num_frames`` uniformly sampled frames, resized
        to the model's ``S``, see :func:`mmadapt.io.video.load_video`); a ``[T, 3, H, W]`` tensor passes through
        (an array becomes one). Raises :class:`~mmadapt.errors.DataError` naming the file when it cannot be
        read."""
        if isinstance(source, np.ndarray):
            source = torch.from_numpy(source)
        if isinstance(source, torch.Tensor):
            if source.ndim != 4 or source.shape[1] != 3:
                raise DataError(f"hf_timesformer.load: expected a clip [T, 3, H, W], got shape {list(source.shape)}")
            return source
        from mmadapt.io.video import load_video

        return load_video(source, n_frames=self.num_frames, size=self.image_size)

    def preprocess(self, clips: list[torch.Tensor]) -> torch.Tensor:
        """``clips``: ``B`` tensors ``[T, 3, H, W]``, float in [0, 1] (uint8 in 0..255 is also taken) →
        ``[B, T, 3, S, S]`` normalised with the processor's mean / std, in the encoder's dtype.

        Frames of another size are resized as the processor does (shortest edge to its ``size``, bilinear,
        antialiased, then a centre crop to ``crop_size``)."""
        if isinstance(clips, torch.Tensor) and clips.dim() == 4:
            clips = [clips]
        if len(clips) == 0:
            raise DataError("hf_timesformer.preprocess: no clips")
        out = []
        for i, clip in enumerate(clips):
            if not isinstance(clip, torch.Tensor) or clip.dim() != 4 or clip.shape[1] != 3:
                got = list(clip.shape) if isinstance(clip, torch.Tensor) else type(clip).__name__
                raise DataError(f"hf_timesformer.preprocess: clip {i}: expected a tensor [T, 3, H, W], got {got}")
            if clip.shape[0] != self.num_frames:
                raise DataError(f"hf_timesformer.preprocess: clip {i}: expected {self.num_frames} frames "
                                f"(the model's num_frames), got {clip.shape[0]}")
            clip = clip.float().div(255.0) if clip.dtype == torch.uint8 else clip.float()
            out.append(self._resize(clip))
        pixels = torch.stack(out).to(self.pixel_mean.device)
        return ((pixels - self.pixel_mean.float()) / self.pixel_std.float()).to(self.dtype)

    def _resize(self, clip: torch.Tensor) -> torch.Tensor:
        """``[T, 3, H, W]`` → ``[T, 3, S, S]``, the processor's resize + centre crop (a no-op at the right size)."""
        proc = self.processor
        height, width = clip.shape[-2:]
        if (height, width) == self.image_size:
            return clip
        if proc.do_resize:
            size = proc.size
            if size.shortest_edge:
                scale = size.shortest_edge / min(height, width)
                target = (max(1, round(height * scale)), max(1, round(width * scale)))
            else:
                target = (size.height, size.width)
            if target != (height, width):
                clip = F.interpolate(clip, size=target, mode="bilinear", antialias=True, align_corners=False)
        if proc.do_center_crop:
            crop_h, crop_w = proc.crop_size.height, proc.crop_size.width
            height, width = clip.shape[-2:]
            top, left = max(0, (height - crop_h) // 2), max(0, (width - crop_w) // 2)
            clip = clip[..., top : top + crop_h, left : left + crop_w]
        if tuple(clip.shape[-2:]) != self.image_size:
            clip = F.interpolate(clip, size=self.image_size, mode="bilinear", antialias=True, align_corners=False)
        return clip

    # -- features -----------------------------------------------------------------------------------------------

    def layer_tokens(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """``[B, T, 3, S, S]`` → one ``[B, 1 + N·T, D]`` per block ([CLS] first), before the final norm."""
        out = self.model(pixel_values=pixel_values, output_hidden_states=True)
        return list(out.hidden_states[1:])  # drop the embedding output: one entry per block

    def layer_cls(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, S, S]`` → ``[B, L, D]``: each block's [CLS] through the final LayerNorm."""
        cls = torch.stack([h[:, 0] for h in self.layer_tokens(pixel_values)], dim=1)
        return self.final_norm(cls)
