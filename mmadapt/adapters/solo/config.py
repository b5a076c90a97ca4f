"""Configuration of SOLO (Chen et al., 2024). Defaults follow the authors' code (Yangyi-Chen/SOLO:
``image_utils.py``, ``src/data/instruction_tuning.py``): 32 × 32 patches, images resized to multiples of 32 with
the long side ≤ 1024, the loss on the answer + EOS only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mmadapt.adapters.lora import LoRAConfig
from mmadapt.errors import ConfigError

#: the authors' normalisation (ImageNet statistics), applied before padding
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass
class SOLOConfig:
    """SOLO: raw image patches, linearly embedded, in the input sequence of one causal LM.

    - ``patch_size``: side of the square patches (paper: 32); each is flattened (``3·p·p`` values) and
      embedded by one bias-free linear map.
    - ``max_side``: the longest image side (paper: 1024); the LM must have positions for the longest span this
      allows (checked when the model is built).
    - ``image_fit``: ``resize`` (default, the authors') — every image is resized (stretched; small ones
      upsampled) so that its long side is ``min(ceil(long / p) · p, max_side)`` and its short side
      ``ceil(floor(new_long · short / long) / p) · p`` (at least ``p``); ``pad`` — an image whose long side is
      longer than ``max_side`` is downscaled to it keeping its aspect ratio, smaller ones keep their size, and
      each side is zero-padded to a multiple of ``p`` (mmadapt's earlier image side: every pixel kept as is).
      ``resize`` needs ``max_side`` to be a multiple of ``patch_size``.
    - ``loss``: ``authors`` (default) — only the answer and EOS are scored (image and prompt tokens are
      ignored, label -100), the mean over the batch's scored tokens (Hugging Face's causal-LM loss);
      ``weighted`` — the prompt at 0.1 and the answer at 1, mean per sample (mmadapt's earlier loss). A task's
      ``prefix_loss_weight``, when set, replaces the prompt's weight in both.
    - ``image_mean`` / ``image_std``: per-channel normalisation of pixels in [0, 1] (the authors': ImageNet's).
    - ``patch_init_scale``: the patch embedding starts with output norm ≈ this × the LM's mean token-embedding
      norm for a unit-variance patch, so that the frozen LM first sees image tokens of a familiar size.
    - ``lora``: peft LoRA on the frozen LM (``{r: 8, alpha: 16, target_modules: null}``; null targets: the
      attention's query / value projections, e.g. OPT's q_proj / v_proj); ``null`` (default): the LM is
      untouched and only the patch and special-token embeddings train. Its ``name`` key is not used.
    """

    name: str = "solo"
    patch_size: int = 32
    max_side: int = 1024
    image_fit: Literal["resize", "pad"] = "resize"
    loss: Literal["authors", "weighted"] = "authors"
    image_mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    image_std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    patch_init_scale: float = 1.0
    lora: LoRAConfig | None = None

    def validate(self) -> None:
        if self.patch_size < 1:
            raise ConfigError(f"patch_size: expected a positive integer, got {self.patch_size}")
        if self.max_side < self.patch_size:
            raise ConfigError(f"max_side: expected >= patch_size ({self.patch_size}), got {self.max_side}")
        if self.image_fit == "resize" and self.max_side % self.patch_size:
            raise ConfigError(f"max_side: image_fit resize needs a multiple of patch_size ({self.patch_size}), "
                              f"got {self.max_side}")
        for key in ("image_mean", "image_std"):
            if len(getattr(self, key)) != 3:
                raise ConfigError(f"{key}: expected 3 values (R, G, B), got {getattr(self, key)}")
        if min(self.image_std) <= 0:
            raise ConfigError(f"image_std: expected positive values, got {self.image_std}")
        if self.patch_init_scale <= 0:
            raise ConfigError(f"patch_init_scale: expected > 0, got {self.patch_init_scale}")
        if self.lora is not None:
            try:
                self.lora.validate()
            except ConfigError as exc:
                raise ConfigError(f"lora.{exc}") from None
