"""All-in-One against its authors' code: when rolling happens, the tanh pooler, training inside the encoder
(peft LoRA, chosen blocks in full), the heads, the text embedding, the retrieval loss and the action-recognition
prompt — each with its named option. A tiny random ViT (4 blocks, 16 patches per
frame) and a word tokenizer saved to disk stand in for the zoo models, so that save / load rebuilds them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import mmadapt
from mmadapt.adapters.token_rolling import TokenRolling, TokenRollingConfig
from mmadapt.api import training_examples
from mmadapt.config import Config
from mmadapt.errors import ConfigError
from mmadapt.models.all_in_one import AllInOne

RECIPES = Path(__file__).resolve().parents[1] / "adapters" / "all_in_one"
LORA = {"r": 2, "alpha": 4}  # null targets: the attention's query / value projections


def _recipe(root, adapter=None, steps: int = 2, tasks=("vqa",), **video_text) -> Config:
    data = lambda split, n: {"format": "synthetic_video_text", "root": str(root), "split": split,  # noqa: E731
                             "n_samples": n, "seed": 0}
    extra = {"vqa": {"prompt": "{question}"}}
    return Config.from_dict({
        "model": {"assembly": "all_in_one", "encoder": {"name": str(root / "vit"), "kind": "hf_vit"},
                  "adapter": adapter, "video_text": {"n_frames": 6, "max_text_len": 16,
                                                     "text_tokenizer": str(root / "tokenizer"), **video_text}},
        "tasks": {t: {"train": data("train", 8), "eval": data("val", 4), **extra.get(t, {})} for t in tasks},
        "train": {"max_steps": steps, "batch_size": 4, "lr": 1e-2, "warmup_steps": 0, "log_every": 1},
        "output_dir": str(root / "run"),
    })


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from mmadapt.data.synthetic.generated import ensure_generated
    from mmadapt.data.synthetic.video_text import write_video_text_dataset

    from tiny import tiny_vit, word_tokenizer

    root = tmp_path_factory.mktemp("video_text_fidelity")
    for split, n in (("train", 8), ("val", 4)):  # as the recipe's tasks would
        ensure_generated(root, split, n, 0, write_video_text_dataset)
    vit = tiny_vit()
    vit.model.save_pretrained(root / "vit")
    vit.processor.save_pretrained(root / "vit")
    word_tokenizer().save_pretrained(root / "tokenizer")
    return root


def _clips(model, root, n=2):
    paths = sorted((root / "val").glob("*.mp4"))[:n]
    return model.vision.preprocess([model.vision.load(p) for p in paths])


def _build(root, **kwargs) -> AllInOne:
    torch.manual_seed(0)  # the same trained-part initialisation for every variant
    return mmadapt.build_model(_recipe(root, **kwargs)).eval()


# ------------------------------------------------------------------------------- point 1: when rolling happens
def test_rolling_needs_text_by_default_and_roll_video_only_is_the_option(root):
    plain = _build(root)
    authors = _build(root, adapter={"name": "token_rolling"})
    option = _build(root, adapter={"name": "token_rolling", "roll_video_only": True})
    clips = _clips(plain, root)
    texts = ["what colour comes after red?"] * 2
    with torch.no_grad():
        # video only: the authors' rule never rolls — bit-identical to no rolling; the option rolls
        assert torch.equal(authors.pooled(clips), plain.pooled(clips))
        assert not torch.allclose(option.pooled(clips), plain.pooled(clips), atol=1e-4)
        # text + video: both roll, identically (per-frame outputs: the frame mean of the pooled text token
        # nearly cancels a roll at random init)
        rolled = authors.hidden(clips, texts)[0]
        assert not torch.allclose(rolled, plain.hidden(clips, texts)[0], atol=1e-3)
        torch.testing.assert_close(option.hidden(clips, texts)[0], rolled, rtol=0, atol=0)
    assert TokenRolling(TokenRollingConfig()).block_hook(4, 0, 64) is None
    assert TokenRolling(TokenRollingConfig(roll_video_only=True)).block_hook(4, 0, 64) is not None


def test_rolled_amounts_are_the_authors_integer_division():
    # AllInOne/modules/temporal_roll.py: fold = (1 + N) // 8 of a frame's [CLS] + N patches, each way
    for n_patches, fold in ((196, 24), (64, 8), (49, 6), (256, 32), (576, 72), (7, 1), (6, 0)):
        assert TokenRollingConfig().amounts(n_patches) == (fold, fold)
    assert TokenRollingConfig(fraction=0.25).amounts(64) == (16, 16)
    assert TokenRollingConfig(n_forward=3).amounts(64) == (3, 8)


# ------------------------------------------------------------------------------------------ point 2: pooling
def test_tanh_pooler_on_the_texts_first_token_by_hand(root):
    model = _build(root)
    D = model.encoder.hidden_size
    with torch.no_grad():
        model.trained["pooler"].weight.copy_(0.5 * torch.eye(D))
        model.trained["pooler"].bias.fill_(0.1)
    B, T, L, N = 2, 2, 3, 4
    hidden = torch.zeros(B, T, 1 + L + N, D)
    hidden[:, :, 0] = 100.0  # the encoder's [CLS]: not pooled when there is a text
    hidden[0, 0, 1], hidden[0, 1, 1] = 1.0, 3.0  # clip 0: first text token at position 1; frame mean 2
    hidden[1, 0, 2], hidden[1, 1, 2] = -1.0, 1.0  # clip 1 is left-padded: its first real token at position 2
    hidden[1, :, 1] = 50.0  # clip 1's padding: not pooled
    mask = torch.tensor([[True, True, False], [False, True, True]])
    pooled = model.pool(hidden, mask)
    assert pooled.shape == (B, D)
    torch.testing.assert_close(pooled[0], torch.full((D,), math.tanh(0.5 * 2 + 0.1)))
    torch.testing.assert_close(pooled[1], torch.full((D,), math.tanh(0.1)))
    # video only: the encoder's [CLS], mean over frames (2 and 4 → 3), then the pooler
    video = torch.zeros(1, T, 1 + N, D)
    video[0, 0, 0], video[0, 1, 0] = 2.0, 4.0
    torch.testing.assert_close(model.pool(video, torch.zeros(1, 0, dtype=torch.bool)),
                               torch.full((1, D), math.tanh(0.5 * 3 + 0.1)))


def test_cls_mean_pooling_is_the_named_option(root):
    model = _build(root, pooling="cls_mean")
    assert "pooler" not in model.trained and "pooler" in _build(root).trained
    D = model.encoder.hidden_size
    hidden = torch.zeros(1, 2, 1 + 3 + 4, D)
    hidden[0, 0, 0], hidden[0, 1, 0] = 2.0, 4.0
    hidden[0, :, 1] = 9.0  # the text: not pooled
    torch.testing.assert_close(model.pool(hidden, torch.ones(1, 3, dtype=torch.bool)), torch.full((1, D), 3.0))


def test_pooled_reads_the_encoder_output_through_pool(root):
    model = _build(root)
    clips = _clips(model, root)
    texts = ["what shape is on the screen?", "what colour comes after blue?"]
    with torch.no_grad():
        hidden, mask = model.hidden(clips, texts)
        assert hidden.shape[:2] == (2, 6) and hidden.shape[2] == 1 + mask.shape[1] + 16  # 4 × 4 patches
        torch.testing.assert_close(model.pooled(clips, texts), model.pool(hidden, mask))
        pooled = model.pooled(clips, texts)
    assert pooled.abs().max() < 1  # tanh


# ------------------------------------------------------------------ point 3: heads, text embedding, retrieval
def _kinds(module) -> list[str]:
    return [type(m).__name__ for m in module]


def test_the_qa_head_is_the_authors_openend_head_and_vqav2_the_option(root):
    model = _build(root)
    D = model.encoder.hidden_size
    head = model.trained["heads"]["answer"]
    assert _kinds(head.net) == ["Dropout", "Linear", "LayerNorm", "GELU", "Linear"] and head.net[0].p == 0.5
    assert head.net[1].weight.shape == (D // 2, D) and head.net[4].weight.shape == (len(model.config.video_text.answers), D // 2)
    for linear in (head.net[1], head.net[4]):  # the authors' init_weights: N(0, 0.02), zero bias
        assert torch.equal(linear.bias, torch.zeros_like(linear.bias))
        w = linear.weight.detach()
        assert 0.015 < float(w.std()) < 0.025 and abs(float(w.mean())) < 0.005
    vqav2 = _build(root, classifier="vqav2").trained["heads"]["answer"]
    assert _kinds(vqav2.net) == ["Linear", "LayerNorm", "GELU", "Linear"] and vqav2.net[0].weight.shape == (2 * D, D)
    x = torch.randn(16, D)
    with torch.no_grad():
        evaluated = head(x)
        torch.testing.assert_close(head(x), evaluated, rtol=0, atol=0)  # eval: no dropout
        model.train()
        assert not torch.equal(head(x), evaluated)  # training: the head's dropout acts
        assert not model.encoder.model.training  # the frozen encoder stays in eval mode


def test_text_embedding_is_layer_normed_as_berts_and_plain_is_the_option(root):
    text = ["what shape is on the screen?"]
    for norm in (True, False):
        model = _build(root, text_norm=norm)
        t = model.trained
        assert ("text_norm" in t) == norm
        ids = model.text_tokenizer(text, return_tensors="pt")["input_ids"]
        x = t["word_embedding"].weight[ids[0]] + t["text_position"].weight[: ids.shape[1]]
        if norm:
            with torch.no_grad():
                t["text_norm"].weight.fill_(2.0), t["text_norm"].bias.fill_(0.5)
            x = 2.0 * (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5) + 0.5
        with torch.no_grad():
            tokens, mask = model._text(text, 1)
        assert mask.all() and tokens.shape == (1, ids.shape[1], model.encoder.hidden_size)
        torch.testing.assert_close(tokens[0], (x + t["token_type"].weight[0]).detach())
        if norm:  # BERT's embedding dropout (0.1) while training
            model.train()
            with torch.no_grad():
                assert not torch.equal(model._text(text, 1)[0], tokens)


def test_rank_loss_is_cross_entropy_over_the_own_text_and_in_batch_negatives_by_hand(root):
    model = _build(root, tasks=("retrieval",), retrieval_negatives=2)
    head = model.trained["heads"]["match"]
    assert isinstance(head, torch.nn.Linear) and head.weight.shape == (1, model.encoder.hidden_size)
    clips = _clips(model, root, 4)
    texts = ["a red circle", "a blue square", "a red circle", "a green triangle"]
    with torch.no_grad():
        score = lambda j, i: float(model.match_logits(clips[j:j + 1], [texts[i]]))  # noqa: E731
        expected = []
        for j in range(4):  # K = 2: the texts of clips j + 1 and j + 2; clip 0's second negative is its own text
            candidates = [score(j, j)] + [score(j, (j + k) % 4) for k in (1, 2) if texts[(j + k) % 4] != texts[j]]
            expected.append(-candidates[0] + math.log(sum(math.exp(c) for c in candidates)))
        torch.testing.assert_close(model.rank_loss(clips, texts), torch.tensor(sum(expected) / 4), rtol=1e-4, atol=1e-5)
        # K is capped at the batch's other texts: 15 negatives on a batch of 2 scores each clip against one other
        two = model.rank_loss(clips[:2], texts[:2])
        pair = [[score(j, i) for i in (j, 1 - j)] for j in range(2)]
        by_hand = sum(-p[0] + math.log(math.exp(p[0]) + math.exp(p[1])) for p in pair) / 2
        model.config.video_text.retrieval_negatives = 15
        torch.testing.assert_close(model.rank_loss(clips[:2], texts[:2]), two)
        torch.testing.assert_close(two, torch.tensor(by_hand), rtol=1e-4, atol=1e-5)


def test_match_bce_is_the_named_option_by_hand(root):
    model = _build(root, tasks=("retrieval",), retrieval="match_bce")
    assert _kinds(model.trained["heads"]["match"].net) == ["Linear", "LayerNorm", "GELU", "Linear"]
    clips = _clips(model, root, 3)
    texts = ["a red circle", "a blue square", "a red circle"]
    with torch.no_grad():
        logit = lambda j, i: model.match_logits(clips[j:j + 1], [texts[i]])  # noqa: E731
        pos = torch.cat([logit(j, j) for j in range(3)])
        neg = torch.cat([logit(j, (j + 1) % 3) for j in range(3)])  # clip 2's negative is its own text: a match
        target = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 1.0])
        expected = F.binary_cross_entropy_with_logits(torch.cat([pos, neg]), target)
        torch.testing.assert_close(model.match_bce_loss(clips, texts), expected, rtol=1e-4, atol=1e-5)
        batch = {"pixel_values": clips, "kinds": ["match"] * 3, "texts": texts, "labels": torch.ones(3)}
        torch.testing.assert_close(model(**batch), expected, rtol=1e-4, atol=1e-5)


def test_classification_reads_the_prompt_so_rolling_acts_under_the_authors_rule(root):
    rolled = _build(root, tasks=("classification",), adapter={"name": "token_rolling"})
    plain = _build(root, tasks=("classification",))
    assert rolled.classify_prompt == "A person is doing [MASK]"  # the word tokenizer has no mask token
    assert "word_embedding" in rolled.trained  # the prompt's embeddings train
    clips = _clips(rolled, root)
    prompt = [rolled.classify_prompt] * 2
    with torch.no_grad():
        logits = rolled.predict(clips)
        torch.testing.assert_close(logits, rolled.trained["heads"]["classify"](rolled.pooled(clips, prompt)))
        # text shares the sequence, so it rolls (per-frame outputs differ from the same model without rolling)
        assert not torch.allclose(rolled.hidden(clips, prompt)[0], plain.hidden(clips, prompt)[0], atol=1e-3)
    alone = _build(root, tasks=("classification",), adapter={"name": "token_rolling"}, classify_prompt=None)
    alone_plain = _build(root, tasks=("classification",), classify_prompt=None)
    assert "word_embedding" not in alone.trained and alone.classify_prompt is None
    with torch.no_grad():  # the clip alone: the authors' rule never rolls it
        torch.testing.assert_close(alone.predict(clips), alone_plain.predict(clips), rtol=0, atol=0)
    tok = rolled.text_tokenizer
    tok.add_special_tokens({"mask_token": "<mask>"})
    assert AllInOne._prompt("A person is doing [MASK]", tok) == "A person is doing <mask>"
    with pytest.raises(ConfigError, match="model.video_text.classify_prompt: empty"):
        _recipe(root, classify_prompt="  ")
    with pytest.raises(ConfigError, match="model.video_text.retrieval_negatives: expected >= 1"):
        _recipe(root, retrieval_negatives=0)


# ------------------------------------------------------------------------------ point 4: training the encoder
def _step(model, root):
    batch, errors = model.collate_train(training_examples(_recipe(root))[:4])
    assert not errors
    model.zero_grad()
    model.train()(**batch).backward()
    return {n for n, p in model.named_parameters() if p.grad is not None}


def test_lora_trains_exactly_its_layers_inside_the_encoder(root):
    model = _build(root, lora=LORA)
    lora = {n for n, _ in model.encoder.named_parameters() if "lora_" in n}
    assert len(lora) == 2 * 2 * len(model.encoder.blocks)  # A and B of query and value in every block
    trained = {"trained." + n for n, _ in model.trained.named_parameters() if not n.startswith("lora.")}
    expected = {"encoder." + n for n in lora} | trained
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected
    assert _step(model, root) == expected
    assert all(float(p.grad.abs().max()) > 0 for n, p in model.named_parameters() if "lora_B" in n)
    # B starts at zero: a fresh LoRA model computes what the frozen encoder computes
    frozen = _build(root)
    clips = _clips(model, root)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.pooled(clips, ["what?"] * 2), frozen.pooled(clips, ["what?"] * 2))


def test_train_blocks_trains_exactly_those_blocks(root):
    model = _build(root, train_blocks=[1])
    block1 = {"encoder." + n for n, _ in model.encoder.named_parameters() if ".1." in n}
    assert block1 and all(("layer.1." in n or "layers.1." in n) for n in block1)
    trained = {"trained." + n for n, _ in model.trained.named_parameters() if not n.startswith("blocks.")}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == block1 | trained
    assert _step(model, root) == block1 | trained


@pytest.mark.parametrize("options", [{"lora": LORA}, {"train_blocks": [1]}, {"lora": LORA, "train_blocks": [0]}],
                         ids=["lora", "train_blocks", "both"])
def test_a_training_step_moves_only_the_chosen_weights_and_save_load_keeps_them(root, tmp_path, options):
    cfg = _recipe(root, adapter={"name": "token_rolling"}, steps=2, **options)
    cfg.output_dir = str(tmp_path / "run")
    torch.manual_seed(0)
    model = mmadapt.build_model(cfg)
    chosen = {n for n, p in model.encoder.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in model.encoder.named_parameters()}
    model = mmadapt.train(cfg, model=model, quiet=True).model
    after = dict(model.encoder.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before if n not in chosen)  # frozen: bit-identical
    assert any(not torch.equal(before[n], after[n]) for n in chosen)
    model.save_pretrained(tmp_path / "saved")
    saved = load_file(str(tmp_path / "saved" / "adapter_model.safetensors"))
    if "lora" in options:
        assert any(k.startswith("lora.") for k in saved)
    if "train_blocks" in options:
        assert any(k.startswith(f"blocks.{options['train_blocks'][0]}.") for k in saved)
    assert not any("embeddings.patch" in k for k in saved)  # the frozen encoder is not saved
    again = AllInOne.from_pretrained(tmp_path / "saved").eval()
    model.eval()
    clips = _clips(model, root)
    texts = ["what shape is on the screen?", "what colour comes after blue?"]
    with torch.no_grad():
        torch.testing.assert_close(again.answer_logits(clips, texts), model.answer_logits(clips, texts))
    moved = [n for n in chosen if not torch.equal(before[n], dict(again.encoder.named_parameters())[n])]
    assert moved  # the reloaded encoder holds the trained weights, not the pretrained ones


def test_encoder_training_errors_name_the_key(root):
    with pytest.raises(ConfigError, match="model.video_text.train_blocks: \\[7\\] names a block >= the encoder's"):
        _build(root, train_blocks=[7])
    with pytest.raises(ConfigError, match="model.video_text.train_blocks: expected distinct"):
        _recipe(root, train_blocks=[1, 1])
    with pytest.raises(ConfigError, match="model.video_text.lora.dropout"):
        _recipe(root, lora={"dropout": 0.1})
    with pytest.raises(ConfigError, match="model.video_text.lora.target_modules"):
        _build(root, lora={"target_modules": ["no_such_layer"]})


@pytest.mark.parametrize("recipe", ["synthetic_lora.yaml", "synthetic_finetune.yaml"])
def test_synthetic_encoder_training_recipes_load_and_lora_trains(recipe, root, tmp_path):
    overrides = [f"tasks.{t}.{s}.root={tmp_path / 'data'}" for t in ("vqa", "retrieval") for s in ("train", "eval")]
    overrides += [f"model.encoder.name={root / 'vit'}", f"model.video_text.text_tokenizer={root / 'tokenizer'}"]
    cfg = mmadapt.load_recipe(RECIPES / recipe, [*overrides, "tasks.vqa.train.n_samples=16",
                                                 "tasks.retrieval.train.n_samples=16", "train.max_steps=12",
                                                 "train.batch_size=8", "train.log_every=1", "train.warmup_steps=2",
                                                 f"output_dir={tmp_path / 'run'}"])
    vt = cfg.model.video_text
    assert (vt.lora is not None) == (recipe == "synthetic_lora.yaml")
    assert (vt.train_blocks is not None) == (recipe == "synthetic_finetune.yaml")
    if recipe != "synthetic_lora.yaml":
        return
    losses = [r["loss"] for r in mmadapt.train(cfg, quiet=True).records if "loss" in r]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
