"""The vision side of "any model": tiny random HF ViT, CLIP-vision, SigLIP-vision, DINOv2 (with and without
register tokens) and open_clip encoders, each saved to a local directory in its library's own format and named
by path in a recipe, through eP-ALM and the LLaVA projector — two training steps, greedy and beam generation,
save → load identical generations — plus the pieces that make each one work: which tokens are prefix tokens,
what stands for [CLS] where there is none, the shared-encoder path, and clear refusals where a method needs
what an encoder does not have."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from mmadapt.errors import ConfigError
from tiny import assert_generates_and_reloads, scenes_vqa_config, tiny_vit, word_tokenizer

D = 16


def _save_hf(kind: str, folder, **extra) -> None:
    from transformers import (BitImageProcessor, CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel,
                              Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel,
                              SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel)

    torch.manual_seed(0)
    common = dict(hidden_size=D, num_hidden_layers=2, num_attention_heads=2, patch_size=8)
    if kind == "hf_vit":
        vit = tiny_vit(layers=2, hidden=D)
        model, proc = vit.model, vit.processor
    elif kind == "hf_clip_vision":
        model = CLIPVisionModel(CLIPVisionConfig(image_size=32, intermediate_size=2 * D, **common))
        proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    elif kind == "hf_siglip_vision":
        model = SiglipVisionModel(SiglipVisionConfig(image_size=32, intermediate_size=2 * D, **common, **extra))
        proc = SiglipImageProcessor(size={"height": 32, "width": 32})
    else:  # DINOv2, pretrained on a larger grid (48 px: 6 × 6) than its processor's crop (32 px: 4 × 4), as the
        # real one (518 px, 224)
        registers = extra.pop("num_register_tokens", 0)
        if registers:
            model = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(image_size=48, mlp_ratio=2,
                                                                       num_register_tokens=registers, **common))
        else:
            model = Dinov2Model(Dinov2Config(image_size=48, mlp_ratio=2, **common))
        proc = BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    model.save_pretrained(folder)
    proc.save_pretrained(folder)


def _save_open_clip(folder) -> None:
    """An open_clip model in open_clip's own local layout: open_clip_config.json + open_clip_model.safetensors."""
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    model_cfg = {"embed_dim": 16,
                 "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
                 "text_cfg": {"context_length": 16, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1}}
    torch.manual_seed(0)
    model = CLIP(**model_cfg)
    folder.mkdir(parents=True)
    (folder / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": model_cfg, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))


#: case → (backbone kind, how its directory is written)
ENCODERS = {
    "hf_vit": ("hf_vit", lambda f: _save_hf("hf_vit", f)),
    "hf_clip_vision": ("hf_clip_vision", lambda f: _save_hf("hf_clip_vision", f)),
    "hf_siglip_vision": ("hf_siglip_vision", lambda f: _save_hf("hf_siglip_vision", f)),
    "hf_siglip_vision_headless": ("hf_siglip_vision", lambda f: _save_hf("hf_siglip_vision", f, vision_use_head=False)),
    "hf_dinov2": ("hf_dinov2", lambda f: _save_hf("hf_dinov2", f)),
    "hf_dinov2_registers": ("hf_dinov2", lambda f: _save_hf("hf_dinov2", f, num_register_tokens=2)),
    "open_clip": ("open_clip", _save_open_clip),
}
METHODS = {"epalm": {"name": "epalm", "n_injected": 2, "prompt_len": 3, "prompt_mlp_hidden": 8},
           "llava_projector": {"name": "llava_projector"}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny scenes, a tiny OPT directory, and one local directory per encoder."""
    from transformers import OPTConfig, OPTForCausalLM

    from mmadapt.data.synthetic.scenes import write_scenes_dataset

    root = tmp_path_factory.mktemp("vision_families")
    write_scenes_dataset(root / "scenes", "train", 8, seed=0, image_size=32)
    write_scenes_dataset(root / "scenes", "val", 2, seed=0, image_size=32)
    tok = word_tokenizer()
    torch.manual_seed(0)
    OPTForCausalLM(OPTConfig(vocab_size=len(tok), hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                             num_attention_heads=2, max_position_embeddings=128, word_embed_proj_dim=32,
                             pad_token_id=0, bos_token_id=2, eos_token_id=2)).save_pretrained(root / "lm")
    tok.save_pretrained(root / "lm")
    for case, (_, write) in ENCODERS.items():
        write(root / case)
    return root


def _encoder(world, case):
    from mmadapt.backbones.vision import load_vision_encoder

    return load_vision_encoder(ENCODERS[case][0], str(world / case))


def _images(n: int = 2) -> list[Image.Image]:
    g = torch.Generator().manual_seed(0)
    return [Image.fromarray((torch.rand(32, 32, 3, generator=g) * 255).to(torch.uint8).numpy()) for _ in range(n)]


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("case", list(ENCODERS))
def test_every_encoder_trains_generates_and_reloads_identically(world, case, method):
    import mmadapt

    cfg = scenes_vqa_config(world / "scenes", {"lm": {"name": str(world / "lm")}, "adapter": METHODS[method],
                                               "vision": {"name": str(world / case), "kind": ENCODERS[case][0]}},
                            world / "runs" / case / method)
    model = mmadapt.build_model(cfg)
    frozen = {k: v.clone() for k, v in model.vision.state_dict().items()}
    trained = {k: v.clone() for k, v in model.adapter.state_dict().items()}
    result = mmadapt.train(cfg, model=model, quiet=True)
    assert len(result.records) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in result.records)
    assert all(torch.equal(v, model.vision.state_dict()[k]) for k, v in frozen.items())  # the encoder is frozen
    assert any(not torch.equal(v, model.adapter.state_dict()[k]) for k, v in trained.items())  # the adapter learns
    assert_generates_and_reloads(model, cfg, world / "adapters" / case / method)


# ------------------------------------------------------------------------------------------- the pieces
@pytest.mark.parametrize("case, prefix", [("hf_vit", 1), ("hf_clip_vision", 1), ("hf_siglip_vision", 0),
                                          ("hf_dinov2", 1), ("hf_dinov2_registers", 3), ("open_clip", 1)])
def test_hidden_states_are_the_models_own_and_the_projector_reads_exactly_the_patches(world, case, prefix):
    """Every encoder's layer -2 equals its own ``output_hidden_states`` entry; the LLaVA projector's features are
    its 16 patch tokens (4 × 4 patches of 8 px), after ``n_prefix_tokens`` prefix tokens ([CLS], registers)."""
    from mmadapt.adapters.llava import LLaVAProjector, LLaVAProjectorConfig
    from tiny import tiny_lm

    enc = _encoder(world, case)
    assert enc.n_prefix_tokens == prefix and enc.num_layers == 2
    pixels = enc.preprocess(_images())
    assert pixels.shape == (2, 3, 32, 32)
    hidden = enc.hidden_states(pixels, -2)
    assert hidden.shape == (2, prefix + 16, enc.hidden_size)
    if case != "open_clip":
        torch.testing.assert_close(hidden, enc.model(pixel_values=pixels, output_hidden_states=True).hidden_states[-2])
    features = LLaVAProjector(LLaVAProjectorConfig(), tiny_lm(), enc).image_features(enc, pixels)
    torch.testing.assert_close(features, hidden[:, prefix:])


def test_siglip_summarises_each_layer_with_its_own_pooling_head_or_the_mean_without_one(world):
    """SigLIP has no [CLS]: layer_cls applies its attention-pooling head to each layer's normed tokens — for the
    last layer SigLIP's own ``pooler_output`` — and, without a head, the mean of those tokens."""
    enc = _encoder(world, "hf_siglip_vision")
    pixels = enc.preprocess(_images())
    summary = enc.layer_cls(pixels)
    assert summary.shape == (2, 2, D)
    out = enc.model(pixel_values=pixels, output_hidden_states=True)
    torch.testing.assert_close(summary[:, -1], out.pooler_output)
    torch.testing.assert_close(summary[:, 0], enc.model.head(enc.model.post_layernorm(out.hidden_states[1])))

    headless = _encoder(world, "hf_siglip_vision_headless")
    out = headless.model(pixel_values=pixels, output_hidden_states=True)
    means = [headless.model.post_layernorm(h).mean(dim=1) for h in out.hidden_states[1:]]
    torch.testing.assert_close(headless.layer_cls(pixels), torch.stack(means, dim=1))


@pytest.mark.parametrize("case", ["hf_dinov2", "hf_dinov2_registers"])
def test_dinov2_layer_cls_is_its_normed_cls_token_of_each_layer(world, case):
    enc = _encoder(world, case)
    pixels = enc.preprocess(_images())
    out = enc.model(pixel_values=pixels, output_hidden_states=True)
    cls = enc.layer_cls(pixels)
    torch.testing.assert_close(cls[:, -1], out.pooler_output)  # DINOv2's pooled output = layernorm of the last [CLS]
    torch.testing.assert_close(cls[:, 0], enc.model.layernorm(out.hidden_states[1][:, 0]))
    assert enc.position_table().shape == (6, 6, D)  # the pretrained 48-px grid, interpolated by the model to 4 × 4


@pytest.mark.parametrize("case", ["hf_dinov2", "hf_dinov2_registers"])
def test_dinov2_as_a_shared_encoder_reproduces_itself_and_ignores_padding(world, case):
    """run_blocks on DINOv2's own patch tokens prepends [CLS] and the registers, and gives its own final tokens
    ([CLS] and patches: the registers stay inside); padded tokens change nothing for the real ones."""
    enc = _encoder(world, case)
    pixels = enc.preprocess(_images())
    tokens = enc.patch_tokens(pixels)
    B, N, _ = tokens.shape
    assert N == 16
    hidden, mask = enc.run_blocks(tokens, torch.ones(B, N, dtype=torch.bool))
    last = enc.final_norm(enc.layer_tokens(pixels)[-1])
    P = enc.n_prefix_tokens
    torch.testing.assert_close(hidden, torch.cat([last[:, :1], last[:, P:]], dim=1), atol=1e-5, rtol=1e-4)
    padded = torch.cat([tokens, torch.randn(B, 3, D) * 10], dim=1)
    pmask = torch.cat([torch.ones(B, N, dtype=torch.bool), torch.zeros(B, 3, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(enc.run_blocks(padded, pmask)[0][:, : 1 + N], hidden, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("case", ["hf_vit", "hf_clip_vision", "hf_siglip_vision", "hf_dinov2", "open_clip"])
def test_ffn_output_is_the_last_module_of_the_feed_forward_branch(world, case):
    """Adding the recorded output of ``ffn_output(block)`` once more (a forward hook returning twice it) moves
    the block's output by exactly that much: it is the branch just before the residual sum (after layer scale)."""
    enc = _encoder(world, case)
    block = enc.blocks[0]
    hidden = torch.randn(2, 17, enc.hidden_size)
    run = lambda: block(hidden) if case == "open_clip" else block(hidden, None)  # noqa: E731
    plain = run()
    seen = []
    handle = enc.ffn_output(block).register_forward_hook(lambda m, a, out: seen.append(out) or 2 * out)
    doubled = run()
    handle.remove()
    plain, doubled = (x[0] if isinstance(x, tuple) else x for x in (plain, doubled))
    torch.testing.assert_close(doubled - plain, seen[0], atol=1e-5, rtol=1e-4)


def test_what_siglip_lacks_is_refused_in_one_line(world):
    from mmadapt.adapters.llava import LLaVAProjector, LLaVAProjectorConfig
    from mmadapt.config import Config
    from tiny import tiny_lm

    enc = _encoder(world, "hf_siglip_vision")
    with pytest.raises(ConfigError, match="model.adapter.features: 'cls' needs an encoder with a \\[CLS\\] token"):
        LLaVAProjector(LLaVAProjectorConfig(features="cls"), tiny_lm(), enc)
    with pytest.raises(ConfigError, match="hf_siglip_vision has no \\[CLS\\] token to prepend"):
        enc.run_blocks(torch.zeros(1, 3, D), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ConfigError, match="encoder.kind: hf_siglip_vision has no \\[CLS\\] token"):
        Config.from_dict({"model": {"assembly": "adapted_encoder", "tokenizer": {"name": "point_cloud"},
                                    "encoder": {"name": str(world / "hf_siglip_vision"), "kind": "hf_siglip_vision"}},
                          "tasks": {}})
    from mmadapt.backbones.vision import load_vision_encoder

    with pytest.raises(ConfigError, match="model_type 'siglip_vision_model' is not DINOv2"):
        load_vision_encoder("hf_dinov2", str(world / "hf_siglip_vision"))


def test_loaded_siglip_and_dinov2_models_wrap(world):
    from transformers import AutoImageProcessor, AutoModel, SiglipVisionModel

    import mmadapt
    from tiny import tiny_lm

    lm = tiny_lm()
    for case, kind, load in [("hf_siglip_vision", "hf_siglip_vision", SiglipVisionModel.from_pretrained),
                             ("hf_dinov2_registers", "hf_dinov2", AutoModel.from_pretrained)]:
        vision = load(world / case)
        model = mmadapt.wrap(lm.model, {"name": "llava_projector"}, tokenizer=lm.tokenizer, lm_name="tiny-opt",
                             vision=vision, processor=AutoImageProcessor.from_pretrained(world / case))
        assert model.config.vision.kind == kind and model.vision.model is vision
        assert model.vision.n_prefix_tokens == (0 if case == "hf_siglip_vision" else 3)


def test_open_clip_reads_its_own_local_directory_and_names_what_is_missing(world, tmp_path):
    from mmadapt.backbones.vision import OpenCLIPViT, load_vision_encoder

    enc = load_vision_encoder("open_clip", str(world / "open_clip"))
    again = OpenCLIPViT.from_pretrained(str(world / "open_clip"))
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), again.state_dict().values()))
    with pytest.raises(ConfigError, match="no open_clip_config.json"):
        OpenCLIPViT.from_pretrained(str(tmp_path))
    with pytest.raises(ConfigError, match="no such local directory"):
        OpenCLIPViT.from_pretrained(str(tmp_path / "missing"))


@pytest.mark.parametrize("cls", ["trained", "encoder"])
def test_any2point_runs_on_dinov2_one_of_its_authors_source_models(world, tmp_path, cls):
    """Any2Point through DINOv2's blocks (position table: its pretrained 6 × 6 grid; FFN hook: layer_scale2):
    three steps train only the adapter, tokenizer and head; the encoder stays bit-identical."""
    import mmadapt
    from test_any2point import _any2point_model, _cloud

    cfg, model = _any2point_model(world / "hf_dinov2", tmp_path, kind="hf_dinov2", cls=cls)
    frozen = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    assert model.encode(points=_cloud()).tokens.shape == (2, 1 + 16, D)
    result = mmadapt.train(cfg, model=model, quiet=True)
    assert len(result.records) == 3 and all(torch.isfinite(torch.tensor(r["loss"])) for r in result.records)
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in frozen.items())
