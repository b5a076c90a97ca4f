"""Tiny random backbones built from configs in milliseconds, for unit tests (no zoo, no download)."""

from __future__ import annotations

import functools

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (GPT2Config, GPT2LMHeadModel, OPTConfig, OPTForCausalLM, PreTrainedTokenizerFast,
                          ViTConfig, ViTImageProcessor, ViTModel)

from mmadapt.backbones.lm import CausalLM
from mmadapt.backbones.vision import HFViT
from mmadapt.data.synthetic.scene_world import COLORS, SHAPES

WORDS = ["question", "answer", "caption", "what", "color", "is", "the", "shape", "object", "how", "many",
         "objects", "are", "there", "on", "left", "or", "right", "a", "small", "large", "and", "top", "bottom",
         "picture", "of", "yes", "no", "1", "2", "3", ":", "?", ".", ",", *COLORS, *SHAPES]


@functools.lru_cache(maxsize=None)
def word_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the scenes vocabulary, OPT-style (``</s>`` as BOS and EOS)."""
    vocab = {"<pad>": 0, "<unk>": 1, "</s>": 2}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    tk.post_processor = processors.TemplateProcessing(single="</s> $A", special_tokens=[("</s>", 2)])
    from tokenizers import decoders

    tk.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="</s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def tiny_lm(kind: str = "opt", layers: int = 4, hidden: int = 32, seed: int = 0) -> CausalLM:
    import torch

    torch.manual_seed(seed)
    tok = word_tokenizer()
    if kind == "opt":
        cfg = OPTConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, ffn_dim=2 * hidden,
                        num_attention_heads=2, max_position_embeddings=128, word_embed_proj_dim=hidden,
                        pad_token_id=0, bos_token_id=2, eos_token_id=2, dropout=0.0)
        model = OPTForCausalLM(cfg)
    elif kind == "gpt2":
        cfg = GPT2Config(vocab_size=len(tok), n_embd=hidden, n_layer=layers, n_head=2, n_positions=128,
                         bos_token_id=2, eos_token_id=2, pad_token_id=0)
        model = GPT2LMHeadModel(cfg)
    else:
        raise ValueError(kind)
    model.config._attn_implementation = "sdpa"
    return CausalLM(model, tok)


def tiny_vit(layers: int = 4, hidden: int = 24, seed: int = 0) -> HFViT:
    import torch

    torch.manual_seed(seed)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=hidden, num_hidden_layers=layers,
                    num_attention_heads=2, intermediate_size=2 * hidden)
    model = ViTModel(cfg, add_pooling_layer=False)
    proc = ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return HFViT(model, proc, model.layernorm, identity="test:tiny-vit")


def tiny_config(scenes_root, output_dir, **train):
    """A two-task (VQA + caption) config on the synthetic scenes at ``scenes_root`` for tiny models."""
    from mmadapt.config import Config

    ds = lambda split, n: {"format": "synthetic_scenes", "root": str(scenes_root), "split": split, "n_images": n}  # noqa: E731
    raw = {
        "model": {"lm": {"name": "test:tiny-opt"}, "vision": {"name": "test:tiny-vit", "kind": "hf_vit"},
                  "adapter": {"name": "epalm", "n_injected": 2, "prompt_len": 3, "prompt_mlp_hidden": 8}},
        "tasks": {"vqa": {"train": ds("train", 24), "eval": ds("val", 6), "max_new_tokens": 3},
                  "caption": {"train": ds("train", 24), "eval": ds("val", 6), "prompt": "caption:",
                              "max_new_tokens": 8}},
        "train": {"max_steps": 4, "batch_size": 8, "lr": 1e-2, "prompt_lr": 1e-2, "warmup_steps": 1,
                  "log_every": 1, **train},
        "eval": {"batch_size": 4},
        "output_dir": str(output_dir),
    }
    return Config.from_dict(raw)


def make_model(config, lm_kind: str = "opt", seed: int = 0):
    """The PerceptualLM of ``config`` built on tiny random backbones (same seed → same weights)."""
    import torch

    from mmadapt.adapters.epalm import EPALM
    from mmadapt.models.perceptual_lm import PerceptualLM

    model_cfg = getattr(config, "model", config)  # a full Config or its ModelConfig
    lm, vit = tiny_lm(lm_kind, seed=seed), tiny_vit(seed=seed)
    torch.manual_seed(seed + 1)
    adapter = EPALM(model_cfg.adapter, lm, vit)
    return PerceptualLM(model_cfg, lm, vit, adapter)


def assert_reloads_identically(model, folder, perception, prompts, before, max_new_tokens: int = 6) -> None:
    """``PerceptualLM.from_pretrained(folder)`` (after ``model.save_pretrained(folder)``) generates ``before``
    (greedy, then 2 beams, ``max_new_tokens`` new tokens) and holds bit-identical adapter weights."""
    import torch

    from mmadapt.models.perceptual_lm import PerceptualLM

    again = PerceptualLM.from_pretrained(folder)
    assert [again.generate(perception, prompts, max_new_tokens=max_new_tokens, num_beams=b) for b in (1, 2)] == before
    for (name, a), (_, b) in zip(model.adapter.state_dict().items(), again.adapter.state_dict().items()):
        assert torch.equal(a, b), name


def scenes_vqa_config(scenes_root, model: dict, output_dir, n_train: int = 8, batch_size: int = 4):
    """A VQA config on the tiny scenes at ``scenes_root`` (``n_train`` training images, 2 eval) for ``model``
    (the recipe's model section): two steps of ``batch_size``."""
    from mmadapt.config import Config

    ds = lambda split, n: {"format": "synthetic_scenes", "root": str(scenes_root), "split": split,  # noqa: E731
                           "n_images": n}
    return Config.from_dict({
        "model": model, "tasks": {"vqa": {"train": ds("train", n_train), "eval": ds("val", 2), "max_new_tokens": 3}},
        "train": {"max_steps": 2, "batch_size": batch_size, "warmup_steps": 1, "log_every": 1, "lr": 1e-3},
        "output_dir": str(output_dir)})


def assert_generates_and_reloads(model, config, folder) -> None:
    """``model`` answers the first two eval questions of ``config``'s VQA task (greedy and 2 beams, 4 new
    tokens, strings), and after ``save_pretrained(folder)`` the reloaded adapter generates exactly the same."""
    import mmadapt

    task = mmadapt.build_tasks(config)["vqa"]
    samples = task.split("eval").samples[:2]
    _, inputs, _ = model.load_batch([s.image_path for s in samples])
    prompts = [task.prefix(s.question) for s in samples]
    model.eval()
    before = [model.generate(inputs["pixel_values"], prompts, max_new_tokens=4, num_beams=b) for b in (1, 2)]
    assert all(isinstance(g, str) for gens in before for g in gens)
    model.save_pretrained(folder)
    assert_reloads_identically(model, folder, inputs["pixel_values"], prompts, before, max_new_tokens=4)


def train_scenes_recipe(recipe, scenes_root, out, *overrides: str):
    """``recipe`` trained 2 steps of 4 on 24 tiny scenes (VQA and captioning) and scored on 6 (VQA only: caption
    scoring starts Java, which the slow demo tests cover) → the :class:`~mmadapt.api.TrainResult`."""
    import mmadapt

    data = [f"tasks.{task}.{split}.{key}" for task in ("vqa", "caption") for split in ("train", "eval")
            for key in (f"root={scenes_root}", f"n_images={24 if split == 'train' else 6}")]
    cfg = mmadapt.load_recipe(recipe, [
        f"output_dir={out}", "train.max_steps=2", "train.batch_size=4", "train.warmup_steps=1",
        "eval.batch_size=4", *overrides, *data, "tasks.caption.eval=null"])
    result = mmadapt.train(cfg, evaluate_after=True, quiet=True)
    assert len(result.records) == 2 and all(r["loss"] > 0 for r in result.records)
    assert len(result.scores["vqa"]["perQuestion"]) == 6 * 5 and 0 <= result.scores["vqa"]["overall"] <= 100
    return result


def text_cross_entropies(model, pixel_values, prefixes, targets, prefix_weight: float = 0.0):
    """One plain forward of a ``PerceptualLM`` on ``prefix + target``; per sample ``(ce, w)``: the cross-entropy
    of every predicted real text token [n - 1] and its loss weight (``prefix_weight`` for the prompt after BOS,
    1 for the target and EOS), in order. What tests compute losses and candidate scores from by hand."""
    import torch
    import torch.nn.functional as F

    text = model.tokenize(prefixes, targets, prefix_weight)
    with torch.no_grad():
        perception = model.perceive(pixel_values)
        embeds, mask4d, positions, _ = model.prefill_inputs(text, perception)
        hidden = model.run_lm(embeds, mask4d, positions, perception, prefill=True).last_hidden_state
    K = embeds.shape[1] - text.ids.shape[1]
    out = []
    for b in range(len(prefixes)):
        n = int(text.mask[b].sum())
        first = text.ids.shape[1] - n  # left padding
        logits = model.lm.logits(hidden[b, K + first:K + first + n - 1]).float()
        ce = F.cross_entropy(logits, text.ids[b, first + 1:first + n], reduction="none")
        out.append((ce, text.weights[b, first + 1:first + n]))
    return out


def brute_force_rank(model, pixel_values, prefixes, candidates):
    """Per sample, the candidate whose tokens + EOS have the highest log-likelihood after its prefix, one full
    forward per candidate (what ``PerceptualLM.rank`` must pick with ``top_k`` = every candidate)."""
    picks = []
    for i, prefix in enumerate(prefixes):
        scores = []
        for c in candidates:
            [(ce, w)] = text_cross_entropies(model, pixel_values[i:i + 1], [prefix], [c])
            scores.append(-float((ce * w).sum()))
        picks.append(candidates[max(range(len(candidates)), key=scores.__getitem__)])
    return picks
