"""Any2Point (Tang et al., 2024): point tokens through a frozen 2D (ViT / CLIP / AST) or 1D (BERT-family)
transformer.

Inside an :class:`~mmadapt.models.adapted_encoder.AdaptedEncoder` the data flow of one batch is
(defaults: the authors' code)::

    point tokens [B, N, D], centres xyz [B, N, 3] (the point_pn tokenizer)
      → project the centres onto every view (1D line / 2D plane)  → the source's own position embeddings
        there, averaged over views: pe [B, N, D]; each view's cells [B, V, N]; 3D voxels [B·N]
      → [trained CLS ‖ tokens] + [trained CLS position ‖ pe]                         (pe_at: input…)
      → per block i: + [CLS position ‖ pe]                                           (pe_at: …blocks)
                     frozen block, its feed-forward output f → f + 0.3 · FFNAdapter_i(f)   (a)
                     point tokens += 0.3 · Σ_v w_v · view feature_v                (b) + (c)
      → trained copy of the final norm → [B, 1+N, D] ([CLS] first)

The source's position table is read from the frozen encoder (:meth:`TokenEncoder.position_table`) and kept
as a non-persistent buffer: it is never trained and never saved with the adapter.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from mmadapt.adapters.any2point.config import Any2PointConfig
from mmadapt.adapters.any2point.layer import CellAttention, FFNAdapter, GuidedAdapter, GuidedAdapter3D, voxel_clusters
from mmadapt.adapters.any2point.projection import (authors_line_lookup, authors_line_positions, cell_index,
                                                   euler_rotations, line_coordinates, lookup_1d, lookup_2d,
                                                   plane_coordinates)
from mmadapt.adapters.base import Adapter
from mmadapt.backbones.base import TokenEncoder
from mmadapt.errors import ConfigError
from mmadapt.registry import register
from mmadapt.tokenizers.base import TokenBatch


@dataclass
class Geometry:
    """What the projection gives one batch: ``pe`` [B, N, D] (the views' mean), ``cells`` [B, V, N] with
    ``n_cells`` per view."""

    pe: torch.Tensor
    cells: torch.Tensor
    n_cells: int


@register("adapters", "any2point")
class Any2Point(Adapter):
    config_class = Any2PointConfig
    assemblies = ("adapted_encoder",)

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
        self.n_positions = config.line_positions or table.shape[0]
        self.register_buffer("position_table", table, persistent=False)
        self.register_buffer("rotations", euler_rotations(config.views).float(), persistent=False)
        self.register_buffer("direction", torch.tensor(config.line_direction, dtype=torch.float32), persistent=False)
        n_views, width, depth = len(config.views), encoder.hidden_size, len(encoder.blocks)
        self.ffn_adapters = nn.ModuleList()  # (a), one per block
        self.cell_attentions = nn.ModuleList()  # one per view, shared by the blocks
        self.block_adapters = nn.ModuleList()  # after each block: (b) + (c), or mmadapt_v0's
        if config.adapter != "none" and config.variant == "mmadapt_v0":
            self.block_adapters.extend(
                GuidedAdapter(width, config.bottleneck, n_views, guided=config.adapter == "guided", scale=config.scale)
                for _ in range(depth))
        elif config.adapter != "none":
            try:
                encoder.ffn_output(encoder.blocks[0])
            except NotImplementedError as exc:
                raise ConfigError(f"model.adapter (any2point): {exc}") from None
            self.ffn_adapters.extend(
                FFNAdapter(width, config.ffn_bottleneck, config.ffn_scale, config.ffn_dropout) for _ in range(depth))
            if config.adapter == "guided":
                self.cell_attentions.extend(
                    CellAttention(width, config.attention_dim, config.attention_heads) for _ in range(n_views))
                self.block_adapters.extend(
                    GuidedAdapter3D(width, n_views, config.guided_scale, config.cell_pool) for _ in range(depth))
        if config.cls == "trained":
            self.cls_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)
            self.cls_position = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        if config.final_norm == "trained":
            self.final_norm = copy.deepcopy(encoder.final_norm).requires_grad_(True)

    def attach(self, encoder: TokenEncoder) -> None:
        """Nothing to patch: :meth:`run_encoder` arms its feed-forward hooks for the duration of one run."""

    # --------------------------------------------------------------------------------------- pieces
    def geometry(self, centres: torch.Tensor) -> Geometry:
        """Centres xyz [B, N, 3] → the views' mean position embedding and each view's cells."""
        cfg, xyz = self.config, centres.float()
        v0 = cfg.variant == "mmadapt_v0"
        if self.source_dims == 1:
            s = line_coordinates(xyz, self.rotations, self.direction)  # [B, V, N]
            cell = (1, cfg.cells_per_axis ** 2) if v0 else tuple(cfg.cell_1d)
            if cfg.line_coordinates == "authors":
                positions = authors_line_positions(s, self.n_positions)
                per_view = authors_line_lookup(self.position_table, positions, self.n_positions)
                s = positions / self.n_positions
            else:
                per_view = lookup_1d(self.position_table, s, self.n_positions)
            cells, n_cells = cell_index(s[..., None], cell)
        else:
            c = plane_coordinates(xyz, self.rotations, cfg.camera_depth)  # [B, V, N, 2]
            per_view = lookup_2d(self.position_table, c)
            cell = (1, cfg.cells_per_axis) if v0 else tuple(cfg.cell_2d)
            cells, n_cells = cell_index((c + 1) / 2, cell)
        return Geometry(per_view.mean(dim=1), cells, n_cells)

    @contextlib.contextmanager
    def _ffn_hooks(self, encoder: TokenEncoder) -> Iterator[None]:
        """(a) on every block's feed-forward output while the blocks run (none without ffn_adapters)."""
        handles = []
        try:
            for block, adapter in zip(encoder.blocks, self.ffn_adapters):
                handles.append(encoder.ffn_output(block).register_forward_hook(
                    lambda module, args, out, adapter=adapter: adapter(out)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def run_encoder(self, encoder: TokenEncoder, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen ``encoder`` with Any2Point on the tokenizer's ``batch`` (tokens [B, N, D], coords = the
        centres' xyz [B, N, 3]) → hidden [B, 1+N, D] ([CLS] first, after the final norm), mask [B, 1+N]."""
        cfg = self.config
        if batch.coords is None or batch.coords.shape[-1] != 3:
            raise ValueError("any2point: the tokens need their centres' xyz as coords [B, N, 3] "
                             "(use the point_pn or point_cloud tokenizer)")
        if not bool(batch.mask.all()):
            raise ValueError("any2point: point tokens come without padding (every cloud gives the same number)")
        geometry = self.geometry(batch.coords)
        tokens, mask = batch.tokens, batch.mask
        B, _, D = tokens.shape
        trained_cls = cfg.cls == "trained"
        pos = geometry.pe.to(tokens.dtype)
        if trained_cls:
            tokens = torch.cat([self.cls_token.expand(B, 1, D).to(tokens.dtype), tokens], dim=1)
            pos = torch.cat([self.cls_position.expand(B, 1, D).to(tokens.dtype), pos], dim=1)
            mask = torch.cat([mask.new_ones(B, 1), mask], dim=1)
        start = 1 if trained_cls else 0  # where the point tokens begin among the tokens the hooks see
        use_pe = cfg.position == "virtual_projection"
        if use_pe and cfg.pe_at in ("input", "input_and_blocks"):
            tokens = tokens + pos

        def before(i: int, x: torch.Tensor) -> torch.Tensor:
            return x + pos.to(x.dtype)

        if cfg.variant == "mmadapt_v0":
            def after(i: int, x: torch.Tensor) -> torch.Tensor:
                points = x[:, start:]
                update = self.block_adapters[i](points, geometry.cells, mask[:, start:], geometry.n_cells)
                return torch.cat([x[:, :start], points + update.to(x.dtype)], dim=1)
        else:
            voxels, n_voxels = voxel_clusters(batch.coords.float(), cfg.voxel_size)

            def after(i: int, x: torch.Tensor) -> torch.Tensor:
                points = x[:, start:]
                update = self.block_adapters[i](points, voxels, n_voxels, geometry.cells, geometry.n_cells,
                                                self.cell_attentions)
                return torch.cat([x[:, :start], points + update.to(x.dtype)], dim=1)

        with self._ffn_hooks(encoder):
            return encoder.run_blocks(
                tokens, mask, before if use_pe and cfg.pe_at != "input" else None,
                after if len(self.block_adapters) else None, own_prefix=not trained_cls,
                final_norm=self.final_norm if cfg.final_norm == "trained" else None,
                batch_as_sequence=cfg.attention_over_batch)
