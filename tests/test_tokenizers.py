"""Modality tokenizers (video, audio, point cloud, tabular, graph): values, masks, coords, errors, gradients."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
import torch
import yaml

from mmadapt import registry
from mmadapt.errors import ConfigError
from mmadapt.tokenizers.audio import AudioTokenizer, AudioTokenizerConfig
from mmadapt.tokenizers.graph import GraphTokenizer, GraphTokenizerConfig
from mmadapt.tokenizers.point_cloud import (PointCloudTokenizer, PointCloudTokenizerConfig, farthest_point_sample,
                                            knn)
from mmadapt.tokenizers.tabular import TabularTokenizer, TabularTokenizerConfig
from mmadapt.tokenizers.video import VideoTokenizer, VideoTokenizerConfig

ROOT = Path(__file__).resolve().parents[1]
D = 16
MODALITIES = ["video", "audio", "point_cloud", "tabular", "graph"]


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x [B, N, C], idx [B, ...] → x[b, idx[b]]."""
    return x[torch.arange(x.shape[0]).view(-1, *[1] * (idx.ndim - 1)), idx]


# ------------------------------------------------------------------------------------------ registry, YAML
@pytest.mark.parametrize("name", MODALITIES)
def test_registered_and_yaml_builds_the_config(name: str) -> None:
    cls = registry.get("tokenizers", name)
    raw = yaml.safe_load((ROOT / "tokenizers" / f"{name}.yaml").read_text())
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    assert set(raw) == fields, f"tokenizers/{name}.yaml keys differ from {cls.config_class.__name__}'s fields"
    assert raw["name"] == name
    tokenizer = cls(dim=128, config=cls.config_class(**raw))
    assert tokenizer.dim == 128 and tokenizer.config.name == name
    assert not (ROOT / "tokenizers" / "__init__.py").exists()


@pytest.mark.parametrize("cls, bad, message", [
    (PointCloudTokenizer, PointCloudTokenizerConfig(n_points=32, n_groups=16, group_size=64),
     "tokenizer.group_size: must be <= n_points (got 64 > 32)"),
    (VideoTokenizer, VideoTokenizerConfig(n_frames=7, tubelet_size=2), "tokenizer.n_frames:"),
    (AudioTokenizer, AudioTokenizerConfig(stride=20), "tokenizer.stride: must be <= patch_size (got 20 > 16)"),
    (TabularTokenizer, TabularTokenizerConfig(categorical=["city"]), "tokenizer.categories.city:"),
    (GraphTokenizer, GraphTokenizerConfig(lap_k=0), "tokenizer.lap_k: expected >= 1, got 0"),
])
def test_invalid_config_names_the_field(cls, bad, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        bad.validate()
    assert message.removeprefix("tokenizer.") in str(info.value)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cls(dim=D, config=bad)


# ------------------------------------------------------------------------------------------ point cloud
def test_fps_on_a_square_picks_corners_then_the_centre() -> None:
    # Square corners + centre: all corners tie as farthest from the centre, so ties go to the largest
    # (x, y, z); then the opposite corner; then the two remaining corners (tied again); the centre last.
    square = torch.tensor([[0.0, 0, 0], [-1, 1, 0], [1, -1, 0], [-1, -1, 0], [1, 1, 0]])
    expected = torch.tensor([[1.0, 1, 0], [-1, -1, 0], [1, -1, 0], [-1, 1, 0], [0, 0, 0]])
    for perm in itertools.permutations(range(5)):
        points = square[list(perm)][None]
        picks = farthest_point_sample(points, 5)
        assert torch.equal(_gather(points, picks)[0], expected), perm


def test_fps_matches_the_definition_and_ignores_point_order() -> None:
    g = torch.Generator().manual_seed(0)
    xyz = torch.randn(3, 500, 3, generator=g)
    picks = farthest_point_sample(xyz, 40)
    assert picks.shape == (3, 40) and picks.dtype == torch.long
    centres = _gather(xyz, picks)
    # Brute force: each pick is at the largest distance to the picks made before it.
    for b in range(3):
        for i in range(1, 40):
            nearest = torch.cdist(xyz[b], centres[b, :i]).amin(dim=1)
            assert torch.isclose(nearest[picks[b, i]], nearest.max())
    for _ in range(3):
        perm = torch.randperm(500, generator=g)
        assert torch.equal(_gather(xyz[:, perm], farthest_point_sample(xyz[:, perm], 40)), centres)
    # A regular grid with duplicated points: distances tie everywhere, the picked coordinates still do not move.
    grid = torch.stack(torch.meshgrid(*[torch.arange(4.0)] * 3, indexing="ij"), -1).reshape(1, -1, 3)
    grid = torch.cat([grid, grid[:, :20]], dim=1)
    reference = _gather(grid, farthest_point_sample(grid, 30))
    perm = torch.randperm(grid.shape[1], generator=g)
    assert torch.equal(_gather(grid[:, perm], farthest_point_sample(grid[:, perm], 30)), reference)


def test_knn_matches_brute_force() -> None:
    g = torch.Generator().manual_seed(1)
    points, query = torch.randn(2, 300, 3, generator=g), torch.randn(2, 25, 3, generator=g)
    idx = knn(query, points, 7)
    squared = ((query[:, :, None] - points[:, None]) ** 2).sum(-1)  # [B, M, N]
    reference = squared.argsort(dim=2)[..., :7]
    assert torch.equal(idx, reference)  # same neighbours, nearest first


def test_fps_and_knn_at_benchmark_size() -> None:
    xyz = torch.randn(8, 8192, 3, generator=torch.Generator().manual_seed(2))
    picks = farthest_point_sample(xyz, 1024)
    assert picks.shape == (8, 1024)
    assert all(len(set(row.tolist())) == 1024 for row in picks)  # distinct points in general position
    neighbours = knn(_gather(xyz, picks), xyz, 32)
    assert neighbours.shape == (8, 1024, 32)
    assert torch.equal(neighbours[..., 0], picks)  # every centre is its own nearest neighbour


def _point_tokenizer(**overrides) -> PointCloudTokenizer:
    torch.manual_seed(0)
    cfg = PointCloudTokenizerConfig(n_points=128, n_groups=16, group_size=8, hidden=8, position_hidden=8)
    return PointCloudTokenizer(dim=D, config=dataclasses.replace(cfg, **overrides)).eval()


def test_point_tokens_are_a_function_of_the_point_set() -> None:
    tok = _point_tokenizer()
    points = torch.randn(2, 128, 3, generator=torch.Generator().manual_seed(3))
    out = tok(points)
    assert out.tokens.shape == (2, 16, D) and out.coords.shape == (2, 16, 3) and out.mask.all()
    assert torch.equal(out.coords, _gather(points, farthest_point_sample(points, 16)))
    shuffled = tok(points[:, torch.randperm(128)])
    for b in range(2):  # the same set of tokens (compared sorted by their first channel)...
        order, order_shuffled = out.tokens[b, :, 0].argsort(), shuffled.tokens[b, :, 0].argsort()
        torch.testing.assert_close(shuffled.tokens[b, order_shuffled], out.tokens[b, order])
    torch.testing.assert_close(shuffled.tokens, out.tokens)  # ...and, FPS order being invariant, in order


def test_point_token_is_the_pooled_neighbourhood_plus_position() -> None:
    tok = _point_tokenizer()
    points = torch.randn(1, 128, 3, generator=torch.Generator().manual_seed(4))
    out = tok(points)
    centre = out.coords[0, 5]
    group = points[0, ((points[0] - centre) ** 2).sum(-1).argsort()[:8]] - centre  # 8 nearest, re-centred
    features = tok.point_mlp(group)
    expected = tok.group_mlp(torch.cat([features.amax(0).expand_as(features), features], -1)).amax(0)
    torch.testing.assert_close(out.tokens[0, 5], expected + tok.position_mlp(centre))


def test_point_collate_repeats_points_and_keeps_tokens() -> None:
    tok = _point_tokenizer(in_channels=6)
    g = torch.Generator().manual_seed(5)
    small, large = torch.randn(100, 6, generator=g), torch.randn(128, 6, generator=g)
    batch = tok.collate([small, large])
    assert batch["points"].shape == (2, 128, 6) and batch["lengths"].tolist() == [100, 128]
    assert torch.equal(batch["points"][0, 100:], torch.zeros(28, 6))
    out = tok(**batch)
    torch.testing.assert_close(out.tokens[0], tok(small[None]).tokens[0])  # padding is never a centre or neighbour
    torch.testing.assert_close(out.tokens[1], tok(large[None]).tokens[0])
    with pytest.raises(ValueError, match=r"needs 16 to N=128 real points .* lengths \[100, 10\]"):
        tok(batch["points"], torch.tensor([100, 10]))
    with pytest.raises(ValueError, match=r"in_channels=6\], got \[1, 128, 3\]"):
        tok(torch.randn(1, 128, 3))


# ------------------------------------------------------------------------------------------ video
def _video_tokenizer(**overrides) -> VideoTokenizer:
    torch.manual_seed(0)
    cfg = VideoTokenizerConfig(n_frames=4, image_size=24, tubelet_size=2, patch_size=8, mean=[0.4, 0.5, 0.6],
                               std=[0.2, 0.25, 0.3])
    return VideoTokenizer(dim=D, config=dataclasses.replace(cfg, **overrides))


def test_video_tubelets_count_coords_and_values() -> None:
    tok = _video_tokenizer()
    frames = torch.rand(2, 4, 3, 16, 24, generator=torch.Generator().manual_seed(6))
    out = tok(**tok.collate([tok.load(f) for f in frames]))
    assert out.tokens.shape == (2, 2 * 2 * 3, D) and out.mask.all()
    expected = [(t, r, c) for t in range(2) for r in range(2) for c in range(3)]
    assert [tuple(x) for x in out.coords[1].tolist()] == expected
    # Token (t=1, row=1, col=2): the Conv3d of the normalised 2×8×8 tubelet + the three position rows.
    mean, std = torch.tensor(tok.config.mean).view(1, 3, 1, 1), torch.tensor(tok.config.std).view(1, 3, 1, 1)
    block = (frames[1, 2:4, :, 8:16, 16:24] - mean) / std  # [t, C, p, p]
    value = torch.einsum("dctij,tcij->d", tok.proj.weight, block) + tok.proj.bias
    value = value + tok.time_position[1] + tok.row_position[1] + tok.col_position[2]
    torch.testing.assert_close(out.tokens[1, expected.index((1, 1, 2))], value, atol=1e-5, rtol=1e-5)


def test_video_positions_start_as_the_zoo_vits_2d_sincos() -> None:
    from mmadapt.zoo.tiny_vit import sincos_2d

    tok = VideoTokenizer(dim=128)  # defaults: 64 px, patch 8 → 8 × 8 grid, as zoo:tiny-vit
    grid = (tok.row_position[:, None] + tok.col_position[None, :]).reshape(64, 128)
    torch.testing.assert_close(grid, sincos_2d(8, 128))


def test_video_frame_mode_time_index() -> None:
    tok = _video_tokenizer(mode="frame")
    frames = torch.rand(1, 3, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    out = tok(frames)
    assert out.tokens.shape == (1, 3 * 2 * 2, D)
    assert out.coords[0, :, 0].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    changed = frames.clone()
    changed[:, 1] = torch.rand(3, 16, 16)
    moved = (tok(changed).tokens - out.tokens).abs().amax(dim=-1)[0] > 0
    assert moved.tolist() == [False] * 4 + [True] * 4 + [False] * 4  # only frame 1's tokens change
    # A frame equal to the mean is all zeros after normalisation: its tokens are bias + positions.
    flat = torch.tensor(tok.config.mean).view(1, 1, 3, 1, 1).expand(1, 1, 3, 16, 16)
    first = tok(flat).tokens[0, 0]
    torch.testing.assert_close(first, tok.proj.bias + tok.time_position[0] + tok.row_position[0]
                               + tok.col_position[0])


def test_video_shape_errors_name_expected_and_got() -> None:
    tok = _video_tokenizer()
    with pytest.raises(ValueError, match=r"\[1, 3, 3, 16, 16\] has T=3 frames, not a multiple of tubelet_size=2"):
        tok(torch.rand(1, 3, 3, 16, 16))
    with pytest.raises(ValueError, match=r"frame size 12×16 must be a multiple of patch_size=8"):
        tok(torch.rand(1, 2, 3, 12, 16))
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\], got \[2, 3, 16, 16\]"):
        tok(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"share \[T, 3, H, W\]"):
        tok.collate([torch.rand(2, 3, 16, 16), torch.rand(4, 3, 16, 16)])


# ------------------------------------------------------------------------------------------ audio
def _audio_tokenizer() -> AudioTokenizer:
    torch.manual_seed(0)
    return AudioTokenizer(dim=D, config=AudioTokenizerConfig(n_mels=36, max_frames=200, stride=10))


@pytest.mark.parametrize("n_mels, frames, stride", [(128, 1024, 10), (128, 98, 10), (36, 57, 10), (32, 40, 16)])
def test_audio_token_count_follows_ast(n_mels: int, frames: int, stride: int) -> None:
    tok = AudioTokenizer(dim=8, config=AudioTokenizerConfig(n_mels=n_mels, stride=stride, max_frames=1024))
    with torch.no_grad():
        out = tok(torch.randn(1, frames, n_mels))
    n_freq, n_time = (n_mels - 16) // stride + 1, (frames - 16) // stride + 1
    assert out.tokens.shape == (1, n_freq * n_time, 8)
    assert [tuple(x) for x in out.coords[0].tolist()] == list(itertools.product(range(n_freq), range(n_time)))


def test_audio_mask_is_false_exactly_for_patches_inside_padding() -> None:
    tok = _audio_tokenizer()
    g = torch.Generator().manual_seed(8)
    clips = [torch.randn(57, 36, generator=g), torch.randn(30, 36, generator=g), torch.randn(9, 36, generator=g)]
    batch = tok.collate([tok.load(c) for c in clips])
    assert batch["features"].shape == (3, 57, 36) and batch["lengths"].tolist() == [57, 30, 9]
    out = tok(**batch)
    n_freq, n_time = (36 - 16) // 10 + 1, (57 - 16) // 10 + 1
    for b, length in enumerate([57, 30, 9]):
        inside_padding = [all(f >= length for f in range(10 * j, 10 * j + 16)) for j in range(n_time)]
        assert out.mask[b].view(n_freq, n_time).tolist() == [[not p for p in inside_padding]] * n_freq
    assert out.mask.sum(1).tolist() == [3 * 5, 3 * 3, 3 * 1]
    # What the padding holds does not matter: it is reset before the patches are cut.
    garbage = batch["features"].clone()
    garbage[1, 30:] = 1e3
    torch.testing.assert_close(tok(garbage, batch["lengths"]).tokens, out.tokens)
    # A real patch: Conv2d over the normalised (mel, time) window + freq and time position rows.
    cfg = tok.config
    window = (clips[0][20:36, 10:26].T - cfg.norm_mean) / (2 * cfg.norm_std)  # mel 10..25 × frames 20..35
    value = (tok.proj.weight[:, 0] * window).sum((1, 2)) + tok.proj.bias
    value = value + tok.freq_position[1] + tok.time_position[2]
    torch.testing.assert_close(out.tokens[0, 1 * n_time + 2], value, atol=1e-5, rtol=1e-5)


def test_audio_shape_errors() -> None:
    tok = _audio_tokenizer()
    with pytest.raises(ValueError, match=r"\[B, frames, n_mels=36\], got \[1, 50, 40\]"):
        tok(torch.randn(1, 50, 40))
    with pytest.raises(ValueError, match=r"has 8 frames, expected patch_size=16 <= frames"):
        tok(torch.randn(1, 8, 36))
    with pytest.raises(ValueError, match=r"sample 1 has shape \[20, 30\]"):
        tok.collate([torch.randn(20, 36), torch.randn(20, 30)])


# ------------------------------------------------------------------------------------------ tabular
def _tabular_tokenizer() -> TabularTokenizer:
    torch.manual_seed(0)
    cfg = TabularTokenizerConfig(numeric=["age", "income"], categorical=["colour", "city"],
                                 categories={"colour": ["red", "green", "blue"], "city": ["paris", "lima"]},
                                 numeric_mean=[40.0, 1000.0], numeric_std=[10.0, 500.0])
    return TabularTokenizer(dim=D, config=cfg)


def test_tabular_tokens_per_column() -> None:
    tok = _tabular_tokenizer()
    rows = [{"numeric": [50.0, float("nan")], "categorical": [2, 0]},
            {"numeric": [30.0, 1500.0], "categorical": [3, 1]}]
    out = tok(**tok.collate([tok.load(r) for r in rows]))
    assert out.tokens.shape == (2, 4, D) and out.mask.all() and out.coords[0, :, 0].tolist() == [0, 1, 2, 3]
    t, col = out.tokens, tok.column_embed
    torch.testing.assert_close(t[0, 0], 1.0 * tok.numeric_weight[0] + tok.numeric_bias[0] + col[0])  # (50-40)/10
    torch.testing.assert_close(t[1, 1], 1.0 * tok.numeric_weight[1] + tok.numeric_bias[1] + col[1])
    assert torch.equal(t[0, 1], tok.missing_token[1] + col[1])  # missing numeric: exactly the column's missing token
    emb = tok.category_embed.weight  # colour rows 0..3, city rows 4..6 (row 0 of each: missing / unseen)
    assert torch.equal(t[0, 2], emb[2] + col[2]) and torch.equal(t[1, 2], emb[3] + col[2])
    assert torch.equal(t[0, 3], emb[4] + col[3]) and torch.equal(t[1, 3], emb[5] + col[3])


def test_tabular_one_column_change_moves_one_token() -> None:
    tok = _tabular_tokenizer()
    numeric, categorical = torch.tensor([[45.0, 800.0]]), torch.tensor([[1, 2]])
    base = tok(numeric, categorical).tokens
    for column, (num, cat) in enumerate([([47.0, 800.0], [1, 2]), ([45.0, float("nan")], [1, 2]),
                                         ([45.0, 800.0], [0, 2]), ([45.0, 800.0], [1, 1])]):
        changed = (tok(torch.tensor([num]), torch.tensor([cat])).tokens != base).any(-1)[0]
        assert changed.tolist() == [c == column for c in range(4)], column


def test_tabular_errors_name_the_column() -> None:
    tok = _tabular_tokenizer()
    with pytest.raises(ValueError, match=r"column 'city' has code 3 in row 1, expected 0..2"):
        tok(torch.zeros(2, 2), torch.tensor([[1, 1], [1, 3]]))
    with pytest.raises(ValueError, match=r"numeric must be \[B, 2\] \(columns \['age', 'income'\]\), got \[2, 3\]"):
        tok(torch.zeros(2, 3), torch.ones(2, 2, dtype=torch.long))


# ------------------------------------------------------------------------------------------ graph
def _graph_inputs() -> dict[str, torch.Tensor]:
    """A 3-node path graph padded to 5 slots next to a 5-node graph."""
    g = torch.Generator().manual_seed(9)
    lap_pe = torch.randn(2, 5, 4, generator=g)
    node_mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    lap_pe[0, 3:] = 0
    return {"degree": torch.tensor([[1, 2, 1, 0, 0], [4, 1, 7, 30, 2]]), "lap_pe": lap_pe, "node_mask": node_mask,
            "node_features": torch.randn(2, 5, 3, generator=g) * node_mask[..., None]}


def _graph_tokenizer(**overrides) -> GraphTokenizer:
    torch.manual_seed(0)
    cfg = GraphTokenizerConfig(node_feature_dim=3, max_degree=6, lap_k=4)
    return GraphTokenizer(dim=D, config=dataclasses.replace(cfg, **overrides))


def test_graph_padding_degree_clamp_and_values() -> None:
    tok = _graph_tokenizer().eval()
    inputs = _graph_inputs()
    out = tok(**inputs)
    assert torch.equal(out.mask, inputs["node_mask"]) and out.coords is None
    assert torch.equal(out.tokens[0, 3:], torch.zeros(2, D))  # padded slots: zero tokens
    alone = tok(**{k: v[:1, :3] for k, v in inputs.items()})  # the small graph without padding
    torch.testing.assert_close(alone.tokens[0], out.tokens[0, :3])
    expected = (tok.feature_proj(inputs["node_features"][1, 2]) + tok.degree_embed.weight[6]
                + tok.pe_proj(inputs["lap_pe"][1, 2]))  # degree 7 clamps to max_degree 6
    torch.testing.assert_close(out.tokens[1, 2], expected)
    degrees = torch.tensor([[5, 6, 7, 100]])
    same = tok(degrees, torch.zeros(1, 4, 4), torch.ones(1, 4, dtype=torch.bool), torch.zeros(1, 4, 3)).tokens[0]
    assert not torch.equal(same[0], same[1]) and torch.equal(same[1], same[2]) and torch.equal(same[1], same[3])


def test_graph_without_features_uses_the_constant_feature() -> None:
    tok = _graph_tokenizer(node_feature_dim=0).eval()
    inputs = _graph_inputs()
    del inputs["node_features"]
    out = tok(**inputs)
    expected = tok.constant_feature + tok.degree_embed.weight[1] + tok.pe_proj(inputs["lap_pe"][1, 1])
    torch.testing.assert_close(out.tokens[1, 1], expected)
    with pytest.raises(ValueError, match=r"node_feature_dim = 0"):
        tok(**_graph_inputs())


def test_graph_lap_pe_sign_flip_only_in_training() -> None:
    tok = _graph_tokenizer()
    inputs = _graph_inputs()
    tok.eval()
    reference = tok(**inputs).tokens
    assert all(torch.equal(tok(**inputs).tokens, reference) for _ in range(3))
    # Train mode: every call equals the eval-mode tokens of the same graph with some eigenvector signs flipped.
    by_signs = {}
    for signs in itertools.product([1.0, -1.0], repeat=4):
        flipped = dict(inputs, lap_pe=inputs["lap_pe"] * torch.tensor(signs))
        by_signs[signs] = tok(**flipped).tokens
    tok.train()
    torch.manual_seed(10)
    seen = set()
    for _ in range(12):
        tokens = tok(**inputs).tokens
        for b in range(2):
            match = [s for s, t in by_signs.items() if torch.allclose(tokens[b], t[b], atol=1e-6)]
            assert len(match) == 1
            seen.add(match[0])
    assert len(seen) > 4  # signs are drawn per graph and per eigenvector, not once
    assert not _graph_tokenizer(sign_flip=False).train()(**inputs).tokens.isnan().any()


def test_graph_collate_with_loaded_graphs() -> None:
    io_graph = pytest.importorskip("mmadapt.io.graph")
    tok = _graph_tokenizer(node_feature_dim=0, lap_k=2).eval()
    path = io_graph.Graph(num_nodes=3, edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]))
    star = io_graph.Graph(num_nodes=5, edge_index=torch.tensor([[0, 0, 0, 0, 1, 2, 3, 4], [1, 2, 3, 4, 0, 0, 0, 0]]))
    batch = tok.collate([tok.load(path), tok.load(star)])
    assert batch["degree"].tolist() == [[1, 2, 1, 0, 0], [4, 1, 1, 1, 1]]
    assert batch["node_mask"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert batch["lap_pe"].shape == (2, 5, 2) and torch.equal(batch["lap_pe"][0, 3:], torch.zeros(2, 2))
    assert tok(**batch).tokens.shape == (2, 5, D)


# ------------------------------------------------------------------------------------------ files → tokens
def test_video_file_to_tokens(tmp_path: Path) -> None:
    io_video = pytest.importorskip("mmadapt.io.video")
    pixels = torch.zeros(6, 32, 32, 3, dtype=torch.uint8)
    for t in range(6):
        pixels[t, :, 4 * t:4 * t + 8] = 255  # a white bar moving right
    tok = _video_tokenizer(n_frames=4, image_size=32)
    clip = tok.load(io_video.write_video(tmp_path / "bar.mp4", pixels, fps=6))
    assert clip.shape == (4, 3, 32, 32) and 0 <= clip.min() and clip.max() <= 1
    out = tok(**tok.collate([clip, clip]))
    assert out.tokens.shape == (2, 2 * 4 * 4, D) and torch.equal(out.tokens[0], out.tokens[1])


def test_audio_file_to_tokens(tmp_path: Path) -> None:
    io_audio = pytest.importorskip("mmadapt.io.audio")
    t = torch.arange(16000) / 16000
    tone = io_audio.write_audio(tmp_path / "tone.wav", 0.5 * torch.sin(2 * torch.pi * 440 * t), 16000)
    tok = AudioTokenizer(dim=D, config=AudioTokenizerConfig(max_frames=64))
    features = tok.load(tone)
    assert features.shape == (64, 128)  # 98 frames in 1 s, cut to max_frames
    batch = tok.collate([features, tok.load(0.1 * torch.randn(4000))])  # a file and a 0.25 s waveform
    assert batch["lengths"].tolist() == [64, 23]
    out = tok(**batch)
    assert out.tokens.shape == (2, 12 * 5, D) and out.mask.sum(1).tolist() == [60, 12 * 3]


def test_point_cloud_file_to_tokens(tmp_path: Path) -> None:
    io_points = pytest.importorskip("mmadapt.io.point_cloud")
    sphere = torch.nn.functional.normalize(torch.randn(500, 3, generator=torch.Generator().manual_seed(13)), dim=1)
    tok = _point_tokenizer()
    points = tok.load(io_points.write_ply(tmp_path / "sphere.ply", 3 * sphere + 1))
    assert points.shape == (128, 3)
    radii = points.norm(dim=1)  # normalised: centred on the mean (≈ the sphere's centre), farthest at 1
    assert radii.max() <= 1 + 1e-5 and radii.min() > 0.8
    assert tok(**tok.collate([points])).tokens.shape == (1, 16, D)


def test_tabular_file_to_tokens(tmp_path: Path) -> None:
    io_table = pytest.importorskip("mmadapt.io.table")
    csv = tmp_path / "train.csv"
    csv.write_text("age,colour,label\n20,red,a\n,blue,b\n40,red,a\n")
    schema = io_table.TableSchema(numeric=["age"], categorical=["colour"], target="label")
    cfg = TabularTokenizerConfig.from_table(io_table.load_table(csv, schema))
    assert cfg.numeric_mean == [30.0] and cfg.numeric_std == [10.0] and cfg.categories["colour"] == ["blue", "red"]
    tok = TabularTokenizer(dim=D, config=cfg)
    table = tok.load(csv)
    batch = tok.collate([table])
    assert batch["categorical"][:, 0].tolist() == [2, 1, 2]
    out = tok(**batch)
    assert torch.equal(out.tokens[1, 0], tok.missing_token[0] + tok.column_embed[0])
    torch.testing.assert_close(out.tokens[2, 0], tok.numeric_weight[0] + tok.numeric_bias[0] + tok.column_embed[0])


# ------------------------------------------------------------------------------------------ gradients
def _tokenizer_and_inputs(name: str):
    g = torch.Generator().manual_seed(11)
    if name == "video":
        return _video_tokenizer(), {"frames": torch.rand(2, 4, 3, 24, 24, generator=g)}
    if name == "audio":
        return _audio_tokenizer(), {"features": torch.randn(2, 40, 36, generator=g), "lengths": torch.tensor([40, 20])}
    if name == "point_cloud":
        return _point_tokenizer(), {"points": torch.randn(2, 128, 3, generator=g)}
    if name == "tabular":
        return _tabular_tokenizer(), {"numeric": torch.tensor([[41.0, float("nan")], [35.0, 900.0]]),
                                      "categorical": torch.tensor([[0, 1], [3, 2]])}
    return _graph_tokenizer(), _graph_inputs()


@pytest.mark.parametrize("name", MODALITIES)
def test_gradients_reach_every_parameter(name: str) -> None:
    tok, inputs = _tokenizer_and_inputs(name)
    tok.train()
    out = tok(**inputs)
    weights = torch.randn(out.tokens.shape, generator=torch.Generator().manual_seed(12))
    (out.tokens * weights * out.mask[..., None]).sum().backward()
    for key, param in tok.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, f"{name}: no gradient for {key}"
        assert torch.isfinite(param.grad).all(), f"{name}: non-finite gradient for {key}"
