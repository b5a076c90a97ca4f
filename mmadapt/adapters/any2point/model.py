"""Any2Point (Tang et al., 2024): point tokens through a frozen 2D (ViT / CLIP / AST) or 1D (BERT-family)
transformer.

Inside an :class:`~mmadapt.models.adapted_encoder.AdaptedEncoder` the data flow of one batch is::

    point tokens [B, N, D], centres xyz [B, N, 3] (the point tokenizer, with position: none)
      → project onto every view (2D plane or 1D line)  [B, V, N, 2|1]
      → before each block: + the source's own position embeddings at the projections, mean over views
      → frozen block
      → after each block: + guided adapter (neighbourhoods = cells of the projected space, per view)

The source's position table is read from the frozen encoder (:meth:`TokenEncoder.position_table`) and kept
as a non-persistent buffer: it is never trained and never saved with the adapter.
"""

from __future__ import annotations

import torch
from torch import nn

from mmadapt.adapters.any2point.config import Any2PointConfig
from mmadapt.adapters.any2point.layer import GuidedAdapter, projected_cells
from mmadapt.adapters.any2point.projection import project, view_rotations, virtual_position_embedding
from mmadapt.adapters.base import Adapter
from mmadapt.backbones.base import BlockHook, TokenEncoder
from mmadapt.errors import ConfigError
from mmadapt.registry import register
from mmadapt.tokenizers.base import TokenBatch


@register("adapters", "any2point")
class Any2Point(Adapter):
    config_class = Any2PointConfig

    def __init__(self, config: Any2PointConfig, encoder: TokenEncoder):
        super().__init__()
        self.config = config
        try:
            table = encoder.position_table().detach().clone()
        except NotImplementedError as exc:
            raise ConfigError(f"model.adapter (any2point): {exc}") from None
        if table.ndim not in (2, 3):
            raise ConfigError(f"model.adapter (any2point): the source's position table is {list(table.shape)}; "
                              "expected [H, W, D] (2D) or [L, D] (1D)")
        self.source_dims = table.ndim - 1  # 2: image plane, 1: line
        if self.source_dims == 1 and config.line_positions is not None and config.line_positions > table.shape[0]:
            raise ConfigError(f"model.adapter.line_positions: {config.line_positions} > the source's "
                              f"{table.shape[0]} positions")
        self.register_buffer("position_table", table, persistent=False)
        self.register_buffer("rotations", view_rotations(config.views).float(), persistent=False)
        n_views, width = len(config.views), encoder.hidden_size
        if config.adapter == "none":
            self.block_adapters = nn.ModuleList()
        else:
            self.block_adapters = nn.ModuleList(
                GuidedAdapter(width, config.bottleneck, n_views, guided=config.adapter == "guided", scale=config.scale)
                for _ in encoder.blocks)

    def attach(self, encoder: TokenEncoder) -> None:
        """Nothing to patch: :meth:`block_hooks` hands ``run_blocks`` the per-block functions of a batch."""

    # --------------------------------------------------------------------------------------- pieces
    def projections(self, centres: torch.Tensor) -> torch.Tensor:
        """Centres xyz [B, N, 3] → projected coordinates [B, V, N, 2 or 1]."""
        return project(centres.float(), self.rotations, self.source_dims, self.config.camera_distance)

    def position_embedding(self, projected: torch.Tensor) -> torch.Tensor:
        """The source's own position embeddings at ``projected`` [B, V, N, k], averaged over views → [B, N, D]."""
        return virtual_position_embedding(self.position_table, projected, self.config.line_positions)

    def block_hooks(self, batch: TokenBatch) -> tuple[BlockHook | None, BlockHook | None]:
        """``(before_block, after_block)`` for :meth:`TokenEncoder.run_blocks` on ``batch`` (its ``coords``
        are the point tokens' centres)."""
        if batch.coords is None or batch.coords.shape[-1] != 3:
            raise ValueError("any2point: the tokens need their centres' xyz as coords [B, N, 3] "
                             "(use the point_cloud tokenizer)")
        projected = self.projections(batch.coords)
        before = None
        if self.config.position == "virtual_projection":
            pe = self.position_embedding(projected)
            first_only = self.config.pe_blocks == "first"

            def before(i: int, x: torch.Tensor) -> torch.Tensor:
                return x + pe.to(x.dtype) if i == 0 or not first_only else x

        after = None
        if len(self.block_adapters):
            cells, n_cells = projected_cells(projected, self.config.cells_per_axis)
            mask = batch.mask

            def after(i: int, x: torch.Tensor) -> torch.Tensor:
                return x + self.block_adapters[i](x, cells, mask, n_cells).to(x.dtype)

        return before, after
