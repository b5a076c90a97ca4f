"""PerceptualLM: perception → frozen LM → text.

``forward(batch) -> loss`` trains; ``generate(batch) -> list[str]`` answers or captions (greedy or beam
search) and ``rank(batch, candidates) -> list[str]`` picks VQA answers from a list — both written in
:mod:`mmadapt.models.decoding`, over the model's ``perceive`` / ``prefill_inputs`` / ``run_lm`` steps.

A batch (:meth:`PerceptualLM.load_batch`, through :func:`mmadapt.io.batch.load_each`) holds ``pixel_values`` (what
the image side's ``preprocess`` returns: [B, 3, H, W] for a vision encoder, a
:class:`~mmadapt.adapters.solo.PatchBatch` for SOLO), ``prefix`` (list of prompt texts, e.g. ``"question: what color
is the circle? answer:"``, or the eP-ALM authors' ``"what color is the circle??</a>"``) and, for training,
``target`` (the answer or caption). The text is ``prefix + separator + target + EOS`` (``separator``: the task's
``target_separator``, default one space; the prefix starts with the tokenizer's BOS, or with BOS / EOS added here
for tokenizers that add none, e.g. GPT-2's).

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
from mmadapt.backbones.lm import CausalLM, as_causal_lm
from mmadapt.backbones.vision import VisionEncoder, as_vision_encoder, load_vision_encoder
from mmadapt.config import BackboneConfig, ModelConfig
from mmadapt.errors import ConfigError
from mmadapt.io.batch import load_each
from mmadapt.models import decoding
from mmadapt.models.base import Assembly
from mmadapt.names import resolve_name
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
    def from_config(cls, config: ModelConfig, label_space=None, *, lm: CausalLM | None = None,
                    vision: VisionEncoder | None = None) -> "PerceptualLM":
        """Load the frozen backbones named in ``config`` — or take the loaded ``lm`` / ``vision`` given — and
        build a fresh adapter (``model.vision`` is not loaded for an adapter that reads pixels itself).
        Nothing is sized by the data (``label_space`` is not read): answers are text."""
        adapter_cls = get("adapters", config.adapter.name)  # one that fits perceptual_lm (checked in ModelConfig)
        uses_vision = adapter_cls.uses_vision_encoder
        if uses_vision and vision is None:  # a wrong vision name fails before the LM's weights load
            _named("model.vision.name", resolve_name, config.vision.name)
        lm = lm if lm is not None else _load_lm(config.lm)
        if uses_vision and vision is None:
            vision = _load_vision(config.vision)
        vision = vision if uses_vision else None
        adapter = adapter_cls(config.adapter, lm, vision)
        return cls(config, lm, vision if vision is not None else adapter.processor, adapter)

    @classmethod
    def loaded_backbones(cls, config: ModelConfig, given: dict) -> dict:
        """``lm=`` (a CausalLM or ``(model, tokenizer)``) and ``vision=`` (a VisionEncoder or ``(model,
        processor)``) given to :meth:`from_pretrained` in place of the recorded names."""
        unknown = set(given) - {"lm", "vision"}
        if unknown:
            raise ConfigError(f"PerceptualLM.from_pretrained: unknown backbone(s) {sorted(unknown)}; expected lm=, vision=")
        out = {}
        if given.get("lm") is not None:
            out["lm"] = as_causal_lm(given["lm"])
        if given.get("vision") is not None:
            kind, out["vision"] = as_vision_encoder(given["vision"], name=config.vision.name)
            if kind != config.vision.kind:
                raise ConfigError(f"vision: the adapter was trained on a {config.vision.kind} encoder, got a {kind}")
        return out

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
                "separator": [e.target_separator for e in kept_ex], "task": [e.task for e in kept_ex]}, \
            [msg for _, msg in errors]

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
                "separator": [examples[i].target_separator for i in kept], "task": [examples[i].task for i in kept]}, \
            errors

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
    def lm_eval(self) -> Iterator[None]:
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
    def perceive(self, pixel_values):
        """The batch's ``pixel_values`` → the adapter's perception (eP-ALM: perceptual tokens [B, n, D] from
        the frozen encoder; SOLO: the patches)."""
        return self.adapter.perceive(self.vision, pixel_values)

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """Text ids [B, T] → input embeddings [B, T, D] in the LM's dtype (the adapter maps tokens it added)."""
        return self.adapter.embed_tokens(self.lm, ids).to(self.lm.dtype)

    def prefill_inputs(self, text: TextBatch, perception=None):
        """Embeddings [B, L, D], 4D mask [B, 1, L, L], positions [B, L] and validity [B, L] of
        ``[adapter prefix][text]``, L = K + T."""
        device = self.device
        ids, mask = text.ids.to(device), text.mask.to(device)
        B, T = ids.shape
        dtype = self.lm.dtype
        prefix = self.adapter.input_prefix(perception, B, dtype, device)
        K = prefix.embeds.shape[1]
        embeds = torch.cat([prefix.embeds.to(dtype), self.embed_tokens(ids)], dim=1)
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
        return embeds, decoding.additive_mask(allowed, dtype), positions, valid

    def run_lm(self, embeds, mask4d, positions, tokens, prefill: bool, cache=None):
        with self.adapter.active(tokens, prefill=prefill):
            return self.lm.hidden_states(embeds, mask4d, positions, past_key_values=cache, use_cache=cache is not None)

    # ------------------------------------------------------------------------------------------ training
    def forward(self, pixel_values=None, prefix: list[str] | None = None, target: list[str] | None = None,
                prefix_loss_weight: float | None | list[float | None] = None, features: torch.Tensor | None = None,
                separator: str | list[str] = " ", task: list[str] | None = None) -> torch.Tensor:
        """The training loss of the adapter's :class:`~mmadapt.adapters.base.TextLoss` (see the module
        docstring); ``prefix_loss_weight`` per batch or per sample, None: the adapter's. The perception comes from
        ``pixel_values``, or from the adapter's precomputed encoder ``features`` (feature cache). ``task`` (each
        sample's task) splits the loss in :attr:`loss_parts`: each task's loss, reduced alike over its samples."""
        if features is not None:
            tokens = self.adapter.perceive_features(features.to(self.device))
        else:
            tokens = self.perceive(pixel_values.to(self.device))
        text = self.tokenize(prefix, target, prefix_loss_weight, separator)
        embeds, mask4d, positions, _ = self.prefill_inputs(text, tokens)
        hidden = self.run_lm(embeds, mask4d, positions, tokens, prefill=True).last_hidden_state
        K = embeds.shape[1] - text.ids.shape[1]
        weights = text.weights.to(self.device)[:, 1:]  # weight of predicting token t+1 from position t
        labels = text.ids.to(self.device)[:, 1:]
        rows, cols = weights.nonzero(as_tuple=True)
        logits = self.lm.logits(hidden[rows, K + cols]).float()
        ce = F.cross_entropy(logits, labels[rows, cols], reduction="none")
        per_sample = torch.zeros(weights.shape[0], device=weights.device).index_add_(0, rows, ce * weights[rows, cols])
        spec = self.adapter.text_loss
        self.loss_parts = {} if task is None else {
            t: reduce_per_sample(per_sample[idx].detach(), weights[idx], spec)
            for t in dict.fromkeys(task) for idx in [torch.tensor([i for i, ti in enumerate(task) if ti == t])]}
        return reduce_per_sample(per_sample, weights, spec)

    # ------------------------------------------------------------------ generation and ranking (decoding.py)
    @torch.no_grad()
    def generate(self, pixel_values, prefix: list[str], max_new_tokens: int = 20,
                 num_beams: int = 1, length_penalty: float = 1.0, max_length: int | None = None) -> list[str]:
        """Answers / captions by greedy or beam search (:func:`mmadapt.models.decoding.generate`)."""
        return decoding.generate(self, pixel_values, prefix, max_new_tokens, num_beams, length_penalty, max_length)

    @torch.no_grad()
    def rank(self, pixel_values, prefix: list[str], candidates: list[str], top_k: int = 16,
             separator: str = " ") -> list[str]:
        """The most likely of ``candidates`` for each sample (:func:`mmadapt.models.decoding.rank`)."""
        return decoding.rank(self, pixel_values, prefix, candidates, top_k, separator)

    def decode(self, ids: torch.Tensor) -> str:
        """Generated ids → text, up to the first EOS, special tokens dropped."""
        tok = self.lm.tokenizer
        ids = ids.tolist()
        if tok.eos_token_id in ids:
            ids = ids[: ids.index(tok.eos_token_id)]
        return tok.decode(ids, skip_special_tokens=True).strip()


def reduce_per_sample(per_sample: torch.Tensor, weights: torch.Tensor, spec: TextLoss) -> torch.Tensor:
    """The batch's loss per ``spec`` from ``per_sample`` [B] (each sample's Σ weight × cross-entropy of its
    scored tokens) and ``weights`` [B, T] (every token's weight)."""
    B = weights.shape[0]
    if spec.reduction == "sample_mean":
        loss = (per_sample / weights.sum(dim=1).clamp(min=1e-8)).mean()
    elif spec.reduction == "sample_sum":
        loss = per_sample.sum() / B
    else:  # token_mean
        loss = per_sample.sum() / weights.sum().clamp(min=1e-8)
    return loss * spec.scale


def _load_lm(cfg: BackboneConfig) -> CausalLM:
    if cfg.kind != "hf_causal_lm":
        raise ConfigError(f"model.lm.kind: expected hf_causal_lm, got {cfg.kind!r}")
    return _named("model.lm.name", CausalLM.from_pretrained, cfg.name, dtype=cfg.dtype,
                  attn_implementation=cfg.attn_implementation, trust_remote_code=cfg.trust_remote_code,
                  revision=cfg.revision)


def _named(key: str, load, *args, **kwargs):
    """``load(*args, **kwargs)`` with the recipe key in front of a one-line :class:`ConfigError` about the name
    (``model.lm.name: /x: no such local directory``)."""
    try:
        return load(*args, **kwargs)
    except ConfigError as exc:
        if str(exc).startswith("model."):
            raise
        raise ConfigError(f"{key}: {exc}") from None


def _load_vision(cfg: BackboneConfig) -> VisionEncoder:
    if cfg.kind == "hf_causal_lm":
        raise ConfigError("model.vision.kind: expected a perception encoder (hf_vit, hf_clip_vision, "
                          "hf_siglip_vision, hf_dinov2, open_clip, hf_timesformer, hf_ast)")
    return _named("model.vision.name", load_vision_encoder, cfg.kind, cfg.name, dtype=cfg.dtype,
                  attn_implementation=cfg.attn_implementation, revision=cfg.revision, pretrained=cfg.pretrained,
                  trust_remote_code=cfg.trust_remote_code)
