"""Light per-task decoders over a hierarchical encoder's stage features, and each dense task kind's loss.

:class:`MultiScaleDecoder`: each stage map ``[B, d_s, H/2^s·h, ...]`` → 1×1 conv to ``dim`` → bilinear to
the finest stage's size → sum → 3×3 conv + GELU → 1×1 conv to the task's channels → bilinear to the input
size. Kinds (``DENSE_KINDS``): ``segmentation`` (``n_classes`` logits, cross-entropy, 255 ignored),
``saliency`` (one logit, binary cross-entropy, 255 ignored), ``normals`` (3 channels, L1 between the
unit-normalised prediction and the target over valid pixels — target vectors of length 0 are invalid).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = 255
DENSE_KINDS = ("segmentation", "saliency", "normals")


class MultiScaleDecoder(nn.Module):
    def __init__(self, widths: list[int], dim: int, out_channels: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(w, dim, 1) for w in widths)
        self.fuse = nn.Conv2d(dim, dim, 3, padding=1)
        self.out = nn.Conv2d(dim, out_channels, 1)

    def forward(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        finest = features[0].shape[-2:]
        fused = sum(F.interpolate(lat(f), size=finest, mode="bilinear", align_corners=False) if f.shape[-2:] != finest
                    else lat(f) for lat, f in zip(self.lateral, features))
        return F.interpolate(self.out(F.gelu(self.fuse(fused))), size=size, mode="bilinear", align_corners=False)


def out_channels(kind: str, n_classes: int | None) -> int:
    return {"segmentation": n_classes or 0, "saliency": 1, "normals": 3}[kind]


def dense_loss(kind: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``output`` [B, C, H, W]; ``target`` [B, H, W] (class maps) or [B, H, W, 3] (normals)."""
    if kind == "segmentation":
        if (target != IGNORE_INDEX).any():
            return F.cross_entropy(output, target, ignore_index=IGNORE_INDEX)
        return output.sum() * 0.0
    if kind == "saliency":
        valid = target != IGNORE_INDEX
        if not valid.any():
            return output.sum() * 0.0
        return F.binary_cross_entropy_with_logits(output[:, 0][valid], target[valid].float())
    if kind == "normals":
        target = target.permute(0, 3, 1, 2)
        valid = target.norm(dim=1) > 0.5
        if not valid.any():
            return output.sum() * 0.0
        pred = F.normalize(output, dim=1)
        return (pred - target).abs().sum(dim=1)[valid].mean()
    raise ValueError(f"unknown dense task kind {kind!r}; known: {DENSE_KINDS}")


def dense_prediction(kind: str, output: torch.Tensor) -> torch.Tensor:
    """What the metrics read: class map [B, H, W], saliency probability [B, H, W], unit normals [B, H, W, 3]."""
    if kind == "segmentation":
        return output.argmax(dim=1)
    if kind == "saliency":
        return output[:, 0].sigmoid()
    return F.normalize(output, dim=1).permute(0, 2, 3, 1)
