"""LLaVA-style projector: one layer's encoder tokens (patches or [CLS]) projected into the frozen LM's input,
peft prompt tuning and LoRA on top; token counts, values against a manual computation, gradients and
frozenness, save / load, batched generation, config errors, and the shipped recipe through the trainer."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from tiny import assert_reloads_identically, tiny_lm, tiny_vit, train_scenes_recipe

from mmadapt.adapters.llava import LLaVAProjector, LLaVAProjectorConfig
from mmadapt.adapters.lora import LoRAConfig, inject_lora
from mmadapt.backbones.vision import HFCLIPVision, OpenCLIPViT
from mmadapt.config import Config, ModelConfig
from mmadapt.data.synthetic.scene_world import render_scene, sample_scene
from mmadapt.errors import ConfigError
from mmadapt.models.perceptual_lm import PerceptualLM

RECIPE = Path(__file__).resolve().parents[1] / "adapters" / "llava" / "synthetic.yaml"
PROMPTS = ["question: what color is the circle? answer:", "caption:", "question: how many objects are there? answer:"]
N_PATCHES = 16  # tiny_vit: 32 px, 8-px patches


def images(n: int = 3, seed: int = 0, size: int = 32):
    rng = random.Random(seed)
    return [render_scene(sample_scene(rng), size, rng) for _ in range(n)]


def build(**cfg) -> PerceptualLM:
    """The projector on a tiny random OPT + ViT, with non-trivial weights (LoRA B starts at 0)."""
    cfg = LLaVAProjectorConfig(**cfg)
    cfg.validate()
    lm, vit = tiny_lm("opt"), tiny_vit()
    torch.manual_seed(1)
    model = PerceptualLM(ModelConfig(adapter=cfg), lm, vit, LLaVAProjector(cfg, lm, vit))
    with torch.no_grad():
        for p in model.adapter.parameters():
            p.normal_(0, 0.3)
    return model


VARIANTS = {
    "llava": {},
    "prompt tuning": {"features": "cls", "projector": "linear", "prompt_tuning": 4},
    "lora": {"features": "cls", "projector": "linear", "lora": LoRAConfig(r=2, alpha=4)},
    "all": {"prompt_tuning": 3, "prompt_init": "sample_vocab", "lora": LoRAConfig(r=2, alpha=4)},
}


# ---------------------------------------------------------------------------------------------- tokens
@pytest.mark.parametrize(("features", "prompt", "expected"), [("patches", 0, N_PATCHES), ("cls", 0, 1),
                                                              ("patches", 5, N_PATCHES + 5), ("cls", 10, 11)])
def test_token_counts_patches_vs_cls(features, prompt, expected):
    model = build(features=features, prompt_tuning=prompt)
    pixels = model.vision.preprocess(images(2))
    perception = model.perceive(pixels)
    assert perception.shape == (2, 1 if features == "cls" else N_PATCHES, model.lm.hidden_size)
    prefix = model.adapter.input_prefix(perception, 2, torch.float32, torch.device("cpu"))
    assert prefix.positioned and prefix.embeds.shape == (2, expected, model.lm.hidden_size)
    assert prefix.valid.tolist() == [[1] * expected] * 2 and model.adapter.n_tokens(N_PATCHES) == expected
    text = model.tokenize(PROMPTS[:2])  # positions: the image (and virtual) tokens first, the text after them
    _, _, positions, valid = model.prefill_inputs(text, perception)
    for b in range(2):
        real = positions[b][valid[b].bool()]
        assert real.tolist() == list(range(len(real))) and len(real) == expected + int(text.mask[b].sum())


@pytest.mark.parametrize("layer", [-2, -1, 0, 2])
@pytest.mark.parametrize(("features", "projector"), [("patches", "mlp2x_gelu"), ("cls", "linear"),
                                                     ("patches", "linear"), ("cls", "mlp2x_gelu")])
def test_projector_output_is_the_manual_computation_from_the_chosen_layer(layer, features, projector):
    model = build(feature_layer=layer, features=features, projector=projector, prompt_tuning=2)
    pixels = model.vision.preprocess(images(3))
    with torch.no_grad():
        states = model.vision.model(pixel_values=pixels, output_hidden_states=True).hidden_states[layer]  # [B, 17, D]
        x = states[:, :1] if features == "cls" else states[:, 1:]
        p = model.adapter.projector
        if projector == "linear":
            expected = x @ p.weight.T + p.bias
        else:
            expected = F.gelu(x @ p[0].weight.T + p[0].bias) @ p[2].weight.T + p[2].bias
        got = model.perceive(pixels)
        prefix = model.adapter.input_prefix(got, 3, torch.float32, torch.device("cpu"))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(prefix.embeds[:, : got.shape[1]], expected, rtol=1e-5, atol=1e-5)
    virtual = model.adapter.prompt.embedding.weight  # then peft's virtual tokens, the same for every sample
    torch.testing.assert_close(prefix.embeds[:, got.shape[1]:], virtual.expand(3, -1, -1), rtol=0, atol=0)


def test_hidden_states_of_every_encoder_kind_match_their_own_outputs():
    from open_clip.transformer import VisionTransformer
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 32, 32)
    vit = tiny_vit()
    clip = CLIPVisionModel(CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=24, num_hidden_layers=3,
                                            num_attention_heads=2, intermediate_size=48))
    clip = HFCLIPVision(clip, CLIPImageProcessor(), clip.post_layernorm, identity="test:tiny-clip")
    visual = VisionTransformer(image_size=32, patch_size=8, width=24, layers=3, heads=2, mlp_ratio=2.0, output_dim=16)
    oc = OpenCLIPViT(visual, None, identity="test:tiny-open-clip")
    with torch.no_grad():
        for encoder in (vit, clip):
            reference = encoder.model(pixel_values=pixels, output_hidden_states=True).hidden_states
            assert len(reference) == encoder.num_layers + 1
            for layer in range(-encoder.num_layers - 1, encoder.num_layers + 1):
                assert torch.equal(encoder.hidden_states(pixels, layer), reference[layer]), (encoder.identity, layer)
        blocks = oc.layer_tokens(pixels)  # after each block, [CLS] first
        for layer in (1, 2, 3, -1, -2, -3):
            assert torch.equal(oc.hidden_states(pixels, layer), blocks[layer - 1 if layer > 0 else layer])
        assert torch.equal(oc.hidden_states(pixels, 0), visual._embeds(pixels))
        assert oc.hidden_states(pixels, -4).shape == (2, 17, 24)
        with pytest.raises(ValueError, match=r"layer 4 is outside the encoder's hidden states \[-4, 3\]"):
            oc.hidden_states(pixels, 4)


# ----------------------------------------------------------------------------------- training, frozenness
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gradients_reach_exactly_the_trained_parts_and_the_backbones_stay_bit_identical(variant):
    model = build(**VARIANTS[variant])
    cfg = model.adapter.config
    keys = set(model.adapter.state_dict())
    projector = {"projector.weight", "projector.bias"} if cfg.projector == "linear" else \
        {f"projector.{i}.{k}" for i in (0, 2) for k in ("weight", "bias")}
    lora_keys = {k for k in keys if k.startswith("lora.")}
    assert keys - lora_keys == projector | ({"prompt.embedding.weight"} if cfg.prompt_tuning else set())
    assert len(lora_keys) == (4 * 2 * 2 if cfg.lora else 0)  # q_proj / v_proj of 4 layers, A and B
    assert all(k.endswith((".A.weight", ".B.weight")) for k in lora_keys)
    trainable = {id(p) for p in model.adapter.parameters()}
    assert {id(p) for p in model.parameters() if p.requires_grad} == trainable
    groups = model.param_groups()
    assert {id(p) for ps in groups.values() for p in ps} == trainable
    assert ("prompt" in groups) is bool(cfg.prompt_tuning)
    lm_before = {k: v.clone() for k, v in model.lm.model.state_dict().items() if "lora_" not in k}
    vit_before = {k: v.clone() for k, v in model.vision.state_dict().items()}
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    pixels = model.vision.preprocess(images(3))
    features = model.adapter.image_features(model.vision, pixels)
    assert not features.requires_grad and features.grad_fn is None  # the encoder keeps no graph
    for _ in range(3):
        opt.zero_grad()
        model(pixels, PROMPTS, ["red", "a red circle on the left.", "2"]).backward()
        grads = {id(p) for p in model.parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        opt.step()
    assert grads == trainable
    assert not model.lm.training and not model.vision.training
    lm_after, vit_after = model.lm.model.state_dict(), model.vision.state_dict()
    assert all(torch.equal(v, lm_after[k]) for k, v in lm_before.items())
    assert all(torch.equal(v, vit_after[k]) for k, v in vit_before.items())


def test_batched_generation_equals_one_at_a_time_with_one_and_two_beams():
    model = build(**VARIANTS["all"])
    pixels = model.vision.preprocess(images(3, seed=4))
    for beams in (1, 2):
        together = model.generate(pixels, PROMPTS, max_new_tokens=5, num_beams=beams)
        alone = [model.generate(pixels[i:i + 1], [p], max_new_tokens=5, num_beams=beams)[0]
                 for i, p in enumerate(PROMPTS)]
        assert together == alone and all(isinstance(t, str) for t in together)
    cands = ["red", "blue", "2", "left", "a red circle"]
    assert model.rank(pixels, PROMPTS, cands) == [model.rank(pixels[i:i + 1], [p], cands)[0]
                                                  for i, p in enumerate(PROMPTS)]


# ------------------------------------------------------------------------------- zoo models, recipes, I/O
def zoo_model_config(**adapter) -> ModelConfig:
    raw = {"lm": {"name": "zoo:tiny-opt"}, "vision": {"name": "zoo:tiny-vit", "kind": "hf_vit"},
           "adapter": {"name": "llava_projector", **adapter}}
    return Config.from_dict({"model": raw}).model


def test_save_pretrained_then_from_pretrained_gives_identical_generations(tmp_path):
    cfg = zoo_model_config(prompt_tuning=4, prompt_init="text", prompt_init_text="question answer",
                           lora={"r": 4, "alpha": 8})
    model = PerceptualLM.from_config(cfg)
    tok, table = model.lm.tokenizer, model.lm.input_embeddings.weight
    ids = tok("question answer")["input_ids"]  # peft's text init: the text's token embeddings, repeated to 4
    torch.testing.assert_close(model.adapter.prompt.embedding.weight, table[(ids * 4)[:4]], rtol=0, atol=0)
    with torch.no_grad():
        for p in model.adapter.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    pixels = model.vision.preprocess(images(3, size=64))
    before = [model.generate(pixels, PROMPTS, max_new_tokens=6, num_beams=b) for b in (1, 2)]
    model.save_pretrained(tmp_path / "adapter")
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == ["adapter_config.json",
                                                                       "adapter_model.safetensors"]
    meta = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert meta["adapter_type"] == "llava_projector" and meta["vision_model_name_or_path"] == "zoo:tiny-vit"
    assert meta["model"]["adapter"]["prompt_tuning"] == 4 and meta["model"]["adapter"]["lora"]["r"] == 4
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert set(saved) == set(model.adapter.state_dict())  # adapter weights only: no frozen LM / ViT tensor
    assert sum(v.numel() for v in saved.values()) == sum(p.numel() for p in model.trainable_parameters())
    assert_reloads_identically(model, tmp_path / "adapter", pixels, PROMPTS, before)


def test_config_errors_name_the_key():
    cases = {
        "features: grid": "model.adapter.features: expected one of ['patches', 'cls'], got 'grid'",
        "projector: mlp3x_gelu": "model.adapter.projector: expected one of ['linear', 'mlp2x_gelu']",
        "feature_layer: penultimate": "model.adapter.feature_layer: expected an integer, got 'penultimate'",
        "feature_lyer: -2": "model.adapter.feature_lyer: unknown key (did you mean 'feature_layer'?)",
        "prompt_tuning: -1": "model.adapter.prompt_tuning: expected the number of virtual tokens (>= 0), got -1",
        "prompt_init: vocab": "model.adapter.prompt_init: expected one of ['random', 'sample_vocab', 'text']",
        "{prompt_tuning: 4, prompt_init: text}": "model.adapter.prompt_init_text: required with prompt_init: text",
        "prompt_init_text: hello": "model.adapter.prompt_init_text: only used with prompt_init: text",
        "lora: {r: 0}": "model.adapter.lora.r: expected a positive integer",
        "lora: {rank: 8}": "model.adapter.lora.rank: unknown key",
    }
    for item, message in cases.items():
        adapter = {"name": "llava_projector", **yaml.safe_load(item if item.startswith("{") else "{" + item + "}")}
        with pytest.raises(ConfigError, match=re.escape(message)):
            Config.from_dict({"model": {"adapter": adapter}})
    lm, vit = tiny_lm(), tiny_vit()  # 4 blocks: hidden states -5..4
    for layer in (5, -6):
        with pytest.raises(ConfigError, match=re.escape(f"model.adapter.feature_layer: layer {layer} is outside the "
                                                        "encoder's hidden states [-5, 4]")):
            LLaVAProjector(LLaVAProjectorConfig(feature_layer=layer), lm, vit)
    gpt2 = tiny_lm("gpt2")  # fused query-key-value projections: LoRA goes on GPT-2's c_attn (it was refused)
    adapter = LLaVAProjector(LLaVAProjectorConfig(lora=LoRAConfig()), gpt2, vit)
    assert len(adapter.lora) == gpt2.num_layers and all(name.endswith("c_attn") for name in adapter.lora)
    with pytest.raises(ConfigError, match="model.adapter.lora.target_modules: the model has no q_proj / v_proj, "
                                          "query / value or fused query-key-value layers"):
        inject_lora(LoRAConfig(), torch.nn.Sequential(torch.nn.Linear(2, 2)), "model.adapter.lora")
    with pytest.raises(TypeError, match=re.escape("llava_projector reads images as pixel_values [B, 3, H, W]")):
        build().generate(torch.zeros(3, 32, 32), ["caption:"])


def test_recipe_trains_and_evaluates_through_the_tasks(scenes_root, tmp_path):
    from safetensors.torch import load_file

    result = train_scenes_recipe(RECIPE, scenes_root, tmp_path / "run", "model.adapter.prompt_tuning=2")
    assert isinstance(result.model.adapter, LLaVAProjector)
    assert set(result.records[-1]["lr"]) == {"default", "prompt"}
    saved = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1] / "adapter_model.safetensors"
    assert set(load_file(str(saved))) == {"projector.0.weight", "projector.0.bias", "projector.2.weight",
                                          "projector.2.bias", "prompt.embedding.weight"}
