"""Configuration of Any2Point (Tang et al., 2024): a frozen 2D or 1D transformer reads point clouds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mmadapt.errors import ConfigError


def _authors_views() -> list[list[float]]:
    """The authors' six views (``mv_utils.PCViews``) as Euler angles [x, y, z] in degrees."""
    return [[0.0, 0.0, 90.0], [90.0, 0.0, 90.0], [180.0, 0.0, 90.0], [270.0, 0.0, 90.0], [0.0, -90.0, 90.0],
            [0.0, 90.0, 90.0]]


@dataclass
class Any2PointConfig:
    """Any2Point: 3D-to-any virtual projection + any-to-3D guided adapters in every block.

    Projection (no rendering, no new position parameters):

    - ``views``: Euler angles ``[x, y, z]`` in degrees per view; view ``v`` turns a centre ``p`` into
      ``p' = X(x) · Y(y) · Z(z) · p`` (default: the authors' six views).
    - 1D sources: ``p'`` is projected onto ``line_direction`` (default the authors' (−1, 0, 1)), min-max
      normalised per cloud and view to ``s ∈ [0, 1]``, and read at position ``s · (L − 1)`` of the source's
      first ``line_positions`` positions (``L``; None: all of them) by linear interpolation.
      ``line_coordinates: authors`` reproduces the authors' arithmetic exactly (a half-position shift with
      wrap-around, then a rescale by the whole batch's range; see :func:`~.projection.authors_line_lookup`).
    - 2D sources: perspective ``(x', y') / (z' + camera_depth)`` (the authors' ``--trans``), clamped to
      [−1, 1], where ±1 are the centres of the first / last patch of the source's grid (bilinear).
    - ``position``: ``virtual_projection`` (the views' embeddings averaged) or ``none`` (the ablation);
      ``pe_at``: where it is added — ``input_and_blocks`` (the authors' CLIP-text ScanObjectNN code: to the
      tokens once at the input and again before every block), ``blocks`` (their DINOv2 code), ``input``
      (their CLIP-text ModelNet40 code).

    Adapter (``variant: any2point``, the authors'; ``adapter: guided``):

    - (a) inside every block, a bottleneck on the feed-forward output ``f``: ``f + ffn_scale · up(drop(
      QuickGELU(down(f))))``, width ``ffn_bottleneck``, dropout ``ffn_dropout``;
    - (b) after every block, for the point tokens: a voxel-pooled 3D feature (voxels of side ``voxel_size``
      in the cloud's coordinates, max + mean, BatchNorm + GELU); per view, local attention (width
      ``attention_dim``, ``attention_heads`` heads, one module per view shared by all blocks) among the
      tokens of a cell of the projected space, then the cell's ``cell_pool`` (mean or max + mean), BatchNorm
      + GELU at full width;
    - (c) the views weighted by ``(cos(view, 3D) + 1) / 2`` normalised over the views, the sum times
      ``guided_scale`` added to the tokens.
    - Cells: ``cell_1d`` = ``[a, b]``: a cell spans ``a / b`` of the projected line (authors: 2 of CLIP's 77
      positions → 39 cells); ``cell_2d``: ``a / b`` of each image side (authors: 26 of DINOv2's 518 px → 20 ×
      20). As fractions they give the same cell count for any source's grid.
    - ``adapter: plain`` keeps only (a); ``none``: no adapter at all (only the projection).

    ``variant: mmadapt_v0`` — mmadapt's earlier adapter: after every block a LayerNorm bottleneck of width
    ``bottleneck``, per view the mean over a ``cells_per_axis``-per-axis grid (1D: ``cells_per_axis²``
    segments), learned softmax view weights, output times ``scale``; zero-initialised. ``plain``: the same
    bottleneck without cells.

    Other parts:

    - ``cls``: ``trained`` — a trained [CLS] token with its own trained position (the authors'; normal, std
      0.02) replaces the encoder's; ``encoder`` — the frozen encoder's own [CLS] (and its position).
    - ``final_norm``: ``trained`` — a trained copy of the encoder's final norm (the authors train it);
      ``frozen`` — the encoder's own.
    - ``attention_over_batch``: reproduces the authors' CLIP-text bug (batch-first tensors into a
      sequence-first ``nn.MultiheadAttention``: each block's attention mixes the samples of the batch at each
      position, not the tokens of a sample). Off by default.
    """

    name: str = "any2point"
    variant: Literal["any2point", "mmadapt_v0"] = "any2point"
    views: list[list[float]] = field(default_factory=_authors_views)
    line_direction: list[float] = field(default_factory=lambda: [-1.0, 0.0, 1.0])
    line_positions: int | None = None
    line_coordinates: Literal["exact", "authors"] = "exact"
    camera_depth: float = 1.8
    position: Literal["virtual_projection", "none"] = "virtual_projection"
    pe_at: Literal["input_and_blocks", "blocks", "input"] = "input_and_blocks"
    adapter: Literal["guided", "plain", "none"] = "guided"
    ffn_bottleneck: int = 16
    ffn_scale: float = 0.3
    ffn_dropout: float = 0.1
    guided_scale: float = 0.3
    voxel_size: float = 0.08
    attention_dim: int = 12
    attention_heads: int = 6
    cell_pool: Literal["mean", "max_mean"] = "mean"
    cell_1d: list[int] = field(default_factory=lambda: [2, 77])
    cell_2d: list[int] = field(default_factory=lambda: [26, 518])
    cls: Literal["trained", "encoder"] = "trained"
    final_norm: Literal["trained", "frozen"] = "trained"
    attention_over_batch: bool = False
    # variant mmadapt_v0 only
    bottleneck: int = 16
    cells_per_axis: int = 4
    scale: float = 1.0

    def validate(self) -> None:
        if not self.views:
            raise ConfigError("views: expected at least one [x, y, z] triple of Euler angles")
        for i, view in enumerate(self.views):
            if len(view) != 3:
                raise ConfigError(f"views[{i}]: expected Euler angles [x, y, z] in degrees, got {view}")
        if len(self.line_direction) != 3 or not any(self.line_direction):
            raise ConfigError(f"line_direction: expected a non-zero [x, y, z], got {self.line_direction}")
        if self.line_positions is not None and self.line_positions < 2:
            raise ConfigError(f"line_positions: expected >= 2, got {self.line_positions}")
        if self.camera_depth <= 1:
            raise ConfigError(f"camera_depth: must be > 1 (the unit ball lies in front of the camera), "
                              f"got {self.camera_depth}")
        for key in ("ffn_bottleneck", "attention_dim", "attention_heads", "bottleneck", "cells_per_axis"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: expected >= 1, got {getattr(self, key)}")
        if self.attention_dim % self.attention_heads:
            raise ConfigError(f"attention_dim: {self.attention_dim} does not split into attention_heads="
                              f"{self.attention_heads} heads")
        if not 0 <= self.ffn_dropout < 1:
            raise ConfigError(f"ffn_dropout: expected a probability in [0, 1), got {self.ffn_dropout}")
        if self.voxel_size <= 0:
            raise ConfigError(f"voxel_size: expected > 0, got {self.voxel_size}")
        for key in ("cell_1d", "cell_2d"):
            cell = getattr(self, key)
            if len(cell) != 2 or not 1 <= cell[0] <= cell[1]:
                raise ConfigError(f"{key}: expected [a, b] with 1 <= a <= b (a cell spans a / b of the projected "
                                  f"extent), got {cell}")
        if self.attention_over_batch and self.variant != "any2point":
            raise ConfigError("attention_over_batch: reproduces the authors' code, so it needs variant: any2point")
