"""Any Hugging Face ``*ForCausalLM``: tiny random models of 18 families (and sliding-window variants) built from
their configs into local directories, each through eP-ALM, SOLO + LoRA and the LLaVA projector — two training
steps, greedy and beam generation, save → load identical generations — plus the pieces that make that work:
layers and position embeddings found in the model itself, sliding windows in the mask, eager attention where
an architecture has no SDPA, LoRA on fused query-key-value projections, and a clear refusal where a family
cannot work."""

from __future__ import annotations

import logging

import pytest
import torch

from mmadapt.backbones.lm import CausalLM
from mmadapt.errors import ConfigError
from tiny import assert_generates_and_reloads, scenes_vqa_config, tiny_vit, word_tokenizer

H = 32


def _families(vocab: int) -> dict[str, tuple[str, dict]]:
    """name → (model_type, config kwargs) of 4-layer models of width 32."""
    ids = dict(bos_token_id=2, eos_token_id=2)
    common = dict(vocab_size=vocab, hidden_size=H, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, tie_word_embeddings=False, **ids)
    fams = {name: (name, common) for name in ("llama", "mistral", "qwen2", "phi", "phi3", "gpt_neox", "stablelm", "olmo2")}
    fams.update({
        "mixtral": ("mixtral", dict(common, num_local_experts=2, num_experts_per_tok=1)),
        "qwen3": ("qwen3", dict(common, head_dim=8)),
        "gemma": ("gemma", dict(common, head_dim=8)),
        "gemma2": ("gemma2", dict(common, head_dim=8)),
        "gemma3_text": ("gemma3_text", dict(common, head_dim=8)),
        "gpt2": ("gpt2", dict(vocab_size=vocab, n_embd=H, n_layer=4, n_head=4, n_positions=128, **ids)),
        "gpt_neo": ("gpt_neo", dict(vocab_size=vocab, hidden_size=H, num_layers=4, num_heads=4, window_size=256,
                                    attention_types=[[["global", "local"], 2]], max_position_embeddings=128, **ids)),
        "gptj": ("gptj", dict(vocab_size=vocab, n_embd=H, n_layer=4, n_head=4, n_positions=128, rotary_dim=4, **ids)),
        "opt": ("opt", dict(vocab_size=vocab, hidden_size=H, ffn_dim=64, num_hidden_layers=4, num_attention_heads=4,
                            max_position_embeddings=128, word_embed_proj_dim=H, pad_token_id=0, **ids)),
        "falcon": ("falcon", dict(vocab_size=vocab, hidden_size=H, num_hidden_layers=4, num_attention_heads=4,
                                  max_position_embeddings=128, alibi=False, **ids)),
        # sliding windows shorter than every sequence here: all layers (Mistral), mixed layer types (the others)
        "mistral_window4": ("mistral", dict(common, sliding_window=4)),
        "qwen2_window4": ("qwen2", dict(common, sliding_window=4, use_sliding_window=True, max_window_layers=2)),
        "gemma2_window4": ("gemma2", dict(common, head_dim=8, sliding_window=4)),
        "gemma3_window4": ("gemma3_text", dict(common, head_dim=8, sliding_window=4)),
    })
    return fams


FAMILIES = list(_families(0))
METHODS = {"epalm": {"name": "epalm", "n_injected": 2, "prompt_len": 3, "prompt_mlp_hidden": 8},
           "solo_lora": {"name": "solo", "patch_size": 16, "max_side": 32, "lora": {"r": 2}},
           "llava_projector": {"name": "llava_projector"}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny scenes, a tiny ViT directory, and a local directory per LM family (random weights, word tokenizer)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from mmadapt.data.synthetic.scenes import write_scenes_dataset

    root = tmp_path_factory.mktemp("families")
    write_scenes_dataset(root / "scenes", "train", 8, seed=0, image_size=32)
    write_scenes_dataset(root / "scenes", "val", 2, seed=0, image_size=32)
    vit = tiny_vit(layers=2, hidden=16)
    vit.model.save_pretrained(root / "vit")
    vit.processor.save_pretrained(root / "vit")
    tok = word_tokenizer()
    dirs = {}
    for name, (model_type, kwargs) in _families(len(tok) + 8).items():
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **kwargs)).save_pretrained(root / name)
        tok.save_pretrained(root / name)
        dirs[name] = root / name
    return root, dirs


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_trains_generates_and_reloads_identically(world, family, method):
    import mmadapt

    root, dirs = world
    cfg = scenes_vqa_config(root / "scenes", {"lm": {"name": str(dirs[family])}, "adapter": METHODS[method],
                                              "vision": {"name": str(root / "vit"), "kind": "hf_vit"}},
                            root / "runs" / family / method)
    model = mmadapt.build_model(cfg)
    frozen = {k: v.clone() for k, v in model.lm.model.state_dict().items() if "lora" not in k}
    result = mmadapt.train(cfg, model=model, quiet=True)
    assert len(result.records) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in result.records)
    after = {k: v for k, v in model.lm.model.state_dict().items() if "lora" not in k}
    assert all(torch.equal(v, after[k]) for k, v in frozen.items())  # the LM is frozen (LoRA aside)
    assert_generates_and_reloads(model, cfg, root / "adapters" / family / method)


# ------------------------------------------------------------------------------------------- the pieces
def _lm(world, family) -> CausalLM:
    _, dirs = world
    return CausalLM.from_pretrained(str(dirs[family]))


def _causal(L: int, Q: int | None = None) -> torch.Tensor:
    Q = Q or L
    allowed = torch.ones(L, L, dtype=torch.bool).tril()[L - Q:]
    return torch.zeros(1, 1, Q, L).masked_fill(~allowed, torch.finfo(torch.float32).min)


@pytest.mark.parametrize("family", ["mistral_window4", "qwen2_window4", "gemma2_window4", "gemma3_window4"])
def test_a_sliding_window_shorter_than_the_sequence_computes_what_the_model_itself_does(world, family):
    """Prefill through our 4D mask equals the model's own forward (its own sliding masks), and KV-cache decoding
    one token at a time equals it too, 11 tokens past a window of 4."""
    lm = _lm(world, family)
    # Mistral slides in every layer, Gemma 3 in 5 of 6 (so in all 4 here); Qwen2 (from max_window_layers) and
    # Gemma 2 (every other layer) mix the two layer types, so they get the per-type mask mapping
    every_layer = {"mistral_window4": True, "gemma3_window4": True, "qwen2_window4": False, "gemma2_window4": False}
    assert lm.sliding_window == 4 and lm.all_layers_slide == every_layer[family]
    ids = torch.tensor([[2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]])
    L = ids.shape[1]
    with torch.no_grad():
        reference = lm.model(input_ids=ids).logits
        full = lm.hidden_states(lm.input_embeddings(ids), _causal(L), torch.arange(L)[None]).last_hidden_state
        torch.testing.assert_close(lm.logits(full), reference, rtol=1e-4, atol=1e-4)
        cache = lm.new_cache()
        out = lm.hidden_states(lm.input_embeddings(ids[:, :3]), _causal(3), torch.arange(3)[None],
                               past_key_values=cache, use_cache=True).last_hidden_state
        steps = [lm.logits(out)]
        for t in range(3, L):
            out = lm.hidden_states(lm.input_embeddings(ids[:, t:t + 1]), _causal(t + 1, 1), torch.tensor([[t]]),
                                   past_key_values=cache, use_cache=True).last_hidden_state
            steps.append(lm.logits(out))
    torch.testing.assert_close(torch.cat(steps, dim=1), reference, rtol=1e-4, atol=1e-4)


def test_layers_and_learned_positions_are_found_in_the_model_itself(world):
    for family, layers, positions in [("opt", "decoder.layers", 130), ("gpt2", "h", 128), ("gpt_neo", "h", 128),
                                      ("llama", "layers", None), ("falcon", "h", None), ("gptj", "h", None)]:
        lm = _lm(world, family)
        assert lm.layers is dict(lm.model.base_model.named_modules())[layers] and lm.num_layers == 4, family
        assert (lm.position_embedding.num_embeddings if lm.position_embedding is not None else None) == positions
        assert lm.hidden_size == H


def test_an_architecture_without_sdpa_runs_eager_and_says_so_once(world, caplog):
    from mmadapt.backbones import lm as lm_module

    lm_module._WARNED_EAGER.discard("gemma2")
    with caplog.at_level(logging.WARNING, logger="mmadapt.backbones.lm"):
        first, second = _lm(world, "gemma2"), _lm(world, "gemma2")
    assert first.model.config._attn_implementation == second.model.config._attn_implementation == "eager"
    said = [r.getMessage() for r in caplog.records if "eager attention" in r.getMessage()]
    assert said == ["model.lm: gemma2 has no SDPA attention in transformers; running it with eager attention"]


@pytest.mark.parametrize("family, target", [("gpt2", "c_attn"), ("phi3", "qkv_proj"), ("falcon", "query_key_value"),
                                            ("gpt_neox", "query_key_value"), ("llama", "v_proj")])
def test_lora_finds_each_familys_attention_projections(world, family, target):
    from mmadapt.adapters.lora import LoRAConfig, inject_lora

    lm = _lm(world, family)
    layers = inject_lora(LoRAConfig(r=2), lm.model)
    assert len(layers) >= 4 and all(name.endswith(target) or "q_proj" in name for name in layers), list(layers)
    assert any(name.endswith(target) for name in layers)


def test_a_family_that_cannot_work_is_refused_saying_why():
    from transformers import MambaConfig, MambaForCausalLM

    model = MambaForCausalLM(MambaConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2, state_size=4))
    with pytest.raises(ConfigError, match="architecture 'mamba' cannot be used: its base model takes no "
                                          "position_ids .*state-space"):
        CausalLM(model, word_tokenizer())
