"""AllInOne: video frames and text through one shared encoder, frames joined by token rolling
(Wang et al., CVPR 2023, "All in One: Exploring Unified Video-Language Pre-training").

The encoder attends *per frame*: a clip of ``T`` frames and its text become ``T`` sequences in the batch
dimension, each ``[CLS] [text tokens] [frame t's patch tokens]``. Frames meet only through the parameter-free
:class:`~mmadapt.adapters.token_rolling.TokenRolling` adapter, which rolls part of each frame's tokens one
frame forward / back before every block — as the authors, only when a text shares the sequence (its
``roll_video_only`` option also rolls video-only inputs); without it the model cannot tell frame order.

Data flow of one batch::

    clips [B, T, 3, S, S] ─frozen patch + position embedding─▶ [B·T, N, D] ─┐
    texts ─HF tokenizer─▶ ids [B, L] ─trained embedding─▶ [B, L, D] ─repeat T─┴▶ [B·T, L + N, D]
        ─encoder.run_blocks (+ rolling before each block)─▶ [B·T, 1 + L + N, D] (after the final norm)
        ─pooling─▶ [B, D] ─head─▶ outputs

Pooling (``video_text.pooling``): ``pooler`` (default, the authors') — the mean over the ``T`` frames of the
sequence's first token (the text's first token, its [CLS], when there is a text; the encoder's [CLS] for
video only) → trained Linear(D, D) → tanh; ``cls_mean`` — the mean over frames of the encoder's [CLS].

Heads (trained, chosen by the recipe's tasks): ``answer`` — a classifier over the video QA answer vocabulary
(``video_text.classifier``: the authors' Dropout → Linear(D, D/2) → LayerNorm → GELU → Linear by default);
``match`` — one score per (text, clip) (``video_text.retrieval``: the authors' Linear(D, 1) rank score,
cross-entropy over the clip's text and in-batch negatives; retrieval ranks all pairs by it); ``classify`` —
video classes (``model.head``), read with the fixed ``classify_prompt`` text as the authors do. Trained: the
text embedding tables (+ their LayerNorm, ``text_norm``), a text / video type embedding, the pooler, the
heads (and the per-frame embedding if ``temporal_embedding``). The encoder is frozen by default (the authors
fine-tune it whole after their video–text pretraining); ``video_text.lora`` adds peft LoRA inside it and
``video_text.train_blocks`` trains chosen blocks in full. Both live in :attr:`trained` (``lora``: the LoRA
A / B layers, ``blocks``: the chosen blocks, aliases of the encoder's own modules), so checkpoints and
``save_pretrained`` hold them.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mmadapt.adapters.lora import inject_lora
from mmadapt.backbones.vision import VisionEncoder, load_vision_encoder
from mmadapt.config import ModelConfig
from mmadapt.data.examples import Example, LabelledExample, MatchExample
from mmadapt.errors import ConfigError, DataError
from mmadapt.heads.video_text import ClassifierHead, authors_init
from mmadapt.io.batch import load_each
from mmadapt.models.base import Assembly
from mmadapt.names import resolve_name
from mmadapt.registry import get, register

TEXT, VIDEO = 0, 1  # token type ids


class ClipFrames:
    """Reads clips for a frame encoder: ``load(path) -> [T, 3, H, W]`` (float in [0, 1], ``T = n_frames``
    sampled by :func:`~mmadapt.io.video.load_video`), ``preprocess(clips) -> [B, T, 3, S, S]`` through the
    encoder's own image processor (resize, crop, normalise), in the encoder's dtype."""

    def __init__(self, encoder: VisionEncoder, n_frames: int, sampling: str = "uniform", shuffle: bool = False):
        self.encoder, self.n_frames, self.sampling, self.shuffle = encoder, n_frames, sampling, shuffle

    def load(self, source: str | Path | torch.Tensor) -> torch.Tensor:
        if isinstance(source, torch.Tensor):
            if source.ndim != 4 or source.shape[1] != 3:
                raise DataError(f"all_in_one: expected a clip [T, 3, H, W], got shape {list(source.shape)}")
            return source
        from mmadapt.io.video import load_video

        clip = load_video(source, n_frames=self.n_frames, sampling=self.sampling)
        if self.shuffle:  # the same order for a file every time it is read
            seed = zlib.crc32(str(source).encode("utf-8"))
            clip = clip[torch.randperm(clip.shape[0], generator=torch.Generator().manual_seed(seed))]
        return clip

    def preprocess(self, clips: Sequence[torch.Tensor]) -> torch.Tensor:
        if not len(clips):
            raise DataError("all_in_one: no clips to preprocess")
        for i, clip in enumerate(clips):
            if clip.ndim != 4 or clip.shape[0] != self.n_frames or clip.shape[1] != 3:
                raise DataError(f"all_in_one: clip {i}: expected [{self.n_frames}, 3, H, W], got {list(clip.shape)}")
        frames = [f for clip in clips for f in clip.float()]
        pixels = self.encoder.processor(images=frames, do_rescale=False, return_tensors="pt")["pixel_values"]
        return pixels.view(len(clips), self.n_frames, *pixels.shape[1:]).to(self.encoder.dtype)

    def eval(self) -> "ClipFrames":
        return self


@register("assemblies", "all_in_one")
class AllInOne(Assembly):
    def __init__(self, config: ModelConfig, encoder: VisionEncoder, tokenizer, adapter: nn.Module | None = None):
        super().__init__()
        vt = config.video_text
        self.config = config
        self.encoder = encoder
        self.text_tokenizer = tokenizer
        self.vision = ClipFrames(encoder, vt.n_frames, vt.frame_sampling, vt.shuffle_frames)
        D = encoder.hidden_size
        trained = {"token_type": nn.Embedding(2, D)}
        self.classify_prompt = self._prompt(vt.classify_prompt, tokenizer) if config.head.n_outputs else None
        if vt.answers or vt.matching or self.classify_prompt:  # the text side's tables (a video-only model has none)
            trained["word_embedding"] = nn.Embedding(len(tokenizer), D)
            trained["text_position"] = nn.Embedding(vt.max_text_len, D)
        for emb in trained.values():
            nn.init.normal_(emb.weight, std=0.02)
        self.text_dropout = None
        if vt.text_norm and "word_embedding" in trained:  # BERT's embedding LayerNorm and dropout (p = 0.1)
            trained["text_norm"] = nn.LayerNorm(D)
            self.text_dropout = nn.Dropout(0.1)
        if vt.temporal_embedding:
            trained["temporal"] = nn.Embedding(vt.n_frames, D)
            nn.init.zeros_(trained["temporal"].weight)
        heads = {}
        if vt.answers:
            heads["answer"] = ClassifierHead(D, len(vt.answers), vt.classifier)
        if vt.matching:
            heads["match"] = authors_init(nn.Linear(D, 1)) if vt.retrieval == "rank" else ClassifierHead(D, 1, "vqav2")
        if config.head.n_outputs:
            heads["classify"] = ClassifierHead(D, config.head.n_outputs, vt.classifier)
        if not heads:
            raise ConfigError("model.video_text: no head (set answers, matching, or model.head.n_outputs — "
                              "mmadapt.build_model fills them from the tasks)")
        trained["heads"] = nn.ModuleDict(heads)
        if vt.pooling == "pooler":  # the authors' init (objectives.init_weights): N(0, 0.02), zero bias
            trained["pooler"] = authors_init(nn.Linear(D, D))
        trained.update(self._encoder_training(vt, encoder))
        self.trained = nn.ModuleDict(trained)
        self.adapter = adapter
        if adapter is not None:
            adapter.attach(encoder)
        self._answer_index = {a: i for i, a in enumerate(vt.answers or [])}

    @staticmethod
    def _prompt(prompt: str | None, tokenizer) -> str | None:
        """``classify_prompt`` with ``[MASK]`` as the tokenizer's own mask token (kept as text without one)."""
        if prompt is None or tokenizer.mask_token is None:
            return prompt
        return prompt.replace("[MASK]", tokenizer.mask_token)

    @staticmethod
    def _encoder_training(vt, encoder: VisionEncoder) -> dict[str, nn.Module]:
        """The encoder parts ``vt`` trains: ``lora`` (peft LoRA layers inserted into the encoder, their A / B
        weights) and ``blocks`` (``{"<index>": block}``, unfrozen in full). LoRA goes in first: peft marks
        every non-LoRA weight of the model it adapts as frozen. LoRA layers inside a fully trained block are
        held (and saved) by that block only."""
        parts: dict[str, nn.Module] = {}
        if vt.lora is not None:
            parts["lora"] = inject_lora(vt.lora, encoder.model, "model.video_text.lora")
        if vt.train_blocks:
            blocks = encoder.blocks
            if max(vt.train_blocks) >= len(blocks):
                raise ConfigError(f"model.video_text.train_blocks: {vt.train_blocks} names a block >= the "
                                  f"encoder's {len(blocks)}")
            parts["blocks"] = nn.ModuleDict({str(i): blocks[i].requires_grad_(True) for i in sorted(vt.train_blocks)})
            if "lora" in parts:
                in_blocks = {id(p) for p in parts["blocks"].parameters()}
                parts["lora"] = nn.ModuleDict({k: v for k, v in parts["lora"].items()
                                               if not any(id(p) in in_blocks for p in v.parameters())})
        return parts

    # ------------------------------------------------------------------------------------ construction
    @classmethod
    def needs_label_space(cls, config: ModelConfig) -> bool:
        return True

    @classmethod
    def with_labels(cls, config: ModelConfig, space) -> ModelConfig:
        """A copy of ``config`` with the heads its tasks need: the video QA answer vocabulary (the training
        answers), a matching head for retrieval, the video classes for classification (at most one task of
        each kind)."""
        config = copy.deepcopy(config)
        vt = config.video_text
        kinds: dict[str, list[str]] = {}
        for key, name in space.tasks.items():
            kinds.setdefault(name, []).append(key)
        unknown = set(kinds) - {"vqa", "retrieval", "classification"}
        if unknown:
            raise ConfigError(f"tasks: an all_in_one model does video QA, retrieval and classification, not "
                              f"{', '.join(sorted(unknown))}")
        for kind, keys in kinds.items():
            if len(keys) > 1:
                raise ConfigError(f"tasks: an all_in_one model has one {kind} head ({', '.join(keys)})")
        if "vqa" in kinds and not vt.answers:
            vt.answers = list(space.answers)
        if "retrieval" in kinds:
            vt.matching = True
        if "classification" in kinds and config.head.n_outputs is None:
            config.head.classes = list(space.classes)
            config.head.n_outputs = len(config.head.classes)
        return config

    @classmethod
    def from_config(cls, config: ModelConfig, label_space=None) -> "AllInOne":
        from transformers import AutoTokenizer

        if label_space is not None:
            config = cls.with_labels(config, label_space)
        enc = config.encoder
        encoder = load_vision_encoder(enc.kind, enc.name, dtype=enc.dtype, attn_implementation=enc.attn_implementation,
                                      revision=enc.revision, pretrained=enc.pretrained, random_init=enc.random_init,
                                      trust_remote_code=enc.trust_remote_code)
        name = config.video_text.text_tokenizer
        try:  # a tokenizer is files, never code: no recipe key turns remote code on here
            tokenizer = AutoTokenizer.from_pretrained(resolve_name(name), trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"model.video_text.text_tokenizer: cannot load {name!r} ({exc})") from None
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        adapter = None
        if config.adapter is not None:
            adapter = get("adapters", config.adapter.name)(config.adapter, encoder)
        return cls(config, encoder, tokenizer, adapter)

    def _metadata(self) -> dict:
        return {"peft_type": "ALL_IN_ONE", "adapter_type": self.config.adapter.name if self.config.adapter else None,
                "base_model_name_or_path": self.config.encoder.name}

    @property
    def trained_module(self) -> nn.Module:
        return self.trained

    def train(self, mode: bool = True) -> "AllInOne":
        super().train(mode)
        self.encoder.eval()
        return self

    # ------------------------------------------------------------------------------------------ compute
    def _text(self, texts: list[str] | None, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Text tokens [B, L, D] (trained embeddings) and their mask [B, L]; L = 0 without text."""
        D, device = self.encoder.hidden_size, self.device
        if not texts or "word_embedding" not in self.trained:
            if texts and any(texts):
                raise ConfigError("all_in_one: this model has no text side (no video QA or retrieval head)")
            return torch.zeros(batch, 0, D, device=device), torch.zeros(batch, 0, dtype=torch.bool, device=device)
        enc = self.text_tokenizer(list(texts), padding=True, truncation=True,
                                  max_length=self.config.video_text.max_text_len, return_tensors="pt")
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device).bool()
        positions = torch.arange(ids.shape[1], device=device)
        t = self.trained
        tokens = t["word_embedding"](ids) + t["text_position"](positions)[None]
        if "text_norm" in t:
            tokens = self.text_dropout(t["text_norm"](tokens))
        return tokens + t["token_type"].weight[TEXT], mask

    def _frames(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``pixel_values`` [B, T, 3, S, S] → frame tokens [B, T, N, D] (the frozen encoder's own patch and
        position embeddings; no graph kept) + the video type (and temporal) embedding."""
        B, T = pixel_values.shape[:2]
        if T != self.config.video_text.n_frames:
            raise DataError(f"all_in_one: clips have {T} frames, the model reads {self.config.video_text.n_frames}")
        with torch.no_grad():
            patches = self.encoder.patch_tokens(pixel_values.flatten(0, 1).to(self.encoder.dtype))
        tokens = patches.view(B, T, *patches.shape[1:]) + self.trained["token_type"].weight[VIDEO]
        if "temporal" in self.trained:
            tokens = tokens + self.trained["temporal"].weight[:T, None]
        return tokens

    def hidden(self, pixel_values: torch.Tensor, texts: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips [B, T, 3, S, S] (+ one text per clip) → the encoder's output per frame [B, T, 1 + L + N, D]
        (``[CLS] [L text tokens] [N patch tokens]``, after its final norm) and the text mask [B, L]."""
        pixel_values = pixel_values.to(self.device)
        frames = self._frames(pixel_values)
        B, T, N, D = frames.shape
        text, text_mask = self._text(texts, B)
        L = text.shape[1]
        tokens = torch.cat([text[:, None].expand(B, T, L, D), frames], dim=2).flatten(0, 1)  # [B·T, L + N, D]
        mask = torch.cat([text_mask[:, None].expand(B, T, L),
                          torch.ones(B, T, N, dtype=torch.bool, device=self.device)], dim=2).flatten(0, 1)
        hook = self.adapter.block_hook(T, L, N) if self.adapter is not None else None
        hidden, _ = self.encoder.run_blocks(tokens, mask, before_block=hook)
        return hidden.view(B, T, 1 + L + N, D), text_mask

    def pooled(self, pixel_values: torch.Tensor, texts: list[str] | None = None) -> torch.Tensor:
        """Clips [B, T, 3, S, S] (+ one text per clip) → [B, D] by ``video_text.pooling`` (module docstring)."""
        hidden, text_mask = self.hidden(pixel_values, texts)
        return self.pool(hidden, text_mask)

    def pool(self, hidden: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """``hidden`` [B, T, 1 + L + N, D], ``text_mask`` [B, L] → [B, D].

        ``pooler``: ``tanh(W · mean_t hidden[b, t, p] + c)`` with ``p`` the first real text token (position
        ``1 +`` its index; the tokenizer's [CLS] / BOS) when ``L > 0``, else the encoder's [CLS] (``p = 0``);
        ``cls_mean``: ``mean_t hidden[b, t, 0]``."""
        if self.config.video_text.pooling == "cls_mean":
            return hidden[:, :, 0].mean(dim=1)
        B = hidden.shape[0]
        first = torch.zeros(B, dtype=torch.long, device=hidden.device)
        if text_mask.shape[1]:
            first = 1 + text_mask.long().argmax(dim=1)  # the first True: right or left padding alike
        token = hidden[torch.arange(B, device=hidden.device), :, first]  # [B, T, D]
        return torch.tanh(self.trained["pooler"](token.mean(dim=1)))

    def answer_logits(self, pixel_values: torch.Tensor, questions: list[str]) -> torch.Tensor:
        """[B, n_answers] over ``config.video_text.answers``."""
        return self._head("answer")(self.pooled(pixel_values, questions))

    def match_logits(self, pixel_values: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """[B]: how well text ``i`` describes clip ``i``."""
        return self._head("match")(self.pooled(pixel_values, texts)).squeeze(-1)

    def predict(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Video classification logits [B, n_classes]: the clip with ``classify_prompt`` (or alone)."""
        prompts = [self.classify_prompt] * pixel_values.shape[0] if self.classify_prompt else None
        return self._head("classify")(self.pooled(pixel_values, prompts))

    def _head(self, kind: str) -> nn.Module:
        heads = self.trained["heads"]
        if kind not in heads:
            raise ConfigError(f"all_in_one: this model has no {kind!r} head (it has {', '.join(heads)})")
        return heads[kind]

    # ------------------------------------------------------------------------------- the tasks' contract
    @torch.no_grad()
    def generate(self, pixel_values: torch.Tensor, prefix: list[str], **_: object) -> list[str]:
        """Video QA: the most likely answer of the vocabulary (All-in-One classifies; ``max_new_tokens`` and
        ``num_beams`` of the VQA task do not apply)."""
        answers = self.config.video_text.answers
        return [answers[i] for i in self.answer_logits(pixel_values, prefix).argmax(dim=1).tolist()]

    @torch.no_grad()
    def rank(self, pixel_values: torch.Tensor, prefix: list[str], candidates: list[str], top_k: int = 16) -> list[str]:
        """Video QA restricted to ``candidates`` (those outside the trained vocabulary cannot be chosen)."""
        known = [c for c in candidates if c in self._answer_index]
        if not known:
            raise ConfigError("all_in_one: none of the VQA candidates is in the model's answer vocabulary")
        cols = torch.tensor([self._answer_index[c] for c in known], device=self.device)
        logits = self.answer_logits(pixel_values, prefix)[:, cols]
        return [known[i] for i in logits.argmax(dim=1).tolist()]

    def load_batch(self, sources: Sequence) -> tuple[list[int], dict[str, torch.Tensor] | None, list[tuple[int, str]]]:
        """Load clips; (indices that loaded, ``{"pixel_values"}`` or None, [(index, error)])."""
        loaded = load_each(sources, self.vision.load)
        return loaded.kept, ({"pixel_values": self.vision.preprocess(loaded.items)} if loaded.items else None), \
            loaded.errors

    def collate_train(self, examples: Sequence) -> tuple[dict | None, list[str]]:
        """Examples of any of the heads' tasks → ``forward`` inputs; an unreadable clip (or an answer outside
        the vocabulary) drops its example and is reported."""
        def load(ex) -> tuple:
            return *self._training_target(ex), self.vision.load(ex.source if isinstance(ex, LabelledExample)
                                                                else ex.image_path)

        loaded = load_each(examples, load)
        errors = [msg for _, msg in loaded.errors]
        if not loaded.items:
            return None, errors
        kinds, texts, labels, clips = zip(*loaded.items)
        return {"pixel_values": self.vision.preprocess(list(clips)), "kinds": list(kinds), "texts": list(texts),
                "labels": torch.tensor(labels)}, errors

    def _training_target(self, ex) -> tuple[str, str, float]:
        """(head kind, text, label) of one training example."""
        if isinstance(ex, LabelledExample):
            return "classify", "", float(ex.label)
        if isinstance(ex, MatchExample):
            return "match", ex.text, 1.0
        if isinstance(ex, Example):
            if ex.target not in self._answer_index:
                raise DataError(f"{ex.image_path}: answer {ex.target!r} is not in the model's answer vocabulary")
            return "answer", ex.prefix, float(self._answer_index[ex.target])
        raise TypeError(f"all_in_one: cannot train on {type(ex).__name__}")

    def forward(self, pixel_values: torch.Tensor, kinds: list[str], texts: list[str], labels: torch.Tensor) -> torch.Tensor:
        """The mean over the batch's task kinds of their losses: answer / classify cross-entropy, retrieval
        by ``video_text.retrieval`` (:meth:`rank_loss` or :meth:`match_bce_loss`); each kind's (head's) loss in
        :attr:`loss_parts`."""
        labels = labels.to(self.device)
        losses, zero = [], torch.zeros((), device=self.device)
        self.loss_parts = {}
        for kind in ("answer", "classify", "match"):
            rows = [i for i, k in enumerate(kinds) if k == kind]
            if rows:
                losses.append(self._kind_loss(kind, pixel_values[rows], [texts[i] for i in rows], labels[rows]))
                self.loss_parts[kind] = losses[-1].detach()
            elif self.every_branch_each_step and kind in self.trained["heads"]:
                # this rank's batch has no example of this kind but its peers' may: take the same path on the first
                # example with weight 0 (the loss and every gradient unchanged), leaving the RNG as it was
                with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                    zero = zero + 0.0 * self._kind_loss(kind, pixel_values[:1], texts[:1], torch.zeros_like(labels[:1]))
        return torch.stack(losses).mean() + zero

    def _kind_loss(self, kind: str, pixels: torch.Tensor, texts: list[str], labels: torch.Tensor) -> torch.Tensor:
        if kind == "classify":
            return F.cross_entropy(self.predict(pixels).float(), labels.long())
        if kind == "answer":
            return F.cross_entropy(self.answer_logits(pixels, texts).float(), labels.long())
        if self.config.video_text.retrieval == "rank":
            return self.rank_loss(pixels, texts)
        return self.match_bce_loss(pixels, texts)

    def rank_loss(self, pixel_values: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """The authors' retrieval loss: clip ``j`` is scored with its own text and ``K`` others, the texts of
        clips ``j + 1, …, j + K`` (mod B; ``K = min(retrieval_negatives, B - 1)``), and cross-entropy picks its
        own. A negative text identical to the clip's own is a match, not a negative: it is left out."""
        B = len(texts)
        K = min(self.config.video_text.retrieval_negatives, B - 1)
        candidates = [texts[(j + k) % B] for j in range(B) for k in range(K + 1)]
        scores = self.match_logits(pixel_values.repeat_interleave(K + 1, dim=0), candidates).view(B, K + 1)
        same = torch.tensor([[k > 0 and texts[(j + k) % B] == texts[j] for k in range(K + 1)] for j in range(B)],
                            device=scores.device)
        scores = scores.float().masked_fill(same, float("-inf"))
        return F.cross_entropy(scores, torch.zeros(B, dtype=torch.long, device=scores.device))

    def match_bce_loss(self, pixel_values: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """``retrieval: match_bce``: binary cross-entropy on the pairs plus one in-batch negative per clip (the
        next clip's text; a text identical to the clip's own counts as a match)."""
        neg = texts[1:] + texts[:1]
        target = torch.tensor([1.0] * len(texts) + [float(n == p) for p, n in zip(texts, neg)], device=self.device)
        logits = self.match_logits(torch.cat([pixel_values, pixel_values]), texts + neg)
        return F.binary_cross_entropy_with_logits(logits.float(), target)
