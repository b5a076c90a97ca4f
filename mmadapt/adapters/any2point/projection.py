"""Any2Point's 3D-to-any virtual projection: point-token centres → coordinates in a source model's own
position space → its pretrained position embeddings, averaged over views; and the cells of that space that
the guided adapter's local attention works in. No rendering, no new parameters.

Coordinates (xyz normalised into the unit ball, as the point-cloud loader does):

- :func:`euler_rotations` — per view ``M = X(x) · Y(y) · Z(z)``, a centre turns into ``p' = M p`` (the
  authors' ``euler2mat``; their ``points @ M^T``);
- 1D sources, :func:`line_coordinates` — ``t = p' · d / |d|`` on the fixed direction ``d``, min-max per cloud
  and view: ``s = (t − min t) / (max t − min t) ∈ [0, 1]``; :func:`lookup_1d` reads the table at position
  ``s · (L − 1)`` (linear interpolation). Height matters in every view (the default views and direction give
  ``t ∝ y + z, y + x, y − z, y − x, z − y, y − z``);
- :func:`authors_line_positions` / :func:`authors_line_lookup` — the authors' exact arithmetic, an option;
- 2D sources, :func:`plane_coordinates` — perspective ``c = (x', y') / (z' + depth)``, clamped to [−1, 1];
  :func:`lookup_2d` reads the grid bilinearly with ±1 at the centres of the first / last patch (u: columns,
  v: rows);
- :func:`cell_index` — the cells of the projected space from coordinates ``u ∈ [0, 1]`` per axis and a
  cell size ``a / b`` of the extent.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def euler_rotations(views: list[list[float]]) -> torch.Tensor:
    """``[V, 3, 3]`` (float64) ``X(x) · Y(y) · Z(z)`` for Euler angles ``[x, y, z]`` in degrees."""
    out = []
    for angles in views:
        x, y, z = (math.radians(a) for a in angles)
        cx, sx, cy, sy, cz, sz = math.cos(x), math.sin(x), math.cos(y), math.sin(y), math.cos(z), math.sin(z)
        rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]], dtype=torch.float64)
        ry = torch.tensor([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]], dtype=torch.float64)
        rz = torch.tensor([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
        out.append(rx @ ry @ rz)
    return torch.stack(out)


def _turn(xyz: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    if xyz.ndim != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"projection: xyz must be [B, N, 3], got {list(xyz.shape)}")
    return torch.einsum("vij,bnj->bvni", rotations.to(xyz.dtype), xyz)  # [B, V, N, 3]


def line_coordinates(xyz: torch.Tensor, rotations: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """``xyz`` [B, N, 3] → ``s`` [B, V, N] in [0, 1]: each view's turned centres on ``direction``, min-max
    normalised per cloud and view (a cloud whose centres all project to one value gets 0)."""
    d = direction.to(xyz.dtype)
    t = _turn(xyz, rotations) @ (d / d.norm())
    low, high = t.amin(dim=2, keepdim=True), t.amax(dim=2, keepdim=True)
    return (t - low) / (high - low).clamp(min=torch.finfo(t.dtype).tiny)


def lookup_1d(table: torch.Tensor, s: torch.Tensor, n_positions: int) -> torch.Tensor:
    """Linear interpolation of the first ``n_positions`` rows of ``table`` [L, D] at ``s · (n_positions − 1)``,
    ``s`` [...] in [0, 1] → [..., D]."""
    if table.ndim != 2:
        raise ValueError(f"lookup_1d: table must be [L, D], got {list(table.shape)}")
    if not 2 <= n_positions <= table.shape[0]:
        raise ValueError(f"lookup_1d: n_positions={n_positions} must be in [2, {table.shape[0]}] (the table's rows)")
    position = s.to(table.dtype) * (n_positions - 1)
    low = position.floor().clamp(0, n_positions - 2).long()
    weight = (position - low)[..., None]
    return table[low] * (1 - weight) + table[low + 1] * weight


def authors_line_positions(s: torch.Tensor, n_positions: int) -> torch.Tensor:
    """The authors' line coordinate (``points2pos`` with a one-wide kernel): ``(s · L − 0.5) mod L`` — the
    cloud's extreme centre at ``s = 0`` wraps to ``L − 0.5``, next to the other extreme."""
    return torch.remainder(s * n_positions - 0.5, n_positions)


def authors_line_lookup(table: torch.Tensor, positions: torch.Tensor, n_positions: int) -> torch.Tensor:
    """The authors' ``bilinear_interpolation_3d_to_1d`` on :func:`authors_line_positions` ``positions``
    [...] → [..., D]: ``x = positions · (L − 1) / (max − min)`` with max / min over the *whole batch*, then
    ``(⌈x⌉ − x) · T[⌊x⌋] + (x − ⌊x⌋) · T[⌈x⌉]`` with both indices clamped to [0, L − 1] — so an integer ``x``,
    or one above ``L − 1``, gets a zero embedding."""
    table = table[:n_positions]
    x = positions.to(table.dtype) * ((n_positions - 1) / (positions.max() - positions.min()))
    left, right = x.floor().long().clamp(0, n_positions - 1), x.ceil().long().clamp(0, n_positions - 1)
    return (right.to(x.dtype) - x)[..., None] * table[left] + (x - left.to(x.dtype))[..., None] * table[right]


def plane_coordinates(xyz: torch.Tensor, rotations: torch.Tensor, depth: float) -> torch.Tensor:
    """``xyz`` [B, N, 3] → ``c`` [B, V, N, 2] = ``(x', y') / (z' + depth)`` clamped to [−1, 1]."""
    turned = _turn(xyz, rotations)
    return (turned[..., :2] / (turned[..., 2:3] + depth)).clamp(-1.0, 1.0)


def lookup_2d(table: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear interpolation of ``table`` [H, W, D] at ``uv`` [..., 2] (u: columns, v: rows, in [-1, 1])
    → [..., D]."""
    if table.ndim != 3:
        raise ValueError(f"lookup_2d: table must be [H, W, D], got {list(table.shape)}")
    grid = uv.reshape(1, -1, 1, 2).to(table.dtype)
    image = table.permute(2, 0, 1)[None]  # [1, D, H, W]
    out = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)  # [1, D, M, 1]
    return out[0, :, :, 0].T.reshape(*uv.shape[:-1], table.shape[-1])


def cell_index(u: torch.Tensor, cell: tuple[int, int]) -> tuple[torch.Tensor, int]:
    """Coordinates ``u`` [..., k] in [0, 1] (k = 1: a line, 2: a plane, first axis the columns) and a cell
    side of ``a / b`` of the extent → cell index [...] (long) and the number of cells. Per axis there are
    ``n = ⌈b / a⌉`` cells and a coordinate falls in ``min(⌊u · b / a⌋, n − 1)``; on a plane the index is
    ``column + n · row``."""
    a, b = cell
    per_axis = -(-b // a)
    index = (u * (b / a)).floor().long().clamp(0, per_axis - 1)
    if u.shape[-1] == 1:
        return index[..., 0], per_axis
    return index[..., 0] + per_axis * index[..., 1], per_axis * per_axis
