"""The adapter layers of Any2Point: the authors' (a) feed-forward bottleneck, local attention in cells and
(b)+(c) guided post-block adapter; and mmadapt's earlier post-block adapter (``variant: mmadapt_v0``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _xavier(module: nn.Module) -> None:
    """The authors' init of their adapter linears (``PointViT._init_weights``): Xavier-uniform, zero bias."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class FFNAdapter(nn.Module):
    """(a) The feed-forward output ``f`` [..., D] → ``f + scale · up(dropout(QuickGELU(down(f))))``: what the
    block adds to its residual stream becomes ``f + scale · adapter(f)`` (the authors' ``AdapterSuper_noout``
    on ``x_ffn``, times ``--scale_factor``)."""

    def __init__(self, dim: int, bottleneck: int, scale: float, dropout: float):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.act = QuickGELU()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, dim)
        self.scale = scale
        _xavier(self)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f + self.scale * self.up(self.dropout(self.act(self.down(f)))).to(f.dtype)


class CellAttention(nn.Module):
    """Local attention among the tokens of one cell (the authors' ``Attention1`` with ``norm3``): ``x``
    [B, N, D], ``cells`` [B, N] → ``x + proj(attention(LayerNorm(x)))``, each token attending only to the
    tokens of its own cell (an additive −100000 elsewhere, as the authors). Width ``dim`` split into
    ``heads``; scores scaled by ``dim^-1/2`` (the whole width, as the authors)."""

    def __init__(self, width: int, dim: int, heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * dim)
        self.proj = nn.Linear(dim, width)
        self.dim, self.heads = dim, heads
        _xavier(self)

    def forward(self, x: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, N, 3, self.heads, self.dim // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) * self.dim ** -0.5  # [B, heads, N, N]
        other = (cells[:, :, None] != cells[:, None, :])[:, None]
        scores = scores + other.to(scores.dtype) * -100000.0
        out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, self.dim)
        return x + self.proj(out)


def voxel_clusters(xyz: torch.Tensor, size: float) -> tuple[torch.Tensor, int]:
    """Voxels of side ``size`` from each cloud's minimum corner: ``xyz`` [B, N, 3] → each token's voxel
    [B·N] (long, 0..M−1, clouds never share a voxel) and the number of occupied voxels M."""
    B, N, _ = xyz.shape
    cell = ((xyz - xyz.amin(dim=1, keepdim=True)) / size).floor().long()  # [B, N, 3]
    batch = torch.arange(B, device=xyz.device)[:, None, None].expand(B, N, 1)
    keys = torch.cat([batch, cell], dim=-1).reshape(B * N, 4)
    unique, inverse = torch.unique(keys, dim=0, return_inverse=True)
    return inverse, unique.shape[0]


def segment_pool(x: torch.Tensor, index: torch.Tensor, n: int, with_max: bool) -> torch.Tensor:
    """Rows ``x`` [M, D] pooled into ``n`` segments by ``index`` [M] → [n, D]: the mean (+ the max if
    ``with_max``); an empty segment gives 0 (as ``torch_scatter``)."""
    sums = x.new_zeros(n, x.shape[1]).index_add_(0, index, x)
    counts = torch.bincount(index, minlength=n).clamp(min=1).to(x.dtype)
    pooled = sums / counts[:, None]
    if with_max:
        pooled = pooled + x.new_zeros(n, x.shape[1]).scatter_reduce(0, index[:, None].expand_as(x), x, "amax",
                                                                      include_self=False)
    return pooled


class GuidedAdapter3D(nn.Module):
    """(b) + (c) after one block, on the point tokens ``x`` [B, N, D] → the update [B, N, D] to add:

    ``g = GELU(BN(max + mean of x over the token's voxel))``; per view ``v``: ``y = attention_v(x)`` within
    the view's cells, ``f_v = GELU(BN_v(pool of y over the cell))`` (``cell_pool``: mean, or max + mean;
    BatchNorm over all B × cells rows, empty cells included, as the authors); weights ``w_v = (cos(f_v, g) +
    1) / 2`` normalised over the views; update ``scale · Σ_v w_v f_v``. The local attentions are shared by
    every block (passed in); the BatchNorms are this block's own."""

    def __init__(self, dim: int, n_views: int, scale: float, cell_pool: str):
        super().__init__()
        self.out_3d = nn.Sequential(nn.BatchNorm1d(dim), nn.GELU())
        self.out_views = nn.ModuleList(nn.Sequential(nn.BatchNorm1d(dim), nn.GELU()) for _ in range(n_views))
        self.scale = scale
        self.with_max = cell_pool == "max_mean"

    def forward(self, x: torch.Tensor, voxels: torch.Tensor, n_voxels: int, cells: torch.Tensor, n_cells: int,
                attentions: nn.ModuleList) -> torch.Tensor:
        B, N, D = x.shape
        flat = x.reshape(B * N, D)
        g = self.out_3d(segment_pool(flat, voxels, n_voxels, with_max=True))[voxels].reshape(B, N, D)
        offsets = torch.arange(B, device=x.device)[:, None] * n_cells
        views = []
        for v, (attention, out) in enumerate(zip(attentions, self.out_views)):
            index = (cells[:, v] + offsets).reshape(B * N)
            y = attention(x, cells[:, v]).reshape(B * N, D)
            views.append(out(segment_pool(y, index, B * n_cells, self.with_max))[index].reshape(B, N, D))
        stacked = torch.stack(views)  # [V, B, N, D]
        weights = (F.cosine_similarity(stacked, g[None], dim=-1) + 1) / 2  # [V, B, N]
        weights = weights / weights.sum(dim=0, keepdim=True)
        return self.scale * (weights[..., None] * stacked).sum(dim=0)


# ------------------------------------------------------------------------------ variant mmadapt_v0


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
    """``variant: mmadapt_v0``. Tokens ``x`` [B, N, D] → the update ``Δ`` [B, N, D] added to the block's output.

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
