"""The any-to-3D guided adapter of one block (and its plain-bottleneck ablation)."""

from __future__ import annotations

import torch
from torch import nn


def projected_cells(coords: torch.Tensor, cells_per_axis: int) -> tuple[torch.Tensor, int]:
    """Neighbourhoods in each view's projected space: ``coords`` [B, V, N, 2 or 1] in [-1, 1] → cell index
    [B, V, N] (long) and the number of cells per view. 2D: a ``cells_per_axis²`` grid of the image plane;
    1D: ``cells_per_axis²`` segments of the line (the same count)."""
    n_cells = cells_per_axis * cells_per_axis
    if coords.shape[-1] == 2:
        col, row = (((coords + 1) / 2 * cells_per_axis).floor().clamp(0, cells_per_axis - 1).long()).unbind(-1)
        return row * cells_per_axis + col, n_cells
    return ((coords[..., 0] + 1) / 2 * n_cells).floor().clamp(0, n_cells - 1).long(), n_cells


def cell_mean(features: torch.Tensor, cells: torch.Tensor, mask: torch.Tensor, n_cells: int) -> torch.Tensor:
    """Each token's neighbourhood mean: ``features`` [B, N, r], ``cells`` [B, V, N], ``mask`` [B, N] (True =
    real) → [B, V, N, r], the mean over the real tokens in the token's cell of each view (padding excluded)."""
    B, V, N = cells.shape
    r = features.shape[-1]
    real = mask.to(features.dtype)
    index = cells[..., None].expand(B, V, N, r)
    sums = features.new_zeros(B, V, n_cells, r).scatter_add_(2, index, (features * real[..., None])[:, None].expand(B, V, N, r))
    counts = features.new_zeros(B, V, n_cells).scatter_add_(2, cells, real[:, None].expand(B, V, N))
    means = sums / counts.clamp(min=1)[..., None]
    return means.gather(2, index)


class GuidedAdapter(nn.Module):
    """Tokens ``x`` [B, N, D] → the update ``Δ`` [B, N, D] added to the block's output.

    ``z = GELU(down(LayerNorm(x)))`` [B, N, r]; ``guided``: per view ``v``, ``l_v = GELU(local([z, mean of z
    over x's cell in view v]))`` and ``z ← z + Σ_v softmax(view_logits)_v · l_v``; then ``Δ = scale · up(z)``.
    ``up`` starts at zero (Δ = 0: the frozen model's own behaviour) and the view weights uniform.
    """

    def __init__(self, dim: int, bottleneck: int, n_views: int, guided: bool = True, scale: float = 1.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.GELU()
        self.guided = guided
        if guided:
            self.local = nn.Linear(2 * bottleneck, bottleneck)
            self.view_logits = nn.Parameter(torch.zeros(n_views))
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.scale = scale

    def forward(self, x: torch.Tensor, cells: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                n_cells: int = 0) -> torch.Tensor:
        z = self.act(self.down(self.norm(x)))
        if self.guided:
            if cells is None or mask is None:
                raise ValueError("GuidedAdapter: the guided adapter needs each token's cells [B, V, N] and mask")
            pooled = cell_mean(z, cells, mask, n_cells)  # [B, V, N, r]
            per_view = self.act(self.local(torch.cat([z[:, None].expand_as(pooled), pooled], dim=-1)))
            z = z + torch.einsum("v,bvnr->bnr", self.view_logits.softmax(0).to(z.dtype), per_view)
        return self.scale * self.up(z)
