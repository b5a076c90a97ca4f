"""Frozen backbones load through their real loaders (``from_pretrained`` on a local directory, open_clip's
factory) and expose what adapters read: decoder layers, per-layer [CLS] tokens after the final norm."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from tiny import word_tokenizer


def _images(n: int = 2, size: int = 40) -> list[Image.Image]:
    g = torch.Generator().manual_seed(0)
    return [Image.fromarray((torch.rand(size, size + 8, 3, generator=g) * 255).byte().numpy()) for _ in range(n)]


def _assert_frozen(module: torch.nn.Module) -> None:
    assert all(not p.requires_grad for p in module.parameters())
    module.train()
    assert not any(m.training for m in module.modules()), "a frozen backbone must stay in eval mode"


@pytest.mark.parametrize("kind", ["opt", "gpt2", "llama"])
def test_causal_lm_loads_by_path_and_exposes_its_layers(kind, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

    from mmadapt.backbones.lm import CausalLM

    tok = word_tokenizer()
    common = dict(vocab_size=len(tok), bos_token_id=2, eos_token_id=2, pad_token_id=0)
    if kind == "opt":
        hf = OPTForCausalLM(OPTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, ffn_dim=64,
                                      word_embed_proj_dim=32, max_position_embeddings=64, **common))
    elif kind == "gpt2":
        hf = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=3, n_head=2, n_positions=64, **common))
    else:
        hf = LlamaForCausalLM(LlamaConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                          intermediate_size=64, max_position_embeddings=64, **common))
    hf.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)

    lm = CausalLM.from_pretrained(str(tmp_path))
    assert lm.num_layers == 3 and lm.hidden_size == 32 and len(lm.layers) == 3
    assert (lm.position_embedding is None) == (kind == "llama")  # rotary: nothing to strip from prompts
    _assert_frozen(lm)
    ids = torch.tensor([tok("what color is the circle ?")["input_ids"]])
    L = ids.shape[1]
    mask = torch.zeros(1, 1, L, L).masked_fill(~torch.ones(L, L, dtype=torch.bool).tril(), torch.finfo(torch.float32).min)
    hidden = lm.hidden_states(lm.input_embeddings(ids), mask, torch.arange(L)[None]).last_hidden_state
    reference = lm.model(input_ids=ids).logits
    torch.testing.assert_close(lm.logits(hidden), reference, rtol=1e-4, atol=1e-4)


def test_unknown_lm_architecture_is_a_config_error():
    from transformers import BloomConfig, BloomForCausalLM

    from mmadapt.backbones.lm import CausalLM
    from mmadapt.errors import ConfigError

    model = BloomForCausalLM(BloomConfig(vocab_size=50, hidden_size=16, n_layer=1, n_head=2))
    with pytest.raises(ConfigError, match="architecture 'bloom' cannot be used: its base model takes no position_ids"):
        CausalLM(model, word_tokenizer())


def test_hf_clip_vision_layer_cls_is_the_post_layernorm_of_each_block(tmp_path):
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    from mmadapt.backbones.vision import HFCLIPVision

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=24, intermediate_size=48,
                           num_hidden_layers=3, num_attention_heads=2, projection_dim=16)
    CLIPVisionModel(cfg).save_pretrained(tmp_path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path)

    enc = HFCLIPVision.from_pretrained(str(tmp_path))
    _assert_frozen(enc)
    pixels = enc.preprocess(_images())
    assert pixels.shape == (2, 3, 32, 32)
    cls = enc.layer_cls(pixels)
    assert cls.shape == (2, 3, 24) and enc.num_layers == 3 and enc.hidden_size == 24
    out = enc.model(pixel_values=pixels, output_hidden_states=True)
    torch.testing.assert_close(cls[:, -1], enc.final_norm(out.hidden_states[-1][:, 0]))
    torch.testing.assert_close(cls[:, -1], out.pooler_output)  # CLIP's own pooled output = normed last [CLS]
    tokens = enc.layer_tokens(pixels)
    assert len(tokens) == 3 and tokens[0].shape == (2, 1 + 16, 24)


def test_open_clip_vit_layer_cls_matches_ln_post(tmp_path):
    import open_clip

    from mmadapt.backbones.vision import OpenCLIPViT

    config = {"embed_dim": 16,
              "vision_cfg": {"image_size": 32, "layers": 3, "width": 32, "head_width": 16, "patch_size": 8},
              "text_cfg": {"context_length": 16, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "mmadapt-test-vit.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path)
    torch.manual_seed(0)
    enc = OpenCLIPViT.from_pretrained("mmadapt-test-vit", pretrained=None)
    _assert_frozen(enc)
    pixels = enc.preprocess(_images())
    assert pixels.shape == (2, 3, 32, 32)
    cls = enc.layer_cls(pixels)
    assert cls.shape == (2, 3, 32) and enc.num_layers == 3
    tokens = enc.layer_tokens(pixels)
    assert len(tokens) == 3 and tokens[-1].shape == (2, 1 + 16, 32)
    torch.testing.assert_close(cls, torch.stack([enc.visual.ln_post(t[:, 0]) for t in tokens], dim=1))
    # the visual tower's own pooled output is ln_post([CLS] of the last block), projected
    torch.testing.assert_close(enc.visual(pixels), cls[:, -1] @ enc.visual.proj)


# ------------------------------------------------------------------ the encoder as a shared transformer
def _hf_vit(tmp_path):
    from tiny import tiny_vit

    return tiny_vit(layers=3)


def _hf_clip(tmp_path):
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    from mmadapt.backbones.vision import HFCLIPVision

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=24, intermediate_size=48,
                           num_hidden_layers=3, num_attention_heads=2, projection_dim=16)
    CLIPVisionModel(cfg).save_pretrained(tmp_path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    return HFCLIPVision.from_pretrained(str(tmp_path))


def _open_clip(tmp_path):
    import open_clip

    from mmadapt.backbones.vision import OpenCLIPViT

    config = {"embed_dim": 16,
              "vision_cfg": {"image_size": 32, "layers": 3, "width": 32, "head_width": 16, "patch_size": 8},
              "text_cfg": {"context_length": 16, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "mmadapt-test-vit2.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path)
    torch.manual_seed(0)
    return OpenCLIPViT.from_pretrained("mmadapt-test-vit2", pretrained=None)


def _own_patch_tokens(enc, pixels):
    """The encoder's own patch embedding + position embeddings of the patches (what run_blocks bypasses)."""
    from mmadapt.backbones.vision import HFCLIPVision, HFViT

    if isinstance(enc, HFViT):
        emb = enc.model.embeddings
        return emb.patch_embeddings(pixels) + emb.position_embeddings[:, 1:]
    if isinstance(enc, HFCLIPVision):
        emb = enc._tower.embeddings
        return emb.patch_embedding(pixels).flatten(2).transpose(1, 2) + emb.position_embedding.weight[1:]
    v = enc.visual
    return v.conv1(pixels).flatten(2).transpose(1, 2) + v.positional_embedding[1:]


@pytest.mark.parametrize("build", [_hf_vit, _hf_clip, _open_clip], ids=["hf_vit", "hf_clip_vision", "open_clip"])
def test_run_blocks_reproduces_the_encoder_and_ignores_padding(build, tmp_path):
    """Fed the encoder's own patch tokens, run_blocks gives the encoder's own final tokens; padded tokens
    (mask False) change nothing for the real ones, whatever they hold; gradients reach the input tokens."""
    enc = build(tmp_path)
    pixels = enc.preprocess(_images())
    tokens = _own_patch_tokens(enc, pixels)
    B, N, D = tokens.shape
    hidden, mask = enc.run_blocks(tokens, torch.ones(B, N, dtype=torch.bool))
    assert hidden.shape == (B, 1 + N, D) and mask.all()
    last = enc.layer_tokens(pixels)[-1]
    torch.testing.assert_close(hidden, enc.final_norm(last), atol=1e-5, rtol=1e-4)

    junk = torch.randn(B, 5, D) * 10
    padded = torch.cat([tokens, junk], dim=1).requires_grad_(True)
    pmask = torch.cat([torch.ones(B, N, dtype=torch.bool), torch.zeros(B, 5, dtype=torch.bool)], dim=1)
    hidden_p, mask_p = enc.run_blocks(padded, pmask)
    assert mask_p.shape == (B, 1 + N + 5) and not mask_p[:, -5:].any()
    torch.testing.assert_close(hidden_p[:, : 1 + N], hidden, atol=1e-5, rtol=1e-4)
    hidden_p[:, : 1 + N].sum().backward()
    assert padded.grad[:, :N].abs().sum() > 0 and padded.grad[:, N:].abs().sum() == 0
    with pytest.raises(ValueError, match="width"):
        enc.run_blocks(torch.zeros(1, 3, D + 1), torch.ones(1, 3, dtype=torch.bool))
