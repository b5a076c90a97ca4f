"""eP-ALM as its authors' code computes it (mshukor/eP-ALM), each point against a hand-computed case: the
injection schedule, the default layers, the loss, the prompt, the frozen LM's dropout, the VQA text format with
the ``</a>`` marker, leaky-mode generation, and tokenizers that add no BOS."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch
from tiny import brute_force_rank, text_cross_entropies, tiny_vit, word_tokenizer
from transformers import GPT2Config, GPT2LMHeadModel, OPTConfig, OPTForCausalLM, PreTrainedTokenizerFast

from mmadapt.adapters.epalm import EPALM, EPALMConfig
from mmadapt.adapters.epalm.model import SoftPrompt
from mmadapt.backbones.lm import CausalLM
from mmadapt.config import Config, ModelConfig
from mmadapt.data.synthetic.scene_world import render_scene, sample_scene
from mmadapt.errors import ConfigError
from mmadapt.models import decoding
from mmadapt.models.perceptual_lm import PerceptualLM

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["question: what color is the circle? answer:", "caption:", "question: how many objects are there? answer:"]


def images(n=3, seed=0):
    rng = random.Random(seed)
    return [render_scene(sample_scene(rng), 32, rng) for _ in range(n)]


def opt_lm(layers=4, dropout=0.0, spare_rows=0, seed=0) -> CausalLM:
    """A tiny OPT on its own copy of the test tokenizer; ``spare_rows`` embedding rows past the tokenizer (as
    OPT's 50272-row table past its 50265 ids)."""
    torch.manual_seed(seed)
    tok = copy.deepcopy(word_tokenizer())
    cfg = OPTConfig(vocab_size=len(tok) + spare_rows, hidden_size=32, num_hidden_layers=layers, ffn_dim=64,
                    num_attention_heads=2, max_position_embeddings=128, word_embed_proj_dim=32, pad_token_id=0,
                    bos_token_id=2, eos_token_id=2, dropout=dropout)
    model = OPTForCausalLM(cfg)
    model.config._attn_implementation = "sdpa"
    return CausalLM(model, tok)


def build(lm=None, vit_layers=4, **cfg) -> PerceptualLM:
    config = EPALMConfig(**{"n_injected": 2, "prompt_len": 3, **cfg})
    lm, vit = lm or opt_lm(), tiny_vit(layers=vit_layers)
    torch.manual_seed(1)
    model = PerceptualLM(ModelConfig(adapter=config), lm, vit, EPALM(config, lm, vit))
    with torch.no_grad():
        for p in model.adapter.parameters():
            p.normal_(0, 0.5)
    return model


def slot_inputs(model):
    """Prefill two prompts; → (the perceptual slot's state entering every LM layer {layer: [B, D]}, the
    perceptual tokens [B, n, D])."""
    pv = model.vision.preprocess(images(2))
    seen: dict[int, torch.Tensor] = {}
    handles = [layer.register_forward_pre_hook(
        lambda m, a, kw, i=i: seen.__setitem__(i, (a[0] if a else kw["hidden_states"])[:, 0].clone()),
        with_kwargs=True) for i, layer in enumerate(model.lm.layers)]
    with torch.no_grad():
        tokens = model.perceive(pv)  # [B, n, D]
        embeds, mask4d, positions, _ = model.prefill_inputs(model.tokenize(PROMPTS[:2]))
        model.run_lm(embeds, mask4d, positions, tokens, prefill=True)
    for h in handles:
        h.remove()
    return seen, tokens


# --------------------------------------------------------------------------------------- 1. schedule
def test_every_layer_of_the_window_writes_its_token():
    """12 LM layers, 6 tokens, [0, 12): step 2, so layers 0, 1 get token 0; 2, 3 token 1; ... 10, 11 token 5."""
    model = build(opt_lm(layers=12), vit_layers=6, n_injected=6, start=0, end=12)
    seen, tokens = slot_inputs(model)
    received = [next(k for k in range(6) if torch.equal(seen[i], tokens[:, k])) for i in range(12)]
    assert received == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_write_every_step_writes_each_token_once_and_the_slot_evolves():
    model = build(opt_lm(layers=12), vit_layers=6, n_injected=6, start=0, end=12, write_every="step")
    assert model.adapter.plan == {0: 0, 2: 1, 4: 2, 6: 3, 8: 4, 10: 5}
    seen, tokens = slot_inputs(model)
    for i in range(12):
        written = torch.equal(seen[i], tokens[:, i // 2])
        assert written is (i % 2 == 0), i


# ------------------------------------------------------------------------------------ 2. default layers
@pytest.mark.parametrize(("layers", "window"), [(12, (5, 11)), (24, (11, 23)), (32, (19, 31)), (40, (27, 39)),
                                                (6, (0, 6))])
def test_default_window_is_the_papers(layers, window):
    """The paper's 12-layer window ending one before the last layer (OPT-350m 11→23 of 24, OPT-2.7B 19→31 of
    32); a 12-layer LM is too shallow for two layers per token: one per token, [5, 11); 6 layers: all of them."""
    config = EPALMConfig()
    assert config.layer_window(layers) == window
    start, end = window
    step = (end - start) // 6
    assert config.injection_layers(layers) == list(range(start, end))
    assert [config.injection_plan(layers)[i] for i in range(start, end)] == [min((i - start) // step, 5)
                                                                            for i in range(start, end)]
    assert EPALMConfig(n_injected=2).layer_window(4) == (1, 3)


# ----------------------------------------------------------------------------------------------- 3. loss
def _ce_per_token(model, pv, prefixes, targets):
    """Cross-entropy of every predicted real text token, per sample (plain forward, no weights)."""
    return [ce for ce, _ in text_cross_entropies(model, pv, prefixes, targets)]


def test_authors_loss_sums_every_text_token_per_sample_over_batch_size_times_lm_loss_weight():
    model = build()
    pv = model.vision.preprocess(images(2))
    prefixes, targets = ["what color is the circle?", "how many objects are there?"], ["red", "2"]
    ce = _ce_per_token(model, pv, prefixes, targets)
    assert [len(c) for c in ce] == [6 + 2, 6 + 2]  # question tokens after BOS (6) + answer + EOS
    with torch.no_grad():
        loss = model(pv, prefixes, targets)
    torch.testing.assert_close(loss, 0.1 * (ce[0].sum() + ce[1].sum()) / 2, rtol=1e-5, atol=1e-6)
    # a task's explicit prefix_loss_weight replaces the question's weight
    with torch.no_grad():
        half = model(pv, prefixes, targets, prefix_loss_weight=0.5)
    q = [c[:-2] for c in ce]
    a = [c[-2:] for c in ce]
    torch.testing.assert_close(half, 0.1 * sum(0.5 * qi.sum() + ai.sum() for qi, ai in zip(q, a)) / 2,
                               rtol=1e-5, atol=1e-6)


def test_weighted_loss_option_is_the_earlier_per_sample_mean():
    model = build(loss="weighted", lm_loss_weight=1.0)
    pv = model.vision.preprocess(images(2))
    prefixes, targets = ["what color is the circle?", "how many objects are there?"], ["red", "2"]
    ce = _ce_per_token(model, pv, prefixes, targets)
    with torch.no_grad():
        loss = model(pv, prefixes, targets)
    per_sample = [(0.1 * c[:-2].sum() + c[-2:].sum()) / (0.1 * (len(c) - 2) + 2) for c in ce]
    torch.testing.assert_close(loss, sum(per_sample) / 2, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------- 4. prompt
def test_prompt_mlp_is_as_wide_as_the_input_embeddings_and_starts_from_nn_embedding_init():
    model = build(prompt_len=10)
    mlp = model.adapter.prompt.mlp
    assert [mlp[0].in_features, mlp[0].out_features, mlp[2].out_features] == [32, 32, 32]
    assert build(prompt_mlp_hidden=0).adapter.prompt.mlp is None  # the authors' mlp: False (pt-L)
    assert build(prompt_mlp_hidden=8).adapter.prompt.mlp[0].out_features == 8
    torch.manual_seed(5)
    default = SoftPrompt(1000, 64).embedding.weight  # nn.Embedding's init: N(0, 1)
    small = SoftPrompt(1000, 64, init_std=0.02).embedding.weight
    assert abs(default.mean().item()) < 0.01 and abs(default.std().item() - 1.0) < 0.01
    assert abs(small.std().item() - 0.02) < 0.0002


# ------------------------------------------------------------------------------------------ 5. lm_dropout
def test_lm_dropout_trains_with_the_frozen_lms_dropout_and_evaluates_without():
    pv_images = images(2)
    for on in (True, False):
        model = build(opt_lm(dropout=0.5), lm_dropout=on)
        pv = model.vision.preprocess(pv_images)
        before = {k: v.clone() for k, v in model.lm.model.state_dict().items()}
        model.train()
        assert model.lm.model.training is on and not model.vision.model.training
        torch.manual_seed(0)
        a = model(pv, PROMPTS[:2], ["red", "2"])
        b = model(pv, PROMPTS[:2], ["red", "2"])
        assert (not torch.equal(a, b)) is on  # dropout draws differ between calls only when active
        opt = torch.optim.SGD(model.adapter.parameters(), lr=0.1)
        a.backward()
        opt.step()
        assert all(p.grad is None for p in model.lm.parameters())
        assert all(torch.equal(before[k], v) for k, v in model.lm.model.state_dict().items())
        # generation and ranking run the LM in eval mode, whatever the model's mode, and leave the mode as it was
        in_train = model.generate(pv, PROMPTS[:2], max_new_tokens=4)
        assert model.lm.model.training is on
        ranked = model.rank(pv, PROMPTS[:2], ["red", "2", "blue"])
        model.eval()
        assert not model.lm.model.training
        assert model.generate(pv, PROMPTS[:2], max_new_tokens=4) == in_train
        assert model.rank(pv, PROMPTS[:2], ["red", "2", "blue"]) == ranked


# ----------------------------------------------------------------------------------- 6. VQA text format
def test_answer_marker_is_a_special_token_on_a_spare_frozen_row():
    model = build(opt_lm(spare_rows=4), added_tokens=["</a>"])
    tok = model.lm.tokenizer
    marker = len(word_tokenizer())  # 46: the first id past the original vocabulary, as OPT's 50265
    assert model.adapter.added_token_ids == [marker] and tok.convert_tokens_to_ids("</a>") == marker
    # the authors' text: question + "?" + "</a>" + answer + eos (VQA v2 questions already end with "?")
    text = model.tokenize(["what color is the circle??</a>"], ["red"], separator="")
    words = ["</s>", "what", "color", "is", "the", "circle", "?", "?", "</a>", "red", "</s>"]
    assert text.ids[0].tolist() == tok.convert_tokens_to_ids(words)
    assert text.weights[0].tolist() == [0.0] + [1.0] * 10  # the authors' loss: every token but the first
    embeds = model.embed_tokens(torch.tensor([[marker]]))
    torch.testing.assert_close(embeds[0, 0], model.lm.input_embeddings.weight[marker])  # the frozen row
    assert model.generate(model.vision.preprocess(images(1)), ["what color is the circle??</a>"], max_new_tokens=3)
    with pytest.raises(ConfigError, match="model.adapter.added_tokens: '</a>' gets id 46, past the frozen LM's 46 embedding rows"):
        build(opt_lm(spare_rows=0), added_tokens=["</a>"])


def test_paper_recipes_state_the_authors_format_beams_and_batch():
    vqa = Config.from_yaml(ROOT / "adapters/epalm/vqa.yaml")
    task = vqa.tasks["vqa"]
    assert (task.prompt, task.target_separator, task.num_beams, task.prefix_loss_weight, task.train_answer) == \
        ("{question}?</a>", "", 3, None, "sampled")
    assert task.max_length == 30
    adapter = vqa.model.adapter
    assert adapter.added_tokens == ["</a>"] and adapter.loss == "authors" and adapter.lm_loss_weight == 0.1
    assert adapter.lm_dropout and adapter.prompt_mlp_hidden is None and adapter.write_every == "layer"
    assert vqa.train.batch_size == 64 * 4  # batch_size_train 64 per process, 4 processes
    batches = {"caption": 16 * 4, "videoqa": 8 * 4, "audiocaps": 8 * 4}
    for name, batch in batches.items():
        cfg = Config.from_yaml(ROOT / f"adapters/epalm/{name}.yaml")
        (task,) = cfg.tasks.values()
        assert cfg.train.batch_size == batch and task.num_beams == 3 and task.max_length == 30, name
        assert task.prefix_loss_weight is None and cfg.model.adapter.lm_dropout, name
        if name == "videoqa":
            assert (task.prompt, task.target_separator) == ("{question}?</a>", "")
        else:
            assert (task.prompt, task.target_separator) == ("", "")


# ------------------------------------------------------------------------- 7. leaky mask and generation
def _recompute_greedy(model, pv, prefix, steps):
    """Hand-rolled reference: no cache, the whole sequence re-run for every new token, one sample."""
    tok = model.lm.tokenizer
    ids = []
    for _ in range(steps):
        t = model.tokenize([prefix])
        if ids:
            t.ids = torch.cat([t.ids, torch.tensor([ids])], dim=1)
            t.mask = torch.ones_like(t.ids)
        with torch.no_grad():
            perception = model.perceive(pv)
            embeds, mask4d, positions, _ = model.prefill_inputs(t, perception)
            h = model.run_lm(embeds, mask4d, positions, perception, prefill=True).last_hidden_state
        nxt = int(model.lm.logits(h[:, -1]).argmax())
        if nxt == tok.eos_token_id:
            break
        ids.append(nxt)
    return tok.decode(ids, skip_special_tokens=True).strip()


class _HandRecompute:
    """A decoding state for ``decoding.beam_search`` written here: per row, (sample, tokens so far); every step
    re-runs each row's whole sequence alone."""

    def __init__(self, model, pv, prefixes):
        self.model, self.pv, self.prefixes = model, pv, prefixes
        self.rows = [(b, []) for b in range(len(prefixes))]

    def logprobs(self):
        out = []
        for b, ids in self.rows:
            t = self.model.tokenize([self.prefixes[b]])
            if ids:
                t.ids = torch.cat([t.ids, torch.tensor([ids])], dim=1)
                t.mask = torch.ones_like(t.ids)
            perception = self.model.perceive(self.pv[b:b + 1])
            embeds, mask4d, positions, _ = self.model.prefill_inputs(t, perception)
            h = self.model.run_lm(embeds, mask4d, positions, perception, prefill=True).last_hidden_state
            out.append(torch.log_softmax(self.model.lm.logits(h[0, -1]).float(), dim=-1))
        return torch.stack(out)

    def repeat_interleave(self, n):
        self.rows = [r for r in self.rows for _ in range(n)]

    def reorder(self, rows):
        self.rows = [self.rows[i] for i in rows.tolist()]

    def step(self, tokens):
        self.rows = [(b, ids + [t]) for (b, ids), t in zip(self.rows, tokens.tolist())]
        return self.logprobs()


@pytest.mark.parametrize("leaky", [True, False])
def test_generation_equals_full_recompute_greedy_and_beam(leaky):
    model = build(opt_lm(layers=4), start=2, end=4, leaky_visual_attention=leaky)
    pv = model.vision.preprocess(images(3))
    greedy = model.generate(pv, PROMPTS, max_new_tokens=6)
    assert greedy == [_recompute_greedy(model, pv[i:i + 1], p, 6) for i, p in enumerate(PROMPTS)]
    beams = model.generate(pv, PROMPTS, max_new_tokens=5, num_beams=3)
    with torch.no_grad():
        reference = _HandRecompute(model, pv, PROMPTS)
        expected = decoding.beam_search(model, reference.logprobs(), reference, 3, 3, 5, 1.0)
    assert beams == expected


def test_max_length_caps_prompt_plus_answer_as_hugging_face_counts():
    """The authors generate with ``max_length=30``: the batch's padded prompt (its start token included) and
    the answer together. Here: new tokens = min(max_new_tokens, max_length - padded prompt width)."""
    model = build(opt_lm(layers=4), start=2, end=4)
    pv = model.vision.preprocess(images(3))
    width = model.tokenize(PROMPTS).ids.shape[1]
    for beams in (1, 3):
        capped = model.generate(pv, PROMPTS, max_new_tokens=20, max_length=width + 2, num_beams=beams)
        assert capped == model.generate(pv, PROMPTS, max_new_tokens=2, num_beams=beams)
        assert model.generate(pv, PROMPTS, max_new_tokens=2, max_length=width + 9, num_beams=beams) == capped
    assert model.generate(pv, PROMPTS, max_new_tokens=5, max_length=width) == [""] * 3


def test_leaky_visual_state_depends_on_later_text_so_a_cache_would_be_stale():
    """Why leaky mode recomputes: appending text changes the visual slot's state at the writing layers."""
    model = build(opt_lm(layers=3), start=1, end=3, leaky_visual_attention=True)
    pv = model.vision.preprocess(images(1))
    states = []
    for prefix in ("question: what color is", "question: what color is the circle"):
        out = {}
        handle = model.lm.layers[2].register_forward_hook(lambda m, a, o: out.__setitem__("h", o[0] if isinstance(o, tuple) else o))
        with torch.no_grad():
            perception = model.perceive(pv)
            embeds, mask4d, positions, _ = model.prefill_inputs(model.tokenize([prefix]), perception)
            model.run_lm(embeds, mask4d, positions, perception, prefill=True)
        handle.remove()
        states.append(out["h"][0, 0])
    assert not torch.allclose(states[0], states[1])


def test_leaky_rank_scores_the_full_sequence():
    model = build(opt_lm(layers=4), start=2, end=4, leaky_visual_attention=True)
    pv = model.vision.preprocess(images(2))
    cands = ["red", "blue", "2", "left", "a red circle"]
    picked = model.rank(pv, PROMPTS[:2], cands, top_k=len(cands))
    assert picked == brute_force_rank(model, pv, PROMPTS[:2], cands)


# --------------------------------------------------------------------------------- 8. tokenizers without BOS
def gpt2_style() -> CausalLM:
    """A tiny GPT-2 whose tokenizer, like GPT-2's, adds no BOS (``tok("")`` is empty); BOS = EOS."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    base = word_tokenizer()
    vocab = dict(base.get_vocab())
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    tk.decoder = decoders.WordPiece(prefix="##")
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="</s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=4, n_head=2, n_positions=128,
                                       bos_token_id=2, eos_token_id=2, pad_token_id=0))
    model.config._attn_implementation = "sdpa"
    return CausalLM(model, tok)


def test_a_tokenizer_without_bos_gets_one_and_an_empty_prompt_works():
    lm = gpt2_style()
    assert lm.tokenizer("")["input_ids"] == [] and lm.tokenizer("caption:")["input_ids"][0] != 2
    model = build(lm, start=2, end=4)
    text = model.tokenize([""], ["a red circle"])
    assert text.ids.tolist() == [[2] + lm.tokenizer("a red circle")["input_ids"] + [2]]
    assert text.weights.tolist() == [[0.0, 1.0, 1.0, 1.0, 1.0]]
    text = model.tokenize(["caption:", ""], ["a red circle", "a red circle"])
    assert text.ids[0, 0].item() == 2 and text.mask.tolist() == [[1] * 7, [0, 0] + [1] * 5]
    pv = model.vision.preprocess(images(2))
    loss = model(pv, ["", "caption:"], ["a red circle", "2"])
    assert torch.isfinite(loss)
    assert len(model.generate(pv, ["", ""], max_new_tokens=3)) == 2


# ------------------------------------------------------------------ the training answer: drawn at every read
def test_sampled_training_answers_follow_the_authors_soft_scores():
    from collections import Counter

    from mmadapt.data.formats.vqa_v2 import VQASample
    from mmadapt.tasks.vqa import answer_choices
    from mmadapt.data.examples import Example, draw_target

    sample = VQASample(1, 1, "what is it", Path("x.jpg"), answers=["net"] * 7 + ["mesh"] * 2 + ["netting"])
    choices = answer_choices(sample)
    assert [a for a, _ in choices] == ["net", "mesh", "netting"]
    assert [w for _, w in choices] == pytest.approx([1.0, 0.6, 0.3])  # min(1, 0.3 · count)
    (b, wb), (a, wa) = answer_choices(VQASample(2, 1, "q", Path("x.jpg"), answers=["a"] * 3 + ["b"] * 4))
    assert (b, a) == ("b", "a") and (wb, wa) == pytest.approx((1.0, 0.9))
    ex = Example("x.jpg", "what is it", "net", None, "vqa", " ", choices)
    draws = Counter(draw_target(ex, 0, step, 7).target for step in range(4000))
    for answer, weight in choices:  # frequencies ∝ 1 : 0.6 : 0.3 (4000 draws: ±0.03)
        assert abs(draws[answer] / 4000 - weight / 1.9) < 0.03, draws
    assert draw_target(ex, 0, 5, 3) == draw_target(ex, 0, 5, 3)  # a function of (seed, step, index)
    assert len({draw_target(ex, s, 5, 3).target for s in range(20)}) > 1
    plain = Example("x.jpg", "what is it", "net", None, "vqa")
    assert draw_target(plain, 0, 5, 3) is plain  # no choices: the annotation's most common answer, always


def test_the_trainer_draws_the_answer_of_every_read_and_resumes_the_same_draws(scenes_root, tmp_path, monkeypatch):
    import mmadapt
    import mmadapt.tasks.vqa as vqa
    from tiny import make_model, tiny_config

    monkeypatch.setattr(vqa, "answer_choices", lambda s: (("yes", 1.0), ("no", 1.0)))

    def run(out):
        config = tiny_config(scenes_root, out)
        del config.tasks["caption"]
        config.tasks["vqa"].train_answer = "sampled"
        model = make_model(config)
        seen, collate = [], model.collate_train
        model.collate_train = lambda examples: (seen.append([e.target for e in examples]), collate(examples))[1]
        mmadapt.train(config, model=model, quiet=True)
        return seen

    seen = run(tmp_path / "a")
    assert len(seen) == 4 and {t for batch in seen for t in batch} == {"yes", "no"}
    assert run(tmp_path / "b") == seen
    config = tiny_config(scenes_root, tmp_path / "c")
    examples = mmadapt.build_tasks(config)["vqa"].train_examples()
    assert all(e.target_choices == () for e in examples)  # the default: the most common answer, no draw
