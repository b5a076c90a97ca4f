"""Configuration of Any2Point (Tang et al., 2024): a frozen 2D or 1D transformer reads point clouds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mmadapt.errors import ConfigError


def _cube_views() -> list[list[float]]:
    return [[0.0, 0.0], [90.0, 0.0], [180.0, 0.0], [270.0, 0.0], [0.0, 90.0], [0.0, -90.0]]


@dataclass
class Any2PointConfig:
    """Any2Point: 3D-to-any virtual projection + any-to-3D guided adapters in every block.

    - ``views``: the virtual cameras, ``[azimuth, elevation]`` in degrees (default: the six faces of a cube,
      as the paper's six fixed views). A 2D source projects each point token's centre onto every view's image
      plane (perspective, camera at ``camera_distance`` from the origin, the unit ball filling [-1, 1]); a 1D
      source onto every view's horizontal line.
    - ``position``: ``virtual_projection`` — each token gets the source's own pretrained position embedding
      at its projected coordinate (bilinear in a 2D grid, linear on a 1D table), averaged over views, added
      before ``pe_blocks`` blocks (``all``: before every block, as the authors' code; ``first``: once);
      ``none`` — no position information from the source (the ablation).
    - ``line_positions``: 1D sources only — how many positions of the table (after [CLS]) the line spans
      (None: as many as there are point tokens).
    - ``adapter``: ``guided`` — the any-to-3D guided adapter: bottleneck, then per view the tokens that fall
      into the same cell of a ``cells_per_axis``-per-axis grid of the projected space (1D: ``cells_per_axis²``
      segments) are pooled, the pooled feature goes back to each token through a small MLP, the views are
      combined with learned softmax weights; ``plain`` — the same bottleneck without the neighbourhoods
      (the ablation); ``none`` — no adapter (only the projection).
    - ``bottleneck``: the adapter's width; ``scale``: its output multiplier. The up-projection starts at
      zero, so training starts from the frozen model's own behaviour.
    """

    name: str = "any2point"
    views: list[list[float]] = field(default_factory=_cube_views)
    camera_distance: float = 3.0
    position: Literal["virtual_projection", "none"] = "virtual_projection"
    pe_blocks: Literal["all", "first"] = "all"
    line_positions: int | None = None
    adapter: Literal["guided", "plain", "none"] = "guided"
    bottleneck: int = 16
    cells_per_axis: int = 4
    scale: float = 1.0

    def validate(self) -> None:
        if not self.views:
            raise ConfigError("views: expected at least one [azimuth, elevation] pair")
        for i, view in enumerate(self.views):
            if len(view) != 2:
                raise ConfigError(f"views[{i}]: expected [azimuth, elevation] in degrees, got {view}")
        if self.camera_distance <= 1:
            raise ConfigError(f"camera_distance: must be > 1 (the unit ball lies in front of the camera), "
                              f"got {self.camera_distance}")
        if self.bottleneck < 1:
            raise ConfigError(f"bottleneck: expected >= 1, got {self.bottleneck}")
        if self.cells_per_axis < 1:
            raise ConfigError(f"cells_per_axis: expected >= 1, got {self.cells_per_axis}")
        if self.line_positions is not None and self.line_positions < 2:
            raise ConfigError(f"line_positions: expected >= 2, got {self.line_positions}")
