"""Any2Point against its authors' code (Ivan-Tang-3D/Any2Point), on cases small enough to check by hand: the
1D projection (height matters; rotate, project on (−1, 0, 1), min-max per cloud), the authors' exact line
arithmetic (an option), the cells, the adapter's pieces (a) (b) (c) and their scales, where the position
embedding goes, the trained [CLS], the attention-over-the-batch option, Point-PN and the max ‖ [CLS] head."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmadapt.adapters.any2point import Any2Point, Any2PointConfig
from mmadapt.adapters.any2point.config import _authors_views
from mmadapt.adapters.any2point.layer import CellAttention, FFNAdapter, GuidedAdapter3D, segment_pool, voxel_clusters
from mmadapt.adapters.any2point.projection import (authors_line_lookup, authors_line_positions, cell_index,
                                                   euler_rotations, line_coordinates, lookup_1d)
from mmadapt.backbones.base import TokenEncoder
from mmadapt.tokenizers.base import TokenBatch

# ------------------------------------------------------------------------------------------ 1D projection


def test_the_authors_views_on_their_line_all_depend_on_height():
    """Their six views (euler2mat X·Y·Z, Z = 90° always) and direction (−1, 0, 1)/√2: by hand, the line
    coordinate of (x, y, z) is (y + z, y + x, y − z, y − x, z − y, y − z) / √2."""
    r = euler_rotations(_authors_views())
    d = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64) / math.sqrt(2)
    p = torch.tensor([0.3, -0.5, 0.7], dtype=torch.float64)
    x, y, z = p
    expected = torch.stack([y + z, y + x, y - z, y - x, z - y, y - z]) / math.sqrt(2)
    torch.testing.assert_close((r @ p) @ d, expected)


def test_two_points_that_differ_only_in_y_get_different_1d_positions_in_every_view():
    xyz = torch.tensor([[[0.2, -0.4, 0.1], [0.2, 0.4, 0.1], [0.9, 0.0, -0.3], [-0.6, 0.1, 0.5]]])
    s = line_coordinates(xyz, euler_rotations(_authors_views()), torch.tensor([-1.0, 0.0, 1.0]))  # [1, 6, 4]
    assert (s[0, :, 0] - s[0, :, 1]).abs().min() > 0.1


def test_min_max_per_cloud_onto_the_sources_positions_by_hand():
    # view 0 gives (y + z)/√2: the three centres sit at 0, 1, 2 (× 1/√2) → s = 0, ½, 1 → positions 0, 38, 76
    xyz = torch.tensor([[[0.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.0, 1.0, 1.0]],
                        [[0.0, 0.0, 0.0], [0.0, 0.0, 4.0], [0.0, 0.0, 1.0]]])  # a second cloud: its own range
    s = line_coordinates(xyz, euler_rotations(_authors_views()[:1]), torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(s[:, 0], torch.tensor([[0.0, 0.5, 1.0], [0.0, 1.0, 0.25]]))
    table = torch.arange(77.0)[:, None].expand(77, 2)  # row i holds i
    torch.testing.assert_close(lookup_1d(table, s[0, 0], 77)[:, 0], torch.tensor([0.0, 38.0, 76.0]))


def test_the_authors_line_arithmetic_by_hand():
    """``line_coordinates: authors``: (s·L − 0.5) mod L, then × (L − 1) / (max − min) over the whole batch,
    then (⌈x⌉ − x)·T[⌊x⌋] + (x − ⌊x⌋)·T[⌈x⌉] with clamped indices. L = 5, s = 0, ½, 1: positions 4.5, 2, 4.5;
    range 2.5 → x = 7.2, 3.2, 7.2; 7.2 clamps both indices to 4 → weight 4 − 7.2 + 7.2 − 4 = 0."""
    s = torch.tensor([0.0, 0.5, 1.0])
    positions = authors_line_positions(s, 5)
    torch.testing.assert_close(positions, torch.tensor([4.5, 2.0, 4.5]))
    table = torch.tensor([[1.0], [2.0], [4.0], [8.0], [16.0], [99.0]])
    got = authors_line_lookup(table, positions, 5)[:, 0]
    torch.testing.assert_close(got, torch.tensor([0.0, 0.8 * 8 + 0.2 * 16, 0.0]))


# ------------------------------------------------------------------------------------------ cells


def test_cells_by_hand():
    cells, n = cell_index(torch.tensor([[0.1], [0.4], [0.6], [0.9]]), (1, 2))  # 4 tokens in 2 cells
    assert (n, cells.tolist()) == (2, [0, 0, 1, 1])
    # the authors' 1D cells: 2 of 77 positions → ⌈77 / 2⌉ = 39 cells; the last one holds position 76 alone
    cells, n = cell_index(torch.tensor([[0.0], [1.99 / 77], [2.01 / 77], [75.9 / 77], [1.0]]), (2, 77))
    assert (n, cells.tolist()) == (39, [0, 0, 1, 37, 38])
    # the authors' 2D cells: 26 of 518 px → 20 × 20; u = (½, ¼): column ⌊9.96⌋ = 9, row ⌊4.98⌋ = 4
    cells, n = cell_index(torch.tensor([[0.5, 0.25], [1.0, 1.0], [0.0, 0.0]]), (26, 518))
    assert (n, cells.tolist()) == (400, [9 + 20 * 4, 399, 0])


# ------------------------------------------------------------------------------------------ adapter pieces


def test_ffn_adapter_by_hand():
    a = FFNAdapter(dim=2, bottleneck=1, scale=0.3, dropout=0.1).eval()
    with torch.no_grad():
        a.down.weight.copy_(torch.tensor([[1.0, 1.0]]))
        a.up.weight.copy_(torch.tensor([[1.0], [2.0]]))
    f = torch.tensor([[1.0, 0.0]])
    quick_gelu = 1 / (1 + math.exp(-1.702))  # QuickGELU(1)
    torch.testing.assert_close(a(f), torch.tensor([[1.0 + 0.3 * quick_gelu, 0.3 * 2 * quick_gelu]]))
    fresh = FFNAdapter(dim=8, bottleneck=4, scale=0.3, dropout=0.0)
    assert fresh.down.bias.abs().sum() == 0 and fresh.down.weight.abs().sum() > 0  # Xavier, zero bias: no identity


def test_cell_attention_stays_inside_each_cell():
    torch.manual_seed(0)
    attention = CellAttention(width=4, dim=4, heads=2)
    x = torch.randn(1, 4, 4)
    cells = torch.tensor([[0, 0, 1, 1]])
    moved = x.clone()
    moved[0, 2] = torch.tensor([3.0, -1.0, 2.0, 0.5])  # a token of cell 1 changes: cell 0 must not notice
    a, b = attention(x, cells), attention(moved, cells)
    torch.testing.assert_close(a[0, :2], b[0, :2])
    assert not torch.allclose(a[0, 3], b[0, 3])
    alone = attention(x, torch.tensor([[0, 1, 2, 3]]))  # one token per cell: softmax over itself = its value
    h = attention.norm(x)
    v = attention.qkv(h)[..., 8:]
    torch.testing.assert_close(alone, x + attention.proj(v))


def test_guided_adapter_by_hand():
    """(b) + (c) on B = 1, N = 4, D = 2, two views, BatchNorm in eval (fresh statistics: x / √(1 + ε)) and the
    local attention switched off (proj = 0): everything below is the formula written out per token."""
    guided = GuidedAdapter3D(dim=2, n_views=2, scale=0.3, cell_pool="mean").eval()
    attentions = nn.ModuleList(CellAttention(2, 2, 1) for _ in range(2))
    for attention in attentions:
        nn.init.zeros_(attention.proj.weight)
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [-1.0, 1.0]]])
    voxels = torch.tensor([0, 0, 1, 2])
    cells = torch.tensor([[[0, 0, 1, 1], [0, 1, 1, 1]]])  # [B, V, N]
    bn = lambda t: t / math.sqrt(1 + 1e-5)  # noqa: E731
    g = F.gelu(bn(torch.tensor([[1.5, 1.5], [1.5, 1.5], [4.0, 4.0], [-2.0, 2.0]])))  # max + mean per voxel
    view0 = F.gelu(bn(torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.5, 1.5], [0.5, 1.5]])))
    view1 = F.gelu(bn(torch.tensor([[1.0, 0.0], [1 / 3, 4 / 3], [1 / 3, 4 / 3], [1 / 3, 4 / 3]])))
    w0 = (F.cosine_similarity(view0, g, dim=-1) + 1) / 2
    w1 = (F.cosine_similarity(view1, g, dim=-1) + 1) / 2
    expected = 0.3 * (w0[:, None] * view0 + w1[:, None] * view1) / (w0 + w1)[:, None]
    got = guided(x, voxels, 3, cells, 2, attentions)
    torch.testing.assert_close(got[0], expected)
    guided.scale = 0.6
    torch.testing.assert_close(guided(x, voxels, 3, cells, 2, attentions)[0], 2 * expected)  # linear in the ×0.3


def test_cell_max_mean_and_voxels_by_hand():
    x = torch.tensor([[1.0], [3.0], [-2.0]])
    pooled = segment_pool(x, torch.tensor([0, 0, 2]), 3, with_max=True)
    assert pooled[:, 0].tolist() == [2.0 + 3.0, 0.0, -2.0 + -2.0]  # an empty cell gives 0, as torch_scatter
    voxels, n = voxel_clusters(torch.tensor([[[0.0, 0.0, 0.0], [0.05, 0.07, 0.0], [0.1, 0.0, 0.0]],
                                             [[0.0, 0.0, 0.0], [0.05, 0.07, 0.0], [0.1, 0.0, 0.0]]]), 0.08)
    assert n == 4 and voxels[0] == voxels[1] != voxels[2] and len(set(voxels[3:].tolist()) & set(voxels[:3].tolist())) == 0


# ------------------------------------------------------------------------------------------ where things go


class _Block(nn.Module):
    """A stand-in block: ``h + mlp(h)`` (no attention), the feed-forward output being ``mlp``'s."""

    def __init__(self, dim: int):
        super().__init__()
        self.mlp = nn.Linear(dim, dim)
        nn.init.zeros_(self.mlp.weight)
        nn.init.zeros_(self.mlp.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.mlp(h)


class _LineEncoder(TokenEncoder):
    """A 1D source of width 4 with 2 blocks and a 10-position table."""

    def __init__(self):
        super().__init__()
        self.hidden_size, self.num_layers, self.identity = 4, 2, "test:line"
        self.final_norm = nn.Identity()
        self.layers = nn.ModuleList(_Block(4) for _ in range(2))
        self.register_buffer("table", torch.randn(10, 4))
        self.requires_grad_(False)

    @property
    def blocks(self) -> list[nn.Module]:
        return list(self.layers)

    def _prefix_tokens(self) -> torch.Tensor:
        return torch.full((1, 4), 7.0)

    def _run_block(self, block, hidden, key_mask):
        return block(hidden)

    def position_table(self) -> torch.Tensor:
        return self.table

    def ffn_output(self, block: nn.Module) -> nn.Module:
        return block.mlp


def _batch():
    xyz = torch.tensor([[[0.0, 0.0, 0.0], [0.3, 0.5, -0.2], [0.1, -0.6, 0.4]]])
    return TokenBatch(torch.randn(1, 3, 4), torch.ones(1, 3, dtype=torch.bool), xyz)


@pytest.mark.parametrize("pe_at, times", [("input_and_blocks", 3), ("blocks", 2), ("input", 1)])
def test_the_position_embedding_is_added_at_the_input_and_before_every_block(pe_at, times):
    torch.manual_seed(0)
    encoder, batch = _LineEncoder(), _batch()
    adapter = Any2Point(Any2PointConfig(adapter="none", pe_at=pe_at), encoder)
    hidden, mask = adapter.run_encoder(encoder, batch)
    pe = adapter.geometry(batch.coords).pe
    assert hidden.shape == (1, 4, 4) and mask.all()  # the trained [CLS] first, no encoder prefix (7s)
    torch.testing.assert_close(hidden[:, 1:], batch.tokens + times * pe)  # identity blocks: count the additions
    torch.testing.assert_close(hidden[0, 0], adapter.cls_token[0, 0] + times * adapter.cls_position[0, 0])
    own = Any2Point(Any2PointConfig(adapter="none", pe_at=pe_at, cls="encoder"), encoder)
    hidden, _ = own.run_encoder(encoder, batch)
    torch.testing.assert_close(hidden[0, 0], torch.full((4,), 7.0))  # the encoder's own [CLS]
    torch.testing.assert_close(hidden[:, 1:], batch.tokens + times * pe)


def test_the_ffn_adapter_sits_on_the_feed_forward_output_and_leaves_no_hook_behind():
    torch.manual_seed(0)
    encoder, batch = _LineEncoder(), _batch()
    for block in encoder.blocks:
        nn.init.normal_(block.mlp.weight)
    adapter = Any2Point(Any2PointConfig(adapter="plain", position="none", final_norm="frozen"), encoder).eval()
    hidden, _ = adapter.run_encoder(encoder, batch)
    h = torch.cat([adapter.cls_token, batch.tokens], dim=1)
    for block, ffn in zip(encoder.blocks, adapter.ffn_adapters):
        f = block.mlp(h)
        h = h + f + 0.3 * ffn.up(ffn.act(ffn.down(f)))  # x + x_ffn + scale_factor · adapter(x_ffn)
    torch.testing.assert_close(hidden, h)
    assert all(not block.mlp._forward_hooks for block in encoder.blocks)
    assert torch.equal(encoder.blocks[0](h), h + encoder.blocks[0].mlp(h))


def test_attention_over_the_batch_reproduces_batch_first_into_sequence_first(tmp_path):
    """The authors' CLIP-text bug as an option: each block attends across the batch at every position. With
    ``batch_as_sequence`` the blocks see [L, B, D], i.e. exactly what running them on the transposed batch
    gives; by default a sample never sees another."""
    from tiny import tiny_vit

    encoder = tiny_vit(layers=2, hidden=16)
    tokens = torch.randn(3, 5, 16)
    mask = torch.ones(3, 5, dtype=torch.bool)
    with torch.no_grad():
        bug, _ = encoder.run_blocks(tokens, mask, own_prefix=False, batch_as_sequence=True)
        transposed, _ = encoder.run_blocks(tokens.transpose(0, 1), mask.T, own_prefix=False)
        torch.testing.assert_close(bug, transposed.transpose(0, 1))
        other = tokens.clone()
        other[1] = torch.randn(5, 16)
        assert not torch.allclose(encoder.run_blocks(other, mask, own_prefix=False, batch_as_sequence=True)[0][0], bug[0])
        right, _ = encoder.run_blocks(tokens, mask, own_prefix=False)
        torch.testing.assert_close(encoder.run_blocks(other, mask, own_prefix=False)[0][0], right[0])
    with pytest.raises(ValueError, match="batch_as_sequence needs a batch without padding"):
        encoder.run_blocks(tokens, mask.index_fill(1, torch.tensor([4]), False), batch_as_sequence=True)
    adapter = Any2Point(Any2PointConfig(attention_over_batch=True), encoder).eval()
    xyz = torch.randn(3, 5, 3) / 3
    batch = TokenBatch(tokens, mask, xyz)
    with torch.no_grad():
        a = adapter.run_encoder(encoder, batch)[0]
        b = adapter.run_encoder(encoder, TokenBatch(other, mask, xyz))[0]
    assert not torch.allclose(a[0], b[0])  # sample 0 sees sample 1


def test_the_authors_line_option_through_the_adapter():
    torch.manual_seed(0)
    encoder, batch = _LineEncoder(), _batch()
    adapter = Any2Point(Any2PointConfig(adapter="none", line_coordinates="authors", line_positions=8), encoder)
    s = line_coordinates(batch.coords, adapter.rotations, adapter.direction)
    expected = authors_line_lookup(encoder.table, authors_line_positions(s, 8), 8).mean(dim=1)
    torch.testing.assert_close(adapter.geometry(batch.coords).pe, expected)
    assert not torch.allclose(expected, lookup_1d(encoder.table, s, 8).mean(dim=1))


# ------------------------------------------------------------------------------------------ tokenizer and head


def test_point_pn_defaults_are_the_authors_sizes():
    from mmadapt.tokenizers.point_cloud import PointPNTokenizer, PointPNTokenizerConfig, geometry_encoding

    cfg = PointPNTokenizerConfig()
    assert (cfg.n_points, cfg.stages, cfg.k, cfg.width, cfg.out_width) == (1024, 3, 81, 96, 768)
    tokenizer = PointPNTokenizer(768, cfg).eval()
    assert isinstance(tokenizer.proj, nn.Identity)  # 96 · 2³ = 768 = the source's width
    assert [s.width for s in tokenizer.stages] == [192, 384, 768]
    assert [[b.down.out_features for b in s.blocks] for s in tokenizer.stages] == [[96, 96], [192], [32]]
    torch.manual_seed(0)
    points = torch.randn(2, 1024, 3)
    points = points / points.norm(dim=-1).amax()
    with torch.no_grad():
        out = tokenizer(points)
    assert out.tokens.shape == (2, 128, 768) and out.coords.shape == (2, 128, 3) and out.mask.all()
    assert all((out.coords[b, :, None] == points[b, None]).all(-1).any(-1).all() for b in range(2))  # input points
    # the geometry encoding: width 6 → one frequency, α⁰ = 1: [sin βx, cos βx, sin βy, cos βy, sin βz, cos βz]
    enc = geometry_encoding(torch.tensor([0.01, 0.02, -0.03]), 6, alpha=1000.0, beta=100.0)
    torch.testing.assert_close(enc, torch.tensor([math.sin(1), math.cos(1), math.sin(2), math.cos(2),
                                                  math.sin(-3), math.cos(-3)]))


def test_point_pn_options_and_errors():
    from mmadapt.errors import ConfigError
    from mmadapt.tokenizers.point_cloud import PointPNTokenizer, PointPNTokenizerConfig

    small = dict(n_points=64, k=8, width=3)
    torch.manual_seed(0)
    a = PointPNTokenizer(16, PointPNTokenizerConfig(**small)).eval()
    b = PointPNTokenizer(16, PointPNTokenizerConfig(**small, local_norm="std")).eval()
    b.load_state_dict(a.state_dict())
    points = torch.randn(2, 64, 3) / 3
    assert a(points).tokens.shape == (2, 8, 16)
    assert not torch.allclose(a(points).tokens, b(points).tokens)  # the ModelNet40 normalisation differs
    with pytest.raises(ConfigError, match="tokenizer.k: 81 neighbours, but the last stage reads only 16 points"):
        PointPNTokenizer(16, PointPNTokenizerConfig(n_points=64))
    with pytest.raises(ValueError, match="every cloud needs n_points=64 real points"):
        a(points, torch.tensor([64, 60]))


def test_the_max_cls_head_by_hand():
    from mmadapt.heads import ClassificationHead

    head = ClassificationHead(2, 3, pool="max_cls", mlp=[256, 256], dropout=0.5)
    kinds = [type(m).__name__ for m in head.mlp]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout"] * 2 and head.mlp[0].bias is None
    assert (head.mlp[0].in_features, head.fc.in_features, head.fc.out_features) == (4, 256, 3)
    probe = ClassificationHead(2, 4, pool="max_cls")
    with torch.no_grad():
        probe.fc.weight.copy_(torch.eye(4))
        probe.fc.bias.zero_()
    probe.norm = nn.Identity()
    tokens = torch.tensor([[[9.0, -9.0], [1.0, 5.0], [3.0, 2.0], [100.0, 100.0]]])  # [CLS], 2 tokens, padding
    mask = torch.tensor([[True, True, True, False]])
    assert probe(TokenBatch(tokens, mask)).tolist() == [[3.0, 5.0, 9.0, -9.0]]  # [max ‖ CLS], padding left out
