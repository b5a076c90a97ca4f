"""eP-ALM: injection schedule, masks, positions, gradients, KV-cache generation, save/load."""

from __future__ import annotations

import random

import pytest
import torch
from tiny import brute_force_rank, make_model, tiny_lm, tiny_vit

from mmadapt.adapters.epalm import EPALM, EPALMConfig
from mmadapt.config import ModelConfig
from mmadapt.data.synthetic.scene_world import render_scene, sample_scene
from mmadapt.errors import ConfigError
from mmadapt.models import decoding
from mmadapt.models.perceptual_lm import PerceptualLM

PROMPTS = ["question: what color is the circle? answer:", "caption:", "question: how many objects are there? answer:"]


def images(n=3, seed=0, size=32):
    rng = random.Random(seed)
    return [render_scene(sample_scene(rng), size, rng) for _ in range(n)]


def build(kind="opt", layers=4, **cfg):
    cfg = EPALMConfig(**{"n_injected": 2, "prompt_len": 3, **cfg})
    lm, vit = tiny_lm(kind, layers=layers), tiny_vit()
    torch.manual_seed(1)
    model = PerceptualLM(ModelConfig(adapter=cfg), lm, vit, EPALM(cfg, lm, vit))
    with torch.no_grad():  # a non-trivial adapter, so that tests see its effect
        for p in model.adapter.parameters():
            p.normal_(0, 0.5)
    return model


def test_injection_layers_follow_the_paper():
    # OPT-2.7B: 32 layers, [19, 31), 6 tokens → step 2; every layer writes (the authors' text_step 1)
    assert EPALMConfig(start=19, end=31).injection_layers(32) == list(range(19, 31))
    assert EPALMConfig(start=11, end=23).injection_plan(24) == {11 + i: i // 2 for i in range(12)}
    # write_every: step — mmadapt's earlier schedule, one write per token
    assert EPALMConfig(start=19, end=31, write_every="step").injection_layers(32) == [19, 21, 23, 25, 27, 29]
    assert EPALMConfig(n_injected=2, start=1, end=4).injection_plan(4) == {1: 0, 2: 1, 3: 1}
    with pytest.raises(ConfigError, match="n_injected"):
        EPALMConfig(n_injected=6, start=2, end=5).validate()
    with pytest.raises(ConfigError, match="start/end"):
        EPALMConfig(n_injected=2, start=3, end=9).injection_layers(4)


def _layer_outputs(model, pixel_values, prefixes):
    outs = {}
    handles = [layer.register_forward_hook(lambda m, a, o, i=i: outs.__setitem__(i, (o[0] if isinstance(o, tuple) else o).detach()))
               for i, layer in enumerate(model.lm.layers)]
    with torch.no_grad():
        tokens = model.perceive(pixel_values)
        text = model.tokenize(prefixes)
        embeds, mask4d, positions, _ = model.prefill_inputs(text)
        model.run_lm(embeds, mask4d, positions, tokens, prefill=True)
    for h in handles:
        h.remove()
    return outs


@pytest.mark.parametrize("kind", ["opt", "gpt2"])
def test_layers_below_start_see_only_text(kind):
    model = build(kind, layers=4, start=2, end=4)
    assert model.adapter.layers == [2, 3]
    a = _layer_outputs(model, model.vision.preprocess(images(3, seed=0)), PROMPTS)
    b = _layer_outputs(model, model.vision.preprocess(images(3, seed=5)), PROMPTS)
    K = model.adapter.n_prefix
    for layer in (0, 1):  # below start: text (and prompt) states do not depend on the image
        torch.testing.assert_close(a[layer][:, 1:], b[layer][:, 1:], rtol=0, atol=0)
    assert not torch.allclose(a[2][:, K:], b[2][:, K:])  # from start on, text reads the perceptual token
    assert not torch.allclose(a[3][:, K:], b[3][:, K:])


def test_perceptual_token_is_prepended_then_replaced():
    model = build("opt", layers=4, start=1, end=4, n_injected=3)
    assert model.adapter.layers == [1, 2, 3]
    pv = model.vision.preprocess(images(2))
    seen = {}
    handles = [model.lm.layers[i].register_forward_pre_hook(
        lambda m, a, kw, i=i: seen.__setitem__(i, (a[0] if a else kw["hidden_states"])[:, 0].clone()), with_kwargs=True)
        for i in range(4)]
    # pre-hooks run in registration order: ours were registered after the adapter's injector, so they see
    # the hidden state the layer actually receives
    with torch.no_grad():
        tokens = model.perceive(pv)
        text = model.tokenize(PROMPTS[:2])
        embeds, mask4d, positions, _ = model.prefill_inputs(text)
        model.run_lm(embeds, mask4d, positions, tokens, prefill=True)
    for h in handles:
        h.remove()
    for k, layer in enumerate([1, 2, 3]):
        torch.testing.assert_close(seen[layer], tokens[:, k])


def test_causal_visual_token_does_not_read_text_unless_leaky():
    for leaky in (False, True):
        model = build("opt", layers=3, start=1, end=3, leaky_visual_attention=leaky)
        pv = model.vision.preprocess(images(1))
        out_a = _layer_outputs(model, pv, ["question: what color is the circle? answer:"])
        out_b = _layer_outputs(model, pv, ["question: how many objects are there? answer:"])
        same = torch.allclose(out_a[2][:, 0], out_b[2][:, 0])
        assert same is (not leaky)


def test_prompt_and_slot_carry_no_position_embedding():
    model = build("opt", layers=2, start=1, end=2, n_injected=1)
    captured = {}
    h = model.lm.layers[0].register_forward_pre_hook(
        lambda m, a, kw: captured.__setitem__("x", (a[0] if a else kw["hidden_states"]).detach()), with_kwargs=True)
    pv = model.vision.preprocess(images(2))
    with torch.no_grad():
        text = model.tokenize(PROMPTS[:2])
        embeds, mask4d, positions, _ = model.prefill_inputs(text)
        model.run_lm(embeds, mask4d, positions, model.perceive(pv), prefill=True)
    h.remove()
    prompt = model.adapter.prompt(2)
    torch.testing.assert_close(captured["x"][:, 1:4], prompt)  # exactly the prompt: no position added
    assert torch.all(captured["x"][:, 0] == 0)  # the slot placeholder below `start`


def test_gradients_reach_exactly_the_adapter(model):
    pv = model.vision.preprocess(images(3))
    loss = model(pv, PROMPTS, ["red", "a red circle on the left.", "2"])
    loss.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith("adapter.")}
    assert grads == trainable
    assert all(not p.requires_grad for p in model.lm.parameters())
    assert all(not p.requires_grad for p in model.vision.parameters())


def test_loss_weights_question_tokens_at_one_tenth(model):
    # an explicit prefix weight (the task's prefix_loss_weight, or loss: weighted's default)
    text = model.tokenize(["question: what color is the circle? answer:"], ["red"], 0.1)
    w = text.weights[0][text.mask[0].bool()].tolist()
    assert w[0] == 0.0  # BOS is never predicted
    assert w[-2:] == [1.0, 1.0]  # "red" + EOS
    assert w[1:-2] == pytest.approx([0.1] * (len(w) - 3))


@pytest.mark.parametrize("kind", ["opt", "gpt2"])
def test_kv_cache_generation_matches_full_recompute(kind):
    model = build(kind, layers=4, start=2, end=4)
    pv = model.vision.preprocess(images(3))
    fast = model.generate(pv, PROMPTS, max_new_tokens=6)
    # reference: no cache, the whole sequence recomputed for every new token, one sample at a time
    tok = model.lm.tokenizer
    for i, prefix in enumerate(PROMPTS):
        text = prefix
        ids = []
        for _ in range(6):
            t = model.tokenize([prefix])
            if ids:
                t.ids = torch.cat([t.ids, torch.tensor([ids])], dim=1)
                t.mask = torch.ones_like(t.ids)
            with torch.no_grad():
                embeds, mask4d, positions, _ = model.prefill_inputs(t)
                h = model.run_lm(embeds, mask4d, positions, model.perceive(pv[i:i + 1]), prefill=True).last_hidden_state
            nxt = int(model.lm.logits(h[:, -1]).argmax())
            if nxt == tok.eos_token_id:
                break
            ids.append(nxt)
        assert fast[i] == tok.decode(ids, skip_special_tokens=True).strip(), text


def test_batched_generation_equals_one_at_a_time(model):
    pv = model.vision.preprocess(images(3))
    together = model.generate(pv, PROMPTS, max_new_tokens=5)
    alone = [model.generate(pv[i:i + 1], [p], max_new_tokens=5)[0] for i, p in enumerate(PROMPTS)]
    assert together == alone


def test_beam_search_with_one_beam_is_greedy_and_beams_score_higher(model):
    pv = model.vision.preprocess(images(3))
    greedy = model.generate(pv, PROMPTS, max_new_tokens=5)
    assert model.generate(pv, PROMPTS, max_new_tokens=5, num_beams=1) == greedy
    beams = model.generate(pv, PROMPTS, max_new_tokens=5, num_beams=3)
    assert len(beams) == 3 and all(isinstance(b, str) for b in beams)


class _ScriptedLM:
    """Stands in for PerceptualLM inside ``decoding.beam_search`` and for its decoding state: the
    log-probabilities of the next token (0 = EOS, 1, 2) are a table of (sample, tokens so far); the decoding
    state is each row's sample and token history."""

    TABLES = {
        # sample 0 alone: after step 2 it has finished "1" (-0.6 / 2 = -0.3) and "2" (-0.6), its best live beam
        # scores -1.05 / 2, so it is decided: "1". Beams kept alive past that point would later finish "2 1 1"
        # at -1.07 / 4 = -0.27 > -0.3 — an answer that depends on whether a longer sample shares the batch.
        0: {(): [-9, -0.5, -1.0], (1,): [-0.1, -3, -3], (2,): [-0.2, -0.05, -9], (2, 1): [-9, -0.01, -9],
            (2, 1, 1): [-0.01, -9, -9], (1, 1): [-0.1, -9, -8]},
        1: {},  # sample 1 never ends: "1" at -0.01 forever, to max_new_tokens
    }
    DEFAULT = {0: [-5, -6, -7], 1: [-9, -0.01, -8]}

    def __init__(self):
        from types import SimpleNamespace

        self.lm = SimpleNamespace(tokenizer=SimpleNamespace(eos_token_id=0))
        self.device = torch.device("cpu")
        self.samples: list[int] = []
        self.history: list[tuple[int, ...]] = []

    def logprobs(self) -> torch.Tensor:
        return torch.tensor([self.TABLES[s].get(h, self.DEFAULT[s]) for s, h in zip(self.samples, self.history)],
                            dtype=torch.float32)

    # the decoding-state interface beam_search uses
    def repeat_interleave(self, n: int) -> None:
        self.samples = [s for s in self.samples for _ in range(n)]
        self.history = [h for h in self.history for _ in range(n)]

    def reorder(self, rows: torch.Tensor) -> None:
        self.samples = [self.samples[i] for i in rows.tolist()]
        self.history = [self.history[i] for i in rows.tolist()]

    def step(self, tokens):
        self.history = [h + (t,) for h, t in zip(self.history, tokens.tolist())]
        return self.logprobs()

    def decode(self, ids: torch.Tensor) -> tuple[int, ...]:
        return tuple(ids.tolist())

    def search(self, samples: list[int], beams: int = 2, max_new_tokens: int = 6):
        self.samples, self.history = list(samples), [() for _ in samples]
        return decoding.beam_search(self, self.logprobs(), self, len(samples), beams, max_new_tokens, 1.0)


def test_batched_beam_search_decides_each_sample_as_if_it_ran_alone():
    lm = _ScriptedLM()
    alone = [lm.search([0])[0], lm.search([1])[0]]
    assert alone == [(1,), (1, 1, 1, 1, 1, 1)]
    assert lm.search([0, 1]) == alone
    assert lm.search([1, 0]) == alone[::-1]


def test_rank_picks_the_most_likely_candidate(model):
    pv = model.vision.preprocess(images(2))
    cands = ["red", "blue", "2", "left", "a red circle"]
    picked = model.rank(pv, PROMPTS[:2], cands, top_k=len(cands))
    # brute force: full log-likelihood of every candidate (answer tokens + EOS), one forward each
    assert picked == brute_force_rank(model, pv, PROMPTS[:2], cands)


def test_save_load_gives_identical_generations(model, tmp_path):
    pv = model.vision.preprocess(images(3))
    before = model.generate(pv, PROMPTS, max_new_tokens=5)
    model.save_pretrained(tmp_path / "adapter")
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    fresh = make_model(model.config, seed=0)
    with torch.no_grad():
        for p in fresh.adapter.parameters():
            p.zero_()
    fresh.load_adapter(tmp_path / "adapter")
    assert fresh.generate(pv, PROMPTS, max_new_tokens=5) == before
    for (n, a), (_, b) in zip(model.adapter.state_dict().items(), fresh.adapter.state_dict().items()):
        assert torch.equal(a, b), n


def test_trainable_share_is_printed(model, capsys):
    line = model.print_trainable_parameters()
    assert "trainable params:" in capsys.readouterr().out
    trainable = sum(p.numel() for p in model.adapter.parameters())
    assert f"{trainable:,d}" in line


def test_opt_with_projected_embeddings_trains_and_generates():
    """OPT-350m-style LMs embed at a narrower width than their layers (512 → project_in → 1024): the slot and
    the prompt are input columns (embedding width), the injected tokens are layer states (layer width)."""
    from tiny import word_tokenizer
    from transformers import OPTConfig, OPTForCausalLM

    from mmadapt.backbones.lm import CausalLM

    torch.manual_seed(0)
    tok = word_tokenizer()
    cfg = OPTConfig(vocab_size=len(tok), hidden_size=32, word_embed_proj_dim=16, num_hidden_layers=4, ffn_dim=64,
                    num_attention_heads=2, max_position_embeddings=128, pad_token_id=0, bos_token_id=2,
                    eos_token_id=2, dropout=0.0)
    lm, vit = CausalLM(OPTForCausalLM(cfg), tok), tiny_vit()
    config = ModelConfig(adapter=EPALMConfig(n_injected=2, start=2, end=4, prompt_len=3))
    model = PerceptualLM(config, lm, vit, EPALM(config.adapter, lm, vit))
    assert model.adapter.prompt.embedding.embedding_dim == 16 and model.adapter.connectors[0].out_features == 32
    pv = model.vision.preprocess(images(2))
    loss = model(pv, PROMPTS[:2], ["red", "two"])
    loss.backward()
    assert torch.isfinite(loss) and model.adapter.connectors[0].weight.grad.abs().sum() > 0
    assert len(model.generate(pv, PROMPTS[:2], max_new_tokens=3)) == 2
