"""Decoding over a :class:`~mmadapt.models.perceptual_lm.PerceptualLM`: greedy search, beam search and
candidate ranking, apart from the model (as litgpt keeps generation apart from its model).

Every function runs the frozen LM in eval mode on a batch of prompts and its perception::

    prompt ids ─▶ prefill (adapter prefix + text) ─▶ log-probs of the next token ─▶ pick ─▶ step ─▶ ...

The *decoding state* (:func:`start`) is the KV cache — each step feeds only the new token — or, when the
adapter's prefix attends to later text (eP-ALM's leaky mask, where a cache would keep a stale prefix), a
state that re-runs the whole sequence for every new token, as eP-ALM's authors generate. Both answer the
same three calls: ``step(tokens)``, ``repeat_interleave(n)`` and ``reorder(rows)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from mmadapt.models.perceptual_lm import PerceptualLM, TextBatch


# ------------------------------------------------------------------------------------------- generation
@torch.no_grad()
def generate(model: PerceptualLM, pixel_values, prefix: list[str], max_new_tokens: int = 20, num_beams: int = 1,
             length_penalty: float = 1.0, max_length: int | None = None) -> list[str]:
    """Batched greedy / beam decoding; the perception enters at prefill (and at every recomputed step in
    leaky mode). ``max_length`` also caps the new tokens at ``max_length`` minus the batch's padded prompt
    length (its start token included), as Hugging Face ``generate`` counts."""
    text = model.tokenize(prefix)
    if max_length is not None:
        max_new_tokens = max(0, min(max_new_tokens, max_length - text.ids.shape[1]))
    B = len(prefix)
    if max_new_tokens == 0:  # nothing to generate: no perception, no prefill
        return [""] * B
    with model.lm_eval():
        perception = model.perceive(pixel_values.to(model.device))
        logprobs, state = start(model, text, perception)
        if num_beams > 1:
            return beam_search(model, logprobs, state, B, num_beams, max_new_tokens, length_penalty)
        eos = model.lm.tokenizer.eos_token_id
        out = torch.full((B, 0), eos, dtype=torch.long, device=model.device)
        done = torch.zeros(B, dtype=torch.bool, device=model.device)
        for _ in range(max_new_tokens):
            nxt = logprobs.argmax(dim=-1)
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            out = torch.cat([out, nxt[:, None]], dim=1)
            done |= nxt == eos
            if bool(done.all()):
                break
            logprobs = state.step(nxt)
        return [model.decode(row) for row in out]


def beam_search(model: PerceptualLM, logprobs: torch.Tensor, state, B: int, beams: int, max_new_tokens: int,
                length_penalty: float) -> list[str]:
    """Beam search over a batch in which every sample is decided as if it ran alone: once a sample meets the
    stopping rule (:func:`sample_done`) its answer is fixed, and it gets no more beams or hypotheses while
    the rest of the batch goes on (HF's ``BeamScorer`` ``_done`` flags), so batch composition never changes
    an answer. ``logprobs`` [B, V]: the first step's; ``state``: the decoding state of :func:`start`."""
    device = model.device
    eos = model.lm.tokenizer.eos_token_id
    V = logprobs.shape[-1]
    state.repeat_interleave(beams)
    scores = torch.full((B, beams), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: keep one alive
    logprobs = logprobs.repeat_interleave(beams, dim=0)
    seqs = torch.zeros(B * beams, 0, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    answers: list[list[int] | None] = [None] * B  # a sample's answer, once decided
    for _ in range(max_new_tokens):
        cand = (scores.view(B * beams, 1) + logprobs).view(B, beams * V)
        top_scores, top_idx = cand.topk(2 * beams, dim=1)
        beam_idx, token_idx = top_idx // V, top_idx % V
        new_scores = torch.full((B, beams), float("-inf"), device=device)
        new_tokens = torch.full((B, beams), eos, dtype=torch.long, device=device)
        new_src = torch.zeros((B, beams), dtype=torch.long, device=device)
        for b in range(B):
            if answers[b] is not None:  # decided: no live beams (its rows only ride along in the cache)
                continue
            k = 0
            for s, bi, ti in zip(top_scores[b].tolist(), beam_idx[b].tolist(), token_idx[b].tolist()):
                if s == float("-inf"):
                    break
                if ti == eos:
                    hyp = seqs[b * beams + bi].tolist()
                    finished[b].append((s / max(len(hyp) + 1, 1) ** length_penalty, hyp))
                    continue
                new_scores[b, k], new_tokens[b, k], new_src[b, k] = s, ti, bi
                k += 1
                if k == beams:
                    break
        flat_src = (torch.arange(B, device=device)[:, None] * beams + new_src).view(-1)
        seqs = torch.cat([seqs[flat_src], new_tokens.view(-1, 1)], dim=1)
        scores = new_scores
        for b in range(B):
            if answers[b] is None and sample_done(finished[b], scores[b], beams, seqs.shape[1], length_penalty):
                answers[b] = best_hypothesis(finished[b], scores[b], seqs[b * beams:(b + 1) * beams], length_penalty)
        if all(a is not None for a in answers):
            break
        state.reorder(flat_src)
        logprobs = state.step(new_tokens.view(-1))
    for b in range(B):  # max_new_tokens reached: the best of what finished and what is still alive
        if answers[b] is None:
            answers[b] = best_hypothesis(finished[b], scores[b], seqs[b * beams:(b + 1) * beams], length_penalty)
    return [model.decode(torch.tensor(a, dtype=torch.long)) for a in answers]


def best_hypothesis(finished, scores: torch.Tensor, seqs: torch.Tensor, length_penalty: float) -> list[int]:
    """The best of a sample's finished hypotheses and its live beams (``scores`` [beams], ``seqs`` [beams, T]),
    each scored by its log-probability over length ** ``length_penalty``; [] when there is none."""
    pool = list(finished)
    for k in range(scores.shape[0]):
        if scores[k] > float("-inf"):
            hyp = seqs[k].tolist()
            pool.append((scores[k].item() / max(len(hyp), 1) ** length_penalty, hyp))
    return max(pool, key=lambda x: x[0])[1] if pool else []


def sample_done(done, scores: torch.Tensor, beams: int, cur_len: int, length_penalty: float) -> bool:
    """A sample is decided when it has no live beam, or ``beams`` finished hypotheses of which the best is not
    beaten by its best live beam (HF's heuristic)."""
    best_alive = scores.max().item()
    if best_alive == float("-inf"):
        return True
    return len(done) >= beams and max(x[0] for x in done) >= best_alive / cur_len ** length_penalty


# ---------------------------------------------------------------------------------------------- ranking
@torch.no_grad()
def rank(model: PerceptualLM, pixel_values, prefix: list[str], candidates: list[str], top_k: int = 16,
         separator: str = " ") -> list[str]:
    """VQA ranking mode: keep the ``top_k`` candidates by first-token probability, then pick the one with the
    highest full-answer log-likelihood (``separator + answer`` tokens + EOS). With the KV cache the prompt is
    prefilled once and the kept candidates continue it side by side; in leaky mode each full answer is
    scored by recomputing prefix + answer (the perceptual slot sees the answer)."""
    with model.lm_eval():
        tok, device = model.lm.tokenizer, model.device
        cand_ids = [tok(separator + c, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for c in candidates]
        first = torch.tensor([c[0] for c in cand_ids], device=device)
        perception = model.perceive(pixel_values.to(device))
        text = model.tokenize(prefix)
        embeds, mask4d, positions, valid = model.prefill_inputs(text, perception)
        leaky = model.adapter.prefix_attends_future
        cache = None if leaky else model.lm.new_cache()
        hidden = model.run_lm(embeds, mask4d, positions, perception, prefill=True, cache=cache).last_hidden_state
        first_lp = F.log_softmax(model.lm.logits(hidden[:, -1]).float(), dim=-1)[:, first]  # [B, C]
        k = min(top_k, len(candidates))
        top = first_lp.topk(k, dim=1).indices  # [B, k]
        B = embeds.shape[0]
        if leaky:
            total = sequence_logprob(model, [p for p in prefix for _ in range(k)],
                                     [candidates[c] for c in top.view(-1).tolist()],
                                     take_rows(perception, torch.arange(B, device=device).repeat_interleave(k)),
                                     separator)
            best = total.view(B, k).argmax(dim=1)
            return [candidates[top[b, best[b]].item()] for b in range(B)]
        width = max(len(cand_ids[c]) for c in top.view(-1).tolist())
        cont = torch.full((B * k, width), tok.pad_token_id, dtype=torch.long, device=device)
        cont_mask = torch.zeros((B * k, width), dtype=torch.long, device=device)
        for row, c in enumerate(top.view(-1).tolist()):
            cont[row, : len(cand_ids[c])] = torch.tensor(cand_ids[c])
            cont_mask[row, : len(cand_ids[c])] = 1
        cache.batch_repeat_interleave(k)
        valid_k = valid.repeat_interleave(k, dim=0)
        start_pos = (positions[:, -1] + 1).repeat_interleave(k, dim=0)
        # continuation: right-padded candidates, causal within, full view of the cached prefix
        full_valid = torch.cat([valid_k, cont_mask], dim=1).bool()
        P = valid_k.shape[1]
        causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
        allowed = torch.cat([full_valid[:, None, :P].expand(-1, width, -1),
                             causal[None] & full_valid[:, None, P:]], dim=2)
        pos = start_pos[:, None] + torch.arange(width, device=device)[None]
        hidden_c = model.run_lm(model.embed_tokens(cont), additive_mask(allowed, model.lm.dtype), pos, None,
                                prefill=False, cache=cache).last_hidden_state
        lp = F.log_softmax(model.lm.logits(hidden_c[:, :-1]).float(), dim=-1)
        tok_lp = lp.gather(-1, cont[:, 1:, None]).squeeze(-1) * cont_mask[:, 1:]
        total = first_lp.gather(1, top).view(-1) + tok_lp.sum(dim=1)
        best = total.view(B, k).argmax(dim=1)
        return [candidates[top[b, best[b]].item()] for b in range(B)]


def sequence_logprob(model: PerceptualLM, prefixes: list[str], targets: list[str], perception,
                     separator: str) -> torch.Tensor:
    """Log-likelihood of each ``separator + target`` + EOS after its prefix, one full forward [N]."""
    text = model.tokenize(prefixes, targets, 0.0, separator)
    embeds, mask4d, positions, _ = model.prefill_inputs(text, perception)
    hidden = model.run_lm(embeds, mask4d, positions, perception, prefill=True).last_hidden_state
    K = embeds.shape[1] - text.ids.shape[1]
    weights = text.weights.to(model.device)[:, 1:]
    rows, cols = weights.nonzero(as_tuple=True)
    lp = F.log_softmax(model.lm.logits(hidden[rows, K + cols]).float(), dim=-1)
    picked = lp.gather(-1, text.ids.to(model.device)[:, 1:][rows, cols, None]).squeeze(-1)
    return torch.zeros(len(prefixes), device=model.device).index_add_(0, rows, picked)


# ------------------------------------------------------------------------------------- decoding states
def start(model: PerceptualLM, text: TextBatch, perception):
    """Prefill ``text`` → (log-probs of the next token [B, V], the decoding state)."""
    embeds, mask4d, positions, valid = model.prefill_inputs(text, perception)
    if model.adapter.prefix_attends_future:
        hidden = model.run_lm(embeds, mask4d, positions, perception, prefill=True).last_hidden_state
        return last_logprobs(model, hidden), RecomputeState(model, text, perception)
    cache = model.lm.new_cache()
    hidden = model.run_lm(embeds, mask4d, positions, perception, prefill=True, cache=cache).last_hidden_state
    return last_logprobs(model, hidden), CachedState(model, cache, valid, positions[:, -1] + 1)


class CachedState:
    """Decoding with the KV cache: each step feeds only the new tokens."""

    def __init__(self, model: PerceptualLM, cache, valid: torch.Tensor, next_pos: torch.Tensor):
        self.model, self.cache, self.valid, self.next_pos = model, cache, valid, next_pos

    def step(self, token_ids: torch.Tensor) -> torch.Tensor:
        """``token_ids`` [B] appended → log-probs of the next token [B, V]."""
        model = self.model
        self.valid = torch.cat([self.valid, torch.ones_like(self.valid[:, :1])], dim=1)
        mask4d = additive_mask(self.valid.bool()[:, None, :], model.lm.dtype)  # [B, 1, 1, K]
        hidden = model.run_lm(model.embed_tokens(token_ids[:, None]), mask4d, self.next_pos[:, None], None,
                              prefill=False, cache=self.cache).last_hidden_state
        self.next_pos = self.next_pos + 1
        return last_logprobs(model, hidden)

    def repeat_interleave(self, n: int) -> None:
        self.cache.batch_repeat_interleave(n)
        self.valid = self.valid.repeat_interleave(n, dim=0)
        self.next_pos = self.next_pos.repeat_interleave(n, dim=0)

    def reorder(self, rows: torch.Tensor) -> None:
        self.cache.reorder_cache(rows)
        self.valid, self.next_pos = self.valid[rows], self.next_pos[rows]


class RecomputeState:
    """Decoding without a cache: each step re-runs the whole sequence (perception, prefix, text so far) as a
    prefill, so a prefix that attends to later text (eP-ALM's leaky mask) sees every generated token."""

    def __init__(self, model: PerceptualLM, text: TextBatch, perception):
        self.model, self.perception = model, perception
        self.ids, self.mask = text.ids.to(model.device), text.mask.to(model.device)

    def step(self, token_ids: torch.Tensor) -> torch.Tensor:
        from mmadapt.models.perceptual_lm import TextBatch

        self.ids = torch.cat([self.ids, token_ids[:, None]], dim=1)
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        text = TextBatch(self.ids, self.mask, torch.zeros_like(self.ids, dtype=torch.float32))
        embeds, mask4d, positions, _ = self.model.prefill_inputs(text, self.perception)
        hidden = self.model.run_lm(embeds, mask4d, positions, self.perception, prefill=True).last_hidden_state
        return last_logprobs(self.model, hidden)

    def repeat_interleave(self, n: int) -> None:
        self.reorder(torch.arange(self.ids.shape[0], device=self.ids.device).repeat_interleave(n))

    def reorder(self, rows: torch.Tensor) -> None:
        self.ids, self.mask = self.ids[rows], self.mask[rows]
        self.perception = take_rows(self.perception, rows)


# ------------------------------------------------------------------------------------------------ helpers
def take_rows(perception, rows: torch.Tensor):
    """Rows ``rows`` of a batch's perception (a tensor [B, ...] or a :class:`~mmadapt.adapters.solo.PatchBatch`;
    both index by a list of row numbers)."""
    return None if perception is None else perception[rows.tolist()]


def last_logprobs(model: PerceptualLM, hidden: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of the token after the last column, [B, V] (float32)."""
    return F.log_softmax(model.lm.logits(hidden[:, -1]).float(), dim=-1)


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean [B, Q, K] → additive float mask [B, 1, Q, K] (0 where allowed, dtype-min elsewhere)."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.unsqueeze(1)
