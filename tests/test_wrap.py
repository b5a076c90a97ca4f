"""``mmadapt.wrap``: Hugging Face objects already loaded in Python become a trainable assembly (peft's
``get_peft_model`` for perception adapters); wrapping twice never stacks hooks or LoRA layers; a run records in
``config.yaml`` the backbones and adapter it actually trained; ``from_pretrained`` takes loaded backbones."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml

import mmadapt
from mmadapt.errors import ConfigError
from mmadapt.models.perceptual_lm import PerceptualLM
from tiny import tiny_vit, word_tokenizer


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny Llama and a tiny ViT saved to local directories and loaded back as a user would load them."""
    from transformers import (AutoImageProcessor, AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM,
                              ViTModel)

    from mmadapt.data.synthetic.scenes import write_scenes_dataset

    root = tmp_path_factory.mktemp("wrap")
    write_scenes_dataset(root / "scenes", "train", 8, seed=0, image_size=32)
    write_scenes_dataset(root / "scenes", "val", 2, seed=0, image_size=32)
    tok = word_tokenizer()
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                 num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, bos_token_id=2,
                                 eos_token_id=2)).save_pretrained(root / "lm")
    tok.save_pretrained(root / "lm")
    vit = tiny_vit(layers=2, hidden=16)
    vit.model.save_pretrained(root / "vit")
    vit.processor.save_pretrained(root / "vit")

    def load():
        return (AutoModelForCausalLM.from_pretrained(root / "lm"), AutoTokenizer.from_pretrained(root / "lm"),
                ViTModel.from_pretrained(root / "vit", add_pooling_layer=False),
                AutoImageProcessor.from_pretrained(root / "vit"))

    return root, load


def _cfg(root, out):
    ds = lambda split, n: {"format": "synthetic_scenes", "root": str(root / "scenes"), "split": split,  # noqa: E731
                           "n_images": n}
    return mmadapt.Config.from_dict({
        "tasks": {"vqa": {"train": ds("train", 8), "eval": ds("val", 2), "max_new_tokens": 3}},
        "train": {"max_steps": 2, "batch_size": 4, "warmup_steps": 1, "log_every": 1, "lr": 1e-2},
        "output_dir": str(out)})


def _generate(model, root):
    task = mmadapt.build_tasks(_cfg(root, root / "unused"))["vqa"]
    samples = task.split("eval").samples[:2]
    _, inputs, _ = model.load_batch([s.image_path for s in samples])
    model.eval()
    return [model.generate(inputs["pixel_values"], [task.prefix(s.question) for s in samples], max_new_tokens=4,
                           num_beams=b) for b in (1, 2)]


def _hooks(hf_lm) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in hf_lm.modules())


def test_wrap_trains_records_what_it_trained_and_reloads_with_loaded_or_named_backbones(world, tmp_path):
    root, load = world
    lm, tok, vit, proc = load()
    pad_before = tok.pad_token
    model = mmadapt.wrap(lm, {"name": "epalm", "n_injected": 2, "prompt_len": 3}, tokenizer=tok, vision=vit,
                         processor=proc)
    assert isinstance(model, PerceptualLM) and model.lm.model is lm and model.vision.model is vit
    assert not any(p.requires_grad for p in lm.parameters()) and not any(p.requires_grad for p in vit.parameters())
    assert tok.pad_token == pad_before  # the caller's tokenizer is not modified
    assert model.config.lm.name == str(root / "lm") and model.config.vision.name == str(root / "vit")
    assert model.config.vision.kind == "hf_vit" and model.config.adapter.name == "epalm"

    frozen = {k: v.clone() for k, v in lm.state_dict().items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("adapter.") for n in trainable)
    mmadapt.train(_cfg(root, tmp_path / "run"), model=model, quiet=True)
    assert all(torch.equal(v, lm.state_dict()[k]) for k, v in frozen.items())
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]
    # the recipe named no model (its defaults are the zoo's): config.yaml records the wrapped one
    assert recorded["lm"]["name"] == str(root / "lm") and recorded["vision"]["name"] == str(root / "vit")
    assert recorded["adapter"]["name"] == "epalm" and recorded["adapter"]["n_injected"] == 2

    before = _generate(model, root)
    model.save_pretrained(tmp_path / "adapter")
    lm2, tok2, vit2, proc2 = load()
    loaded = PerceptualLM.from_pretrained(tmp_path / "adapter", lm=(lm2, tok2), vision=(vit2, proc2))
    assert loaded.lm.model is lm2 and _generate(loaded, root) == before
    assert _generate(PerceptualLM.from_pretrained(tmp_path / "adapter"), root) == before  # by the recorded names


@pytest.mark.parametrize("first, second", [
    ({"name": "epalm", "n_injected": 2, "prompt_len": 3}, {"name": "epalm", "n_injected": 1, "prompt_len": 2}),
    ({"name": "solo", "patch_size": 16, "max_side": 32, "lora": {"r": 2}},
     {"name": "llava_projector", "lora": {"r": 4}}),
    ({"name": "llava_projector", "lora": {"r": 4}}, {"name": "epalm", "n_injected": 2, "prompt_len": 3}),
])
def test_wrapping_twice_replaces_instead_of_stacking(world, first, second, caplog):
    """The second wrap of one LM computes exactly what a single wrap of an untouched copy computes: no hook of
    the first adapter is left, no LoRA layer doubled or left behind."""
    from peft.tuners.lora import LoraLayer

    root, load = world
    lm, tok, vit, proc = load()
    pristine = copy.deepcopy(lm)
    mmadapt.wrap(lm, first, tokenizer=tok, vision=vit, processor=proc)
    with caplog.at_level("WARNING", logger="mmadapt.models.wrap"):
        again = mmadapt.wrap(lm, second, tokenizer=tok, vision=vit, processor=proc, seed=1)
    assert any("was wrapped before" in r.getMessage() for r in caplog.records)
    once = mmadapt.wrap(pristine, second, tokenizer=tok, vision=vit, processor=proc, seed=1,
                        lm_name=str(root / "lm"))
    assert _hooks(lm) == _hooks(pristine)
    lora = lambda m: sorted(name for name, mod in m.named_modules()  # noqa: E731
                            if isinstance(mod, LoraLayer) and len(mod.lora_A))
    assert lora(lm) == lora(pristine)
    assert _generate(again, root) == _generate(once, root)
    ids = torch.tensor([[2, 5, 6, 7]])
    with torch.no_grad():
        torch.testing.assert_close(lm(input_ids=ids).logits, pristine(input_ids=ids).logits)


def test_wrap_says_what_it_needs(world):
    from transformers import AutoModelForCausalLM

    root, load = world
    lm, tok, vit, proc = load()
    with pytest.raises(ConfigError, match=r"^lm: expected a loaded \*ForCausalLM with its tokenizer .* without a "
                                          r"tokenizer$"):
        mmadapt.wrap(lm, {"name": "epalm"})
    with pytest.raises(ConfigError, match=r"^vision: a loaded ViTModel needs its image processor \(processor=\.\.\.\)$"):
        mmadapt.wrap(lm, {"name": "epalm"}, tokenizer=tok, vision=vit)
    fresh = AutoModelForCausalLM.from_config(copy.deepcopy(lm.config))
    fresh.config.name_or_path = ""
    with pytest.raises(ConfigError, match=r"^lm: the loaded LlamaForCausalLM has no name_or_path \(built from a "
                                          r"config\?\); pass lm_name=\.\.\."):
        mmadapt.wrap(fresh, {"name": "epalm"}, tokenizer=tok, vision=vit, processor=proc)
    with pytest.raises(ConfigError, match=r"cannot wrap a loaded LlamaForCausalLM"):
        mmadapt.wrap(lm, {"name": "epalm"}, tokenizer=tok, vision=fresh, processor=proc, vision_name="x")
