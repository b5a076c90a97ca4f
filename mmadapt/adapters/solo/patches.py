"""SOLO's image side: native resolution and aspect ratio, cut into flattened square patches.

One image → ``[rows·cols, 3·p·p]``:

1. ``image_fit: resize`` (the authors'): resized (bilinear, stretching; small images are upsampled) to
   :func:`fitted_size` — the long side ``min(ceil(long / p) · p, max_side)``, the short side scaled with it and
   ceiled to a multiple of ``p`` (``image_utils.get_resize_output_image_size``); ``pad``: an image whose long
   side is longer than ``max_side`` is downscaled (bilinear) to it, keeping the aspect ratio, smaller images
   keep their size;
2. pixels to [0, 1], normalised per channel (``(x - mean) / std``);
3. (``pad`` only; a resized image is already a whole number of patches) each side padded with zeros (of the
   normalised image: the mean colour) at the bottom / right up to a multiple of ``p``;
4. cut into a ``rows × cols`` grid of ``p × p`` patches, row-major, each flattened channel-first
   (``(c, y, x)``, as the authors do).

A batch of images of different sizes is a :class:`PatchBatch`: the patches of each image, padded with zero
patches to the batch's largest count, and each image's grid. :class:`NativeResolutionProcessor` is what a
``PerceptualLM`` with SOLO uses where other adapters have a vision encoder (``load`` / ``preprocess``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image

from mmadapt.adapters.solo.config import SOLOConfig
from mmadapt.io.image import load_image


def resized_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) after the downscale: the long side becomes ``max_side`` if it was longer."""
    long = max(width, height)
    if long <= max_side:
        return width, height
    scale = max_side / long
    return max(1, round(width * scale)), max(1, round(height * scale))


def fitted_size(width: int, height: int, patch_size: int, max_side: int) -> tuple[int, int]:
    """(width, height) after the authors' resize: the long side becomes ``min(ceil(long / p) · p, max_side)``,
    the short side ``floor(new_long · short / long)`` ceiled to a multiple of ``p`` — at least ``p`` (the
    authors' code would give a 0-pixel side for an image more than ~``2 · max_side / p`` times longer than
    wide). E.g. with p 32, max 1024: 100×50 → 128×64; 2000×500 → 1024×256; 33×33 → 64×64."""
    long, short = max(width, height), min(width, height)
    new_long = min(math.ceil(long / patch_size) * patch_size, max_side)
    new_short = max(patch_size, math.ceil((new_long * short // long) / patch_size) * patch_size)
    return (new_long, new_short) if width >= height else (new_short, new_long)


def patch_grid(width: int, height: int, patch_size: int) -> tuple[int, int]:
    """(rows, cols) of patches covering a ``width × height`` image padded to multiples of ``patch_size``."""
    return math.ceil(height / patch_size), math.ceil(width / patch_size)


def image_patches(pixels: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``pixels`` [3, H, W] → zero-padded bottom / right → flattened patches [rows·cols, 3·p·p], row-major."""
    _, height, width = pixels.shape
    rows, cols = patch_grid(width, height, patch_size)
    padded = F.pad(pixels, (0, cols * patch_size - width, 0, rows * patch_size - height))
    return rearrange(padded, "c (h p1) (w p2) -> (h w) (c p1 p2)", p1=patch_size, p2=patch_size)


@dataclass
class PatchBatch:
    """Images of any sizes as patches: ``patches`` [B, N, 3·p·p] (image b's first ``rows·cols`` rows are its
    patches, the rest zero padding; N = the largest count in the batch) and ``grid`` [B, 2] (rows, cols)."""

    patches: torch.Tensor
    grid: torch.Tensor

    def __len__(self) -> int:
        return self.patches.shape[0]

    def __getitem__(self, index: int | slice | list[int]) -> "PatchBatch":
        """A sub-batch (an int keeps the batch dimension), trimmed to its own largest patch count."""
        if isinstance(index, int):
            index = [index]
        grid = self.grid[index]
        n = int((grid[:, 0] * grid[:, 1]).max()) if len(grid) else 0
        return PatchBatch(self.patches[index][:, :n], grid)

    def to(self, *args, **kwargs) -> "PatchBatch":
        """Move (and, for a dtype, cast) the patches; the grid stays integer."""
        patches = self.patches.to(*args, **kwargs)
        return PatchBatch(patches, self.grid.to(patches.device))


class NativeResolutionProcessor:
    """Images → :class:`PatchBatch` at native resolution (see the module docstring).

    Exposes what the tasks call on ``model.vision``: :meth:`load` (file → RGB image), :meth:`preprocess`
    (images → batch) and :meth:`eval` (nothing to switch: it has no weights).
    """

    def __init__(self, config: SOLOConfig):
        self.patch_size = config.patch_size
        self.max_side = config.max_side
        self.image_fit = config.image_fit
        self.mean = torch.tensor(config.image_mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(config.image_std, dtype=torch.float32)[:, None, None]

    def load(self, source) -> Image.Image:
        """A file path (or an image) → RGB ``PIL.Image``; a :class:`~mmadapt.errors.DataError` names a bad file."""
        return source if isinstance(source, Image.Image) else load_image(source)

    def eval(self) -> "NativeResolutionProcessor":
        return self

    def size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of an image of that size once fitted (``image_fit``), before any padding."""
        if self.image_fit == "resize":
            return fitted_size(width, height, self.patch_size, self.max_side)
        return resized_size(width, height, self.max_side)

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """One image → normalised pixels [3, H, W] after the resize / downscale (not yet padded)."""
        image = image.convert("RGB")
        size = self.size(*image.size)
        if size != image.size:
            image = image.resize(size, Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - self.mean) / self.std

    def preprocess(self, images: list[Image.Image]) -> PatchBatch:
        """Images of any sizes → :class:`PatchBatch` (``patches`` float32)."""
        pixels = [self.pixels(image) for image in images]
        grid = torch.tensor([patch_grid(x.shape[2], x.shape[1], self.patch_size) for x in pixels],
                            dtype=torch.long).view(-1, 2)
        per_image = [image_patches(x, self.patch_size) for x in pixels]
        patches = torch.zeros(len(images), max((p.shape[0] for p in per_image), default=0), 3 * self.patch_size ** 2)
        for b, p in enumerate(per_image):
            patches[b, : p.shape[0]] = p
        return PatchBatch(patches, grid)
