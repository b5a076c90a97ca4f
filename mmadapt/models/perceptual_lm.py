"""PerceptualLM: perception → frozen LM → text.

``forward(batch) -> loss`` trains; ``generate(batch) -> list[str]`` answers or captions (greedy or beam
search, with the KV cache — or, for an adapter whose first prefix column attends to later text, eP-ALM's leaky
mask, recomputing the whole sequence for every new token); ``rank(batch, candidates) -> list[str]`` picks VQA
answers from a list.

A batch (:meth:`PerceptualLM.load_batch`, through :func:`mmadapt.io.batch.load_each`) holds ``pixel_values`` (what the image side's
``preprocess`` returns: [B, 3, H, W] for a vision encoder, a :class:`~mmadapt.adapters.solo.PatchBatch` for
SOLO), ``prefix`` (list of prompt texts, e.g. ``"question: what color is the circle? answer:"``, or the eP-ALM
authors' ``"what color is the circle??</a>"``) and, for training, ``target`` (the answer or caption). The text
is ``prefix + separator + target + EOS`` (``separator``: the task's ``target_separator``, default one space;
the prefix starts with the tokenizer's BOS, or with BOS / EOS added here for tokenizers that add none, e.g.
GPT-2's).

The loss (:class:`~mmadapt.adapters.base.TextLoss`, declared by the adapter, so each method's default is its
authors'): each predicted token has a weight — prefix tokens the task's ``prefix_loss_weight`` when set, else the
adapter's (eP-ALM: 1, every question token scored; SOLO and others: 0, the answer only), target tokens + EOS 1,
padding and the first token 0 — and the weighted token cross-entropies are reduced per the adapter's
``reduction`` (eP-ALM: summed per sample, mean over the batch; SOLO: mean over the batch's scored tokens;
others: mean per sample, then over the batch) and multiplied by its ``scale`` (eP-ALM: ``lm_loss_weight`` 0.1).

The LM input is the adapter's prefix (:class:`~mmadapt.adapters.base.InputPrefix`; eP-ALM: perceptual
slot + soft prompt, without positions; SOLO: ``<vision>`` patches and row separators ``</vision>``, each
sample's span left-padded to the longest, with positions) followed by the text, left-padded; positions count
real tokens only. The attention mask is built here as a 4D additive mask (causal, padding hidden as a key)
so the adapter's hooks can edit it per layer.

The frozen LM runs in eval mode, except while training an adapter that declares ``lm_dropout`` (eP-ALM: the
authors train with the whole model in train mode); generation and ranking always run it in eval mode.

Adapters follow :class:`~mmadapt.adapters.base.PerceptualAdapter`. Those that read pixels themselves
(SOLO) get no vision encoder: ``self.vision`` is then their image processor, which keeps the tasks'
``model.vision.load`` / ``model.vision.preprocess`` calls working.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmadapt.adapters.base import PerceptualAdapter, TextLoss
from mmadapt.backbones.lm import CausalLM
from mmadapt.backbones.vision import VisionEncoder, load_vision_encoder
from mmadapt.config import BackboneConfig, ModelConfig
from mmadapt.errors import ConfigError
from mmadapt.io.batch import load_each
from mmadapt.models.base import Assembly
from mmadapt.registry import get, register


@dataclasses.dataclass
class TextBatch:
    """Tokenised, left-padded text: ``ids`` [B, T], ``mask`` [B, T] (1 = token), ``weights`` [B, T] (loss
    weight of *predicting* token t, 0 for padding / BOS / unscored)."""

    ids: torch.Tensor
    mask: torch.Tensor
    weights: torch.Tensor


@register("assemblies", "perceptual_lm")
class PerceptualLM(Assembly):
    """A frozen causal LM ``lm`` reading perception through ``adapter``; ``vision`` is the frozen encoder, or,
    for an adapter that reads pixels itself (``uses_vision_encoder`` False), that adapter's image processor."""

    def __init__(self, config: ModelConfig, lm: CausalLM, vision: VisionEncoder, adapter: PerceptualAdapter):
        super().__init__()
        self.config = config
        self.lm = lm
        self.vision = vision
        self.adapter = adapter
        self.feature_store = None  # a FeatureStore of the adapter's encoder features (use_feature_cache)
        adapter.attach(lm)

    # ------------------------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: ModelConfig, label_space=None) -> "PerceptualLM":
        """Load the frozen backbones named in ``config`` and build a fresh adapter (``model.vision`` is not
        loaded for an adapter that reads pixels itself). Nothing is sized by the data (``label_space`` is
        not read): answers are text."""
        adapter_cls = get("adapters", config.adapter.name)
        if not issubclass(adapter_cls, PerceptualAdapter):
            raise ConfigError(f"model.adapter.name: {config.adapter.name!r} is not an adapter of perceptual_lm "
                              "(e.g. epalm, solo)")
        lm = _load_lm(config.lm)
        if not adapter_cls.uses_vision_encoder:
            adapter = adapter_cls(config.adapter, lm)
            return cls(config, lm, adapter.processor, adapter)
        vision = _load_vision(config.vision)
        adapter = adapter_cls(config.adapter, vision.hidden_size, vision.num_layers, lm)
        return cls(config, lm, vision, adapter)

    def _metadata(self) -> dict:
        return {"peft_type": self.config.adapter.name.upper(), "adapter_type": self.config.adapter.name,
                "base_model_name_or_path": self.config.lm.name,
                "vision_model_name_or_path": self.config.vision.name if self.adapter.uses_vision_encoder else None}

    # ------------------------------------------------------------------------------- trainer contract
    @property
    def trained_module(self) -> nn.Module:
        """What a checkpoint holds: the adapter."""
        return self.adapter

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return self.adapter.param_groups()  # eP-ALM: its soft prompt has its own LR

    def collate_train(self, examples) -> tuple[dict | None, list[str]]:
        """Training examples → ``forward`` keyword arguments (None if no image loaded) and load errors.

        With a feature store (:meth:`use_feature_cache`) the examples whose file is in it get their encoder
        features from it (no decoding, no encoder); the others are loaded and encoded here, without a graph.
        """
        if self.feature_store is not None:
            return self._collate_cached(examples)
        kept, inputs, errors = self.load_batch([ex.image_path for ex in examples])
        if inputs is None:
            return None, [msg for _, msg in errors]
        kept_ex = [examples[i] for i in kept]
        return {**inputs, "prefix": [e.prefix for e in kept_ex], "target": [e.target for e in kept_ex],
                "prefix_loss_weight": [e.prefix_weight for e in kept_ex],
                "separator": [e.target_separator for e in kept_ex]}, [msg for _, msg in errors]

    def load_batch(self, sources: Sequence) -> tuple[list[int], dict | None, list[tuple[int, str]]]:
        """Read and preprocess the inputs at ``sources`` (image / clip / sound files) tolerantly: (indices
        that loaded, ``{"pixel_values"}`` or None, [(index, error)])."""
        loaded = load_each(sources, self.vision.load)
        return loaded.kept, ({"pixel_values": self.vision.preprocess(loaded.items)} if loaded.items else None), \
            loaded.errors

    def use_feature_cache(self, store) -> None:
        """Read the adapter's encoder features from ``store`` (a :class:`~mmadapt.training.feature_cache.
        FeatureStore` built for this encoder, preprocessing and feature kind) in training; None: stop."""
        if store is not None and self.adapter.feature_kind != store.meta.get("feature"):
            raise ConfigError(f"train.feature_cache: the store holds {store.meta.get('feature')!r} features, "
                              f"adapter {self.config.adapter.name!r} reads {self.adapter.feature_kind!r}")
        self.feature_store = store
        self.feature_cache_misses = 0

    def _collate_cached(self, examples) -> tuple[dict | None, list[str]]:
        rows = self.feature_store.rows_for([ex.image_path for ex in examples])
        hits = [i for i, r in enumerate(rows) if r is not None]
        misses = [i for i, r in enumerate(rows) if r is None]
        features: dict[int, torch.Tensor] = {}
        if hits:
            for i, f in zip(hits, self.feature_store.read([rows[i] for i in hits])):
                features[i] = f
        errors: list[str] = []
        if misses:
            self.feature_cache_misses += len(misses)
            kept_misses, inputs, bad = self.load_batch([examples[i].image_path for i in misses])
            errors = [msg for _, msg in bad]
            if inputs is not None:
                computed = self.adapter.encoder_features(self.vision, inputs["pixel_values"].to(self.device)).cpu()
                features.update(zip([misses[j] for j in kept_misses], computed))
        kept = sorted(features)
        if not kept:
            return None, errors
        return {"features": torch.stack([features[i] for i in kept]),
                "prefix": [examples[i].prefix for i in kept], "target": [examples[i].target for i in kept],
                "prefix_loss_weight": [examples[i].prefix_weight for i in kept],
                "separator": [examples[i].target_separator for i in kept]}, errors

    # ------------------------------------------------------------------------------------------- modes
    def train(self, mode: bool = True) -> "PerceptualLM":
        super().train(mode)
        # frozen parts never train; the LM's dropout is on while training only if the adapter declares it (the
        # Hugging Face model inside the frozen wrapper, which itself always stays in eval mode)
        self.lm.eval()
        if mode and self.adapter.lm_dropout:
            self.lm.model.train()
        self.vision.eval()
        return self

    @contextlib.contextmanager
    def _lm_eval(self) -> Iterator[None]:
        """The LM in eval mode (no dropout) for generation / ranking, whatever mode the model is in."""
        was = self.lm.model.training
        self.lm.eval()
        try:
            yield
        finally:
            self.lm.model.train(was)

    # ---------------------------------------------------------------------------------------- text side
    def tokenize(self, prefixes: list[str], targets: list[str] | None = None,
                 prefix_weight: float | None | list[float | None] = None,
                 separator: str | list[str] = " ") -> TextBatch:
        """Left-padded ids of ``prefix [+ separator + target + EOS]`` with per-token loss weights.

        ``prefix_weight`` (per batch or per sample; None: the adapter's :attr:`~mmadapt.adapters.base.TextLoss.
        prefix_weight`) weighs the prefix tokens, 1 the target tokens and EOS, 0 the first token (nothing predicts
        it). Every row starts with a start token: the tokenizer's BOS, or — for a tokenizer that adds none
        (GPT-2) — its BOS (else EOS) token added here, so that an empty prefix still has a first token."""
        tok = self.lm.tokenizer
        n = len(prefixes)
        weights_in = prefix_weight if isinstance(prefix_weight, (list, tuple)) else [prefix_weight] * n
        default = self.adapter.text_loss.prefix_weight
        weights_in = [default if w is None else float(w) for w in weights_in]
        separators = separator if isinstance(separator, (list, tuple)) else [separator] * n
        start = self._start_ids()
        rows, weights = [], []
        for i, prefix in enumerate(prefixes):
            ids = start + tok(prefix)["input_ids"]  # with the tokenizer's BOS, if it adds one
            w = [0.0] + [weights_in[i]] * (len(ids) - 1)
            if targets is not None:
                tgt = tok(separators[i] + targets[i], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
                ids = ids + tgt
                w = w + [1.0] * len(tgt)
            rows.append(ids)
            weights.append(w)
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        ids_t = torch.full((len(rows), width), pad, dtype=torch.long)
        mask_t = torch.zeros((len(rows), width), dtype=torch.long)
        w_t = torch.zeros((len(rows), width), dtype=torch.float32)
        for i, (r, w) in enumerate(zip(rows, weights)):
            ids_t[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask_t[i, width - len(r):] = 1
            w_t[i, width - len(r):] = torch.tensor(w)
        return TextBatch(ids_t, mask_t, w_t)

    def _start_ids(self) -> list[int]:
        """[] when the tokenizer starts every text itself (BOS), else [its BOS id, or EOS id] (GPT-2 adds
        nothing: ``tok("")`` is empty)."""
        tok = self.lm.tokenizer
        if tok("")["input_ids"]:
            return []
        return [tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id]

    # ----------------------------------------------------------------------------------------- helpers
    def _perception(self, pixel_values):
        """The batch's ``pixel_values`` → the adapter's perception (eP-ALM: perceptual tokens [B, n, D] from
        the frozen encoder; SOLO: the patches)."""
        return self.adapter.perceive(self.vision, pixel_values)

    def _embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """Text ids [B, T] → input embeddings [B, T, D] in the LM's dtype (the adapter maps tokens it added)."""
        return self.adapter.embed_tokens(self.lm, ids).to(self.lm.dtype)

    def _prefill_inputs(self, text: TextBatch, perception=None):
        """Embeddings [B, L, D], 4D mask [B, 1, L, L], positions [B, L] and validity [B, L] of
        ``[adapter prefix][text]``, L = K + T."""
        device = self.device
        ids, mask = text.ids.to(device), text.mask.to(device)
        B, T = ids.shape
        dtype = self.lm.dtype
        prefix = self.adapter.input_prefix(perception, B, dtype, device)
        K = prefix.embeds.shape[1]
        embeds = torch.cat([prefix.embeds.to(dtype), self._embed_tokens(ids)], dim=1)
        valid = torch.cat([prefix.valid.to(device=device, dtype=torch.long), mask], dim=1)
        if prefix.positioned:  # prefix and text share one count of real tokens
            positions = (valid.cumsum(dim=1) - 1).clamp(min=0)
        else:  # the prefix has no position; the text starts at 0
            text_pos = (mask.cumsum(dim=1) - 1).clamp(min=0)
            positions = torch.cat([torch.zeros(B, K, dtype=torch.long, device=device), text_pos], dim=1)
        L = K + T
        causal = torch.ones(L, L, dtype=torch.bool, device=device).tril()
        allowed = causal.unsqueeze(0) & valid.bool().unsqueeze(1)  # [B, L(q), L(k)]
        if self.adapter.prefix_attends_future:  # eP-ALM's leaky mask: the slot's row sees every real column
            allowed[:, 0, :] = valid.bool()
        return embeds, _additive(allowed, dtype), positions, valid

    def _run(self, embeds, mask4d, positions, tokens, prefill: bool, cache=None):
        with self.adapter.active(tokens, prefill=prefill):
            return self.lm.hidden_states(embeds, mask4d, positions, past_key_values=cache, use_cache=cache is not None)

    # ------------------------------------------------------------------------------------------ training
    def forward(self, pixel_values=None, prefix: list[str] | None = None, target: list[str] | None = None,
                prefix_loss_weight: float | None | list[float | None] = None, features: torch.Tensor | None = None,
                separator: str | list[str] = " ") -> torch.Tensor:
        """The training loss of the adapter's :class:`~mmadapt.adapters.base.TextLoss` (see the module
        docstring); ``prefix_loss_weight`` per batch or per sample, None: the adapter's. The perception comes from
        ``pixel_values``, or from the adapter's precomputed encoder ``features`` (feature cache)."""
        if features is not None:
            tokens = self.adapter.perceive_features(features.to(self.device))
        else:
            tokens = self._perception(pixel_values.to(self.device))
        text = self.tokenize(prefix, target, prefix_loss_weight, separator)
        embeds, mask4d, positions, _ = self._prefill_inputs(text, tokens)
        hidden = self._run(embeds, mask4d, positions, tokens, prefill=True).last_hidden_state
        K = embeds.shape[1] - text.ids.shape[1]
        weights = text.weights.to(self.device)[:, 1:]  # weight of predicting token t+1 from position t
        labels = text.ids.to(self.device)[:, 1:]
        rows, cols = weights.nonzero(as_tuple=True)
        logits = self.lm.logits(hidden[rows, K + cols]).float()
        ce = F.cross_entropy(logits, labels[rows, cols], reduction="none")
        return reduce_loss(ce * weights[rows, cols], rows, weights, self.adapter.text_loss)

    # ---------------------------------------------------------------------------------------- generation
    def _decoder(self, text: TextBatch, perception):
        """Prefill ``text`` → (log-probs of the next token [B, V], the decoding state): with the KV cache, or —
        when the adapter's prefix attends to later text (the cache would keep a stale prefix) — a state that
        recomputes the whole sequence for every new token, as eP-ALM's authors generate."""
        from transformers import DynamicCache

        embeds, mask4d, positions, valid = self._prefill_inputs(text, perception)
        if self.adapter.prefix_attends_future:
            hidden = self._run(embeds, mask4d, positions, perception, prefill=True).last_hidden_state
            return _log_softmax_last(self, hidden), _RecomputeDecoder(self, text, perception)
        cache = DynamicCache(config=self.lm.model.config)
        hidden = self._run(embeds, mask4d, positions, perception, prefill=True, cache=cache).last_hidden_state
        return _log_softmax_last(self, hidden), _CachedDecoder(self, cache, valid, positions[:, -1] + 1)

    @torch.no_grad()
    def generate(self, pixel_values, prefix: list[str], max_new_tokens: int = 20,
                 num_beams: int = 1, length_penalty: float = 1.0, max_length: int | None = None) -> list[str]:
        """Batched greedy / beam decoding (the LM in eval mode); the perception enters at prefill (and at every
        recomputed step in leaky mode). ``max_length`` also caps the new tokens at ``max_length`` minus the
        batch's padded prompt length (its start token included), as Hugging Face ``generate`` counts."""
        tok = self.lm.tokenizer
        text = self.tokenize(prefix)
        if max_length is not None:
            max_new_tokens = max(0, min(max_new_tokens, max_length - text.ids.shape[1]))
        B = len(prefix)
        if max_new_tokens == 0:  # nothing to generate: no perception, no prefill
            return [""] * B
        with self._lm_eval():
            tokens = self._perception(pixel_values.to(self.device))
            logprobs, decoder = self._decoder(text, tokens)
            eos = tok.eos_token_id
            if num_beams > 1:
                return self._beam_search(logprobs, decoder, B, num_beams, max_new_tokens, length_penalty)
            out = torch.full((B, 0), eos, dtype=torch.long, device=self.device)
            done = torch.zeros(B, dtype=torch.bool, device=self.device)
            for _ in range(max_new_tokens):
                nxt = logprobs.argmax(dim=-1)
                nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
                out = torch.cat([out, nxt[:, None]], dim=1)
                done |= nxt == eos
                if bool(done.all()):
                    break
                logprobs = decoder.step(nxt)
            return [self._decode(row) for row in out]

    def _step(self, token_ids: torch.Tensor, valid: torch.Tensor, positions: torch.Tensor, cache):
        """One KV-cache decoding step for ``token_ids`` [B] → next log-probs, extended validity, next positions."""
        valid = torch.cat([valid, torch.ones_like(valid[:, :1])], dim=1)
        mask4d = _additive(valid.bool()[:, None, :], self.lm.dtype)  # [B, 1, K]
        embeds = self._embed_tokens(token_ids[:, None])
        hidden = self._run(embeds, mask4d, positions[:, None], None, prefill=False, cache=cache).last_hidden_state
        return F.log_softmax(self.lm.logits(hidden[:, -1]).float(), dim=-1), valid, positions + 1

    def _beam_search(self, logprobs, decoder, B, beams, max_new_tokens, length_penalty):
        """Beam search over a batch in which every sample is decided as if it ran alone: once a sample meets the
        stopping rule (:meth:`_sample_done`) its answer is fixed, and it gets no more beams or hypotheses while
        the rest of the batch goes on (HF's ``BeamScorer`` ``_done`` flags), so batch composition never changes
        an answer. ``decoder``: the state of :meth:`_decoder` (``repeat_interleave`` / ``reorder`` / ``step``)."""
        eos = self.lm.tokenizer.eos_token_id
        V = logprobs.shape[-1]
        decoder.repeat_interleave(beams)
        scores = torch.full((B, beams), float("-inf"), device=self.device)
        scores[:, 0] = 0.0  # all beams start identical: keep one alive
        logprobs = logprobs.repeat_interleave(beams, dim=0)
        seqs = torch.zeros(B * beams, 0, dtype=torch.long, device=self.device)
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
        answers: list[list[int] | None] = [None] * B  # a sample's answer, once decided
        for step in range(max_new_tokens):
            cand = (scores.view(B * beams, 1) + logprobs).view(B, beams * V)
            top_scores, top_idx = cand.topk(2 * beams, dim=1)
            beam_idx, token_idx = top_idx // V, top_idx % V
            new_scores = torch.full((B, beams), float("-inf"), device=self.device)
            new_tokens = torch.full((B, beams), eos, dtype=torch.long, device=self.device)
            new_src = torch.zeros((B, beams), dtype=torch.long, device=self.device)
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
            flat_src = (torch.arange(B, device=self.device)[:, None] * beams + new_src).view(-1)
            seqs = torch.cat([seqs[flat_src], new_tokens.view(-1, 1)], dim=1)
            scores = new_scores
            for b in range(B):
                if answers[b] is None and self._sample_done(finished[b], scores[b], beams, seqs.shape[1],
                                                            length_penalty):
                    answers[b] = self._best_hypothesis(finished[b], scores[b], seqs[b * beams:(b + 1) * beams],
                                                       length_penalty)
            if all(a is not None for a in answers):
                break
            decoder.reorder(flat_src)
            logprobs = decoder.step(new_tokens.view(-1))
        for b in range(B):  # max_new_tokens reached: the best of what finished and what is still alive
            if answers[b] is None:
                answers[b] = self._best_hypothesis(finished[b], scores[b], seqs[b * beams:(b + 1) * beams],
                                                   length_penalty)
        return [self._decode(torch.tensor(a, dtype=torch.long)) for a in answers]

    @staticmethod
    def _best_hypothesis(finished, scores, seqs, length_penalty: float) -> list[int]:
        """The best of a sample's finished hypotheses and its live beams (``scores`` [beams], ``seqs`` [beams, T]),
        each scored by its log-probability over length ** ``length_penalty``; [] when there is none."""
        pool = list(finished)
        for k in range(scores.shape[0]):
            if scores[k] > float("-inf"):
                hyp = seqs[k].tolist()
                pool.append((scores[k].item() / max(len(hyp), 1) ** length_penalty, hyp))
        return max(pool, key=lambda x: x[0])[1] if pool else []

    @staticmethod
    def _sample_done(done, scores, beams: int, cur_len: int, length_penalty: float) -> bool:
        """A sample is decided when it has no live beam, or ``beams`` finished hypotheses of which the best is not
        beaten by its best live beam (HF's heuristic)."""
        best_alive = scores.max().item()
        if best_alive == float("-inf"):
            return True
        return len(done) >= beams and max(x[0] for x in done) >= best_alive / cur_len ** length_penalty

    def _decode(self, ids: torch.Tensor) -> str:
        tok = self.lm.tokenizer
        ids = ids.tolist()
        if tok.eos_token_id in ids:
            ids = ids[: ids.index(tok.eos_token_id)]
        return tok.decode(ids, skip_special_tokens=True).strip()

    # ------------------------------------------------------------------------------------------ ranking
    @torch.no_grad()
    def rank(self, pixel_values, prefix: list[str], candidates: list[str], top_k: int = 16,
             separator: str = " ") -> list[str]:
        """VQA ranking mode: keep the ``top_k`` candidates by first-token probability, then pick the one
        with the highest full-answer log-likelihood (``separator + answer`` tokens + EOS). In leaky mode the
        full answer is scored by recomputing prefix + answer (the visual token sees the answer)."""
        with self._lm_eval():
            return self._rank(pixel_values, prefix, candidates, top_k, separator)

    def _rank(self, pixel_values, prefix, candidates, top_k, separator):
        from transformers import DynamicCache

        tok = self.lm.tokenizer
        cand_ids = [tok(separator + c, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for c in candidates]
        first = torch.tensor([c[0] for c in cand_ids], device=self.device)
        tokens = self._perception(pixel_values.to(self.device))
        text = self.tokenize(prefix)
        embeds, mask4d, positions, valid = self._prefill_inputs(text, tokens)
        leaky = self.adapter.prefix_attends_future
        cache = None if leaky else DynamicCache(config=self.lm.model.config)
        hidden = self._run(embeds, mask4d, positions, tokens, prefill=True, cache=cache).last_hidden_state
        first_lp = F.log_softmax(self.lm.logits(hidden[:, -1]).float(), dim=-1)[:, first]  # [B, C]
        k = min(top_k, len(candidates))
        top = first_lp.topk(k, dim=1).indices  # [B, k]
        B = embeds.shape[0]
        if leaky:
            total = self._sequence_logprob([p for p in prefix for _ in range(k)],
                                           [candidates[c] for c in top.view(-1).tolist()],
                                           _take(tokens, torch.arange(B, device=self.device).repeat_interleave(k)),
                                           separator)
            best = total.view(B, k).argmax(dim=1)
            return [candidates[top[b, best[b]].item()] for b in range(B)]
        width = max(len(cand_ids[c]) for c in top.view(-1).tolist())
        cont = torch.full((B * k, width), tok.pad_token_id, dtype=torch.long, device=self.device)
        cont_mask = torch.zeros((B * k, width), dtype=torch.long, device=self.device)
        for row, c in enumerate(top.view(-1).tolist()):
            cont[row, : len(cand_ids[c])] = torch.tensor(cand_ids[c])
            cont_mask[row, : len(cand_ids[c])] = 1
        cache.batch_repeat_interleave(k)
        valid_k = valid.repeat_interleave(k, dim=0)
        start_pos = (positions[:, -1] + 1).repeat_interleave(k, dim=0)
        # continuation: right-padded candidates, causal within, full view of the cached prefix
        full_valid = torch.cat([valid_k, cont_mask], dim=1).bool()
        P = valid_k.shape[1]
        causal = torch.ones(width, width, dtype=torch.bool, device=self.device).tril()
        allowed = torch.cat([full_valid[:, None, :P].expand(-1, width, -1),
                             causal[None] & full_valid[:, None, P:]], dim=2)
        pos = start_pos[:, None] + torch.arange(width, device=self.device)[None]
        embeds_c = self._embed_tokens(cont)
        hidden_c = self._run(embeds_c, _additive(allowed, self.lm.dtype), pos, None, prefill=False, cache=cache).last_hidden_state
        lp = F.log_softmax(self.lm.logits(hidden_c[:, :-1]).float(), dim=-1)
        tok_lp = lp.gather(-1, cont[:, 1:, None]).squeeze(-1) * cont_mask[:, 1:]
        total = first_lp.gather(1, top).view(-1) + tok_lp.sum(dim=1)
        best = total.view(B, k).argmax(dim=1)
        return [candidates[top[b, best[b]].item()] for b in range(B)]

    def _sequence_logprob(self, prefixes: list[str], targets: list[str], perception, separator: str) -> torch.Tensor:
        """Log-likelihood of each ``separator + target`` + EOS after its prefix, one full forward [N]."""
        text = self.tokenize(prefixes, targets, 0.0, separator)
        embeds, mask4d, positions, _ = self._prefill_inputs(text, perception)
        hidden = self._run(embeds, mask4d, positions, perception, prefill=True).last_hidden_state
        K = embeds.shape[1] - text.ids.shape[1]
        weights = text.weights.to(self.device)[:, 1:]
        rows, cols = weights.nonzero(as_tuple=True)
        lp = F.log_softmax(self.lm.logits(hidden[rows, K + cols]).float(), dim=-1)
        picked = lp.gather(-1, text.ids.to(self.device)[:, 1:][rows, cols, None]).squeeze(-1)
        return torch.zeros(len(prefixes), device=self.device).index_add_(0, rows, picked)


class _CachedDecoder:
    """Decoding with the KV cache: each step feeds only the new tokens (``PerceptualLM._step``)."""

    def __init__(self, model: PerceptualLM, cache, valid: torch.Tensor, next_pos: torch.Tensor):
        self.model, self.cache, self.valid, self.next_pos = model, cache, valid, next_pos

    def step(self, token_ids: torch.Tensor) -> torch.Tensor:
        """``token_ids`` [B] appended → log-probs of the next token [B, V]."""
        logprobs, self.valid, self.next_pos = self.model._step(token_ids, self.valid, self.next_pos, self.cache)
        return logprobs

    def repeat_interleave(self, n: int) -> None:
        self.cache.batch_repeat_interleave(n)
        self.valid = self.valid.repeat_interleave(n, dim=0)
        self.next_pos = self.next_pos.repeat_interleave(n, dim=0)

    def reorder(self, rows: torch.Tensor) -> None:
        self.cache.reorder_cache(rows)
        self.valid, self.next_pos = self.valid[rows], self.next_pos[rows]


class _RecomputeDecoder:
    """Decoding without a cache: each step re-runs the whole sequence (perception, prefix, text so far) as a
    prefill, so a prefix that attends to later text (eP-ALM's leaky mask) sees every generated token."""

    def __init__(self, model: PerceptualLM, text: TextBatch, perception):
        self.model, self.perception = model, perception
        self.ids, self.mask = text.ids.to(model.device), text.mask.to(model.device)

    def step(self, token_ids: torch.Tensor) -> torch.Tensor:
        self.ids = torch.cat([self.ids, token_ids[:, None]], dim=1)
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        text = TextBatch(self.ids, self.mask, torch.zeros_like(self.ids, dtype=torch.float32))
        embeds, mask4d, positions, _ = self.model._prefill_inputs(text, self.perception)
        hidden = self.model._run(embeds, mask4d, positions, self.perception, prefill=True).last_hidden_state
        return _log_softmax_last(self.model, hidden)

    def repeat_interleave(self, n: int) -> None:
        self.reorder(torch.arange(self.ids.shape[0], device=self.ids.device).repeat_interleave(n))

    def reorder(self, rows: torch.Tensor) -> None:
        self.ids, self.mask = self.ids[rows], self.mask[rows]
        self.perception = _take(self.perception, rows)


def _take(perception, rows: torch.Tensor):
    """Rows ``rows`` of a batch's perception (a tensor [B, ...] or a :class:`~mmadapt.adapters.solo.PatchBatch`;
    both index by a list of row numbers)."""
    return None if perception is None else perception[rows.tolist()]


def _log_softmax_last(model: PerceptualLM, hidden: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of the token after the last column, [B, V] (float32)."""
    return F.log_softmax(model.lm.logits(hidden[:, -1]).float(), dim=-1)


def reduce_loss(weighted_ce: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor, spec: TextLoss) -> torch.Tensor:
    """The batch's loss from its scored tokens: ``weighted_ce`` [N] (weight × cross-entropy of each scored
    token), ``rows`` [N] (its sample), ``weights`` [B, T] (every token's weight) → a scalar per ``spec``."""
    B = weights.shape[0]
    per_sample = torch.zeros(B, device=weights.device).index_add_(0, rows, weighted_ce)
    if spec.reduction == "sample_mean":
        loss = (per_sample / weights.sum(dim=1).clamp(min=1e-8)).mean()
    elif spec.reduction == "sample_sum":
        loss = per_sample.sum() / B
    else:  # token_mean
        loss = per_sample.sum() / weights.sum().clamp(min=1e-8)
    return loss * spec.scale


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean [B, Q, K] → additive float mask [B, 1, Q, K] (0 where allowed, dtype-min elsewhere)."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.unsqueeze(1)


def _load_lm(cfg: BackboneConfig) -> CausalLM:
    if cfg.kind != "hf_causal_lm":
        raise ConfigError(f"model.lm.kind: expected hf_causal_lm, got {cfg.kind!r}")
    return CausalLM.from_pretrained(cfg.name, dtype=cfg.dtype, attn_implementation=cfg.attn_implementation,
                                    trust_remote_code=cfg.trust_remote_code, revision=cfg.revision)


def _load_vision(cfg: BackboneConfig) -> VisionEncoder:
    if cfg.kind == "hf_causal_lm":
        raise ConfigError("model.vision.kind: expected a perception encoder (hf_vit, hf_clip_vision, open_clip, "
                          "hf_timesformer, hf_ast)")
    return load_vision_encoder(cfg.kind, cfg.name, dtype=cfg.dtype, attn_implementation=cfg.attn_implementation,
                               revision=cfg.revision, pretrained=cfg.pretrained,
                               trust_remote_code=cfg.trust_remote_code)
