"""Any2Point's 3D-to-any virtual projection: point-token centres → coordinates in a source model's own
position space → its pretrained position embeddings, averaged over views. No rendering, no new parameters.

Coordinates (xyz normalised into the unit ball, as the point-cloud loader does):

- :func:`view_rotations` — per view, the rotation ``R = R_elevation · R_azimuth`` that turns the cloud so
  that the camera looks down the view's −z axis from ``+camera_distance · z``;
- :func:`project` — ``p' = R p``, then perspective ``s = (d − 1) / (d − z')``: 2D ``(u, v) = s · (x', y')``,
  1D ``t = s · x'``; a point of the unit ball lands in [-1, 1] (the nearest point, ``z' = 1``, at ``s = 1``);
- :func:`lookup_2d` — bilinear interpolation of a grid table ``[H, W, D]`` at ``(u, v)``: ``u`` runs over
  columns, ``v`` over rows, −1 / +1 are the centres of the first / last patch;
- :func:`lookup_1d` — linear interpolation of a table ``[L, D]`` at ``(t + 1) / 2 · (n − 1)`` for the first
  ``n`` positions;
- :func:`virtual_position_embedding` — the lookups averaged over views, ``[B, N, D]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def view_rotations(views: list[list[float]]) -> torch.Tensor:
    """``[V, 3, 3]`` rotations for ``[azimuth, elevation]`` pairs in degrees (azimuth about the y axis,
    then elevation about the x axis)."""
    out = []
    for azimuth, elevation in views:
        a, e = math.radians(azimuth), math.radians(elevation)
        r_azimuth = torch.tensor([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])
        r_elevation = torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(e), -math.sin(e)], [0.0, math.sin(e), math.cos(e)]])
        out.append(r_elevation @ r_azimuth)
    return torch.stack(out).to(torch.float64)


def project(xyz: torch.Tensor, rotations: torch.Tensor, dims: int, camera_distance: float) -> torch.Tensor:
    """``xyz`` [B, N, 3] → coordinates [B, V, N, dims] in [-1, 1] (``dims`` 2: image plane, 1: line)."""
    if xyz.ndim != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"project: xyz must be [B, N, 3], got {list(xyz.shape)}")
    if dims not in (1, 2):
        raise ValueError(f"project: dims must be 1 or 2, got {dims}")
    turned = torch.einsum("vij,bnj->bvni", rotations.to(xyz.dtype), xyz)  # [B, V, N, 3]
    d = camera_distance
    scale = (d - 1) / (d - turned[..., 2:3]).clamp(min=1e-6)
    return (turned[..., :dims] * scale).clamp(-1.0, 1.0)


def lookup_2d(table: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear interpolation of ``table`` [H, W, D] at ``uv`` [..., 2] (u: columns, v: rows, in [-1, 1])
    → [..., D]."""
    if table.ndim != 3:
        raise ValueError(f"lookup_2d: table must be [H, W, D], got {list(table.shape)}")
    grid = uv.reshape(1, -1, 1, 2).to(table.dtype)
    image = table.permute(2, 0, 1)[None]  # [1, D, H, W]
    out = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)  # [1, D, M, 1]
    return out[0, :, :, 0].T.reshape(*uv.shape[:-1], table.shape[-1])


def lookup_1d(table: torch.Tensor, t: torch.Tensor, n_positions: int) -> torch.Tensor:
    """Linear interpolation of the first ``n_positions`` rows of ``table`` [L, D] at ``t`` [..., 1] in
    [-1, 1] (−1: row 0, +1: row ``n_positions − 1``) → [..., D]."""
    if table.ndim != 2:
        raise ValueError(f"lookup_1d: table must be [L, D], got {list(table.shape)}")
    if not 2 <= n_positions <= table.shape[0]:
        raise ValueError(f"lookup_1d: n_positions={n_positions} must be in [2, {table.shape[0]}] (the table's rows)")
    position = (t[..., 0].to(table.dtype) + 1) / 2 * (n_positions - 1)
    low = position.floor().clamp(0, n_positions - 2).long()
    weight = (position - low)[..., None]
    return table[low] * (1 - weight) + table[low + 1] * weight


def virtual_position_embedding(table: torch.Tensor, coords: torch.Tensor, n_positions: int | None = None
                               ) -> torch.Tensor:
    """The source's position embeddings at the projected coordinates ``coords`` [B, V, N, 2 or 1], averaged
    over the views → [B, N, D]. A 2D ``coords`` needs a grid ``table`` [H, W, D], a 1D one a table [L, D]
    (``n_positions``: how many of its rows the line spans; default N)."""
    dims = coords.shape[-1]
    if dims == 2:
        per_view = lookup_2d(table, coords)
    else:
        per_view = lookup_1d(table, coords, n_positions or min(coords.shape[2], table.shape[0]))
    return per_view.mean(dim=1)
