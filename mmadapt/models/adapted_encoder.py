"""AdaptedEncoder: tokenizer (trained) → frozen shared encoder (+ optional adapter) → head (trained).

The Meta-Transformer recipe: one frozen transformer reads every modality. A modality tokenizer turns raw
inputs into tokens of the encoder's width; the encoder's own patch and position embeddings are bypassed
(:meth:`~mmadapt.backbones.base.TokenEncoder.run_blocks`: its [CLS] is prepended, padded tokens are
masked out); a head pools the output tokens into class logits or regression values.

Data flow of one batch::

    sources (paths or loaded samples) ─tokenizer.load/collate─▶ inputs ─tokenizer─▶ TokenBatch
        ─encoder.run_blocks (or adapter.run_encoder)─▶ TokenBatch [B, 1+N, D] ─head─▶ outputs
        [B, n_outputs] ─head.loss─▶ loss

An adapter (e.g. Any2Point) is an :class:`EncoderAdapter`: it runs the frozen encoder on the tokens itself
(``run_encoder``), through ``run_blocks`` with its own per-block hooks computed from the batch (e.g. the point
tokens' centres), its own [CLS] or final norm where it trains them.

Only ``trained_module`` (tokenizer, head and adapter if any) is trained and saved.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import nn

from mmadapt.backbones.base import TokenEncoder
from mmadapt.backbones.vision import load_vision_encoder
from mmadapt.config import ModelConfig
from mmadapt.errors import ConfigError
from mmadapt.io.batch import load_each
from mmadapt.models.base import Assembly
from mmadapt.registry import get, register
from mmadapt.tokenizers.base import TokenBatch, Tokenizer


class EncoderAdapter(Protocol):
    """What an adapter inside an ``adapted_encoder`` provides."""

    def attach(self, encoder: TokenEncoder) -> None: ...

    def run_encoder(self, encoder: TokenEncoder, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen ``encoder`` (+ this adapter) on the tokenizer's ``batch`` [B, N, D] → hidden
        [B, 1+N, D] ([CLS] first, after the final norm) and its mask [B, 1+N], as ``run_blocks`` returns."""
        ...


@register("assemblies", "adapted_encoder")
class AdaptedEncoder(Assembly):
    def __init__(self, config: ModelConfig, encoder: TokenEncoder, tokenizer: Tokenizer, head: nn.Module,
                 adapter: nn.Module | None = None):
        super().__init__()
        if tokenizer.dim != encoder.hidden_size:
            raise ConfigError(f"model.tokenizer: width {tokenizer.dim} != the encoder's {encoder.hidden_size}")
        self.config = config
        self.encoder = encoder
        parts = {"tokenizer": tokenizer, "head": head}
        if adapter is not None:
            parts["adapter"] = adapter
            adapter.attach(encoder)
        self.trained = nn.ModuleDict(parts)

    # ------------------------------------------------------------------------------------ construction
    @classmethod
    def needs_label_space(cls, config: ModelConfig) -> bool:
        tok = config.tokenizer
        return config.head.n_outputs is None or _needs_table_statistics(tok)

    @classmethod
    def with_labels(cls, config: ModelConfig, space) -> ModelConfig:
        """A copy of ``config`` with the head sized by the (one) task's label space: its classes (or one
        output for regression), and the training table's statistics for a tabular tokenizer without them."""
        config = copy.deepcopy(config)
        kinds = list(space.tasks.values())
        if len(kinds) != 1:
            raise ConfigError(f"tasks: an adapted_encoder has one head, so one task (got {', '.join(space.tasks)})")
        if kinds[0] not in ("classification", "regression"):
            raise ConfigError(f"tasks.{next(iter(space.tasks))}: an adapted_encoder needs a classification or "
                              "regression task")
        if config.head.n_outputs is None:
            if space.regression:
                config.head.n_outputs = 1
                if config.head.name == "classification":
                    config.head.name = "regression"
            else:
                config.head.classes, config.head.n_outputs = list(space.classes), len(space.classes)
        if _needs_table_statistics(config.tokenizer):
            if space.numeric_mean is None:
                raise ConfigError(f"tasks.{next(iter(space.tasks))}.train: numeric statistics need a table "
                                  "(table, synthetic_tabular, sklearn_table)")
            config.tokenizer.numeric_mean, config.tokenizer.numeric_std = space.numeric_mean, space.numeric_std
        return config

    @classmethod
    def from_config(cls, config: ModelConfig, label_space=None) -> "AdaptedEncoder":
        """Load the frozen encoder and build fresh trained parts. The head's size comes from
        ``config.head.n_outputs`` or from ``label_space`` (:func:`mmadapt.build_model` reads it from the
        training data)."""
        if label_space is not None:
            config = cls.with_labels(config, label_space)
        if config.head.n_outputs is None:
            raise ConfigError("model.head.n_outputs: unknown (build through mmadapt.build_model(config), which "
                              "reads the classes from the training data, or set it in the recipe)")
        enc_cfg = config.encoder
        encoder = load_vision_encoder(enc_cfg.kind, enc_cfg.name, dtype=enc_cfg.dtype,
                                      attn_implementation=enc_cfg.attn_implementation, revision=enc_cfg.revision,
                                      pretrained=enc_cfg.pretrained, random_init=enc_cfg.random_init,
                                      trust_remote_code=enc_cfg.trust_remote_code)
        tokenizer = get("tokenizers", config.tokenizer.name)(dim=encoder.hidden_size, config=config.tokenizer)
        head = get("heads", config.head.name)(encoder.hidden_size, config.head.n_outputs, pool=config.head.pool,
                                             mlp=config.head.mlp, dropout=config.head.dropout)
        adapter = None
        if config.adapter is not None:
            adapter = get("adapters", config.adapter.name)(config.adapter, encoder)
        return cls(config, encoder, tokenizer, head, adapter)

    def _metadata(self) -> dict:
        return {"peft_type": "ADAPTED_ENCODER", "tokenizer_type": self.config.tokenizer.name,
                "adapter_type": self.config.adapter.name if self.config.adapter is not None else None,
                "base_model_name_or_path": self.config.encoder.name}

    @property
    def tokenizer(self) -> Tokenizer:
        return self.trained["tokenizer"]

    @property
    def head(self) -> nn.Module:
        return self.trained["head"]

    @property
    def adapter(self) -> EncoderAdapter | None:
        """The adapter inside the frozen encoder's blocks (e.g. Any2Point), if any."""
        return self.trained["adapter"] if "adapter" in self.trained else None

    @property
    def trained_module(self) -> nn.Module:
        return self.trained

    def train(self, mode: bool = True) -> "AdaptedEncoder":
        super().train(mode)
        self.encoder.eval()  # frozen parts never train (dropout off)
        return self

    # ---------------------------------------------------------------------------------------- data side
    def load_batch(self, sources: Sequence[Any]) -> tuple[list[int], dict[str, torch.Tensor] | None, list[tuple[int, str]]]:
        """Load ``sources`` with the tokenizer; returns (indices that loaded, ``forward`` inputs or None if
        none did, [(index, one-line error)] for the others). A bad sample never stops the batch."""
        loaded = load_each(sources, self.tokenizer.load)
        return loaded.kept, (self.tokenizer.collate(loaded.items) if loaded.items else None), loaded.errors

    def collate_train(self, examples) -> tuple[dict | None, list[str]]:
        """Trainer contract: labelled examples → ``forward`` keyword arguments (with ``labels``), errors."""
        kept, inputs, errors = self.load_batch([ex.source for ex in examples])
        if inputs is None:
            return None, [msg for _, msg in errors]
        labels = [examples[i].label for i in kept]
        dtype = torch.long if self.config.head.name == "classification" else torch.float32
        return {**inputs, "labels": torch.tensor(labels, dtype=dtype)}, [msg for _, msg in errors]

    # ------------------------------------------------------------------------------------------ compute
    def encode(self, **inputs: torch.Tensor) -> TokenBatch:
        """Tokenizer → frozen encoder: output tokens [B, 1+N, D] ([CLS] first) and their mask."""
        device = self.device
        tokens = self.tokenizer(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()})
        if self.adapter is None:
            hidden, mask = self.encoder.run_blocks(tokens.tokens, tokens.mask)
        else:
            hidden, mask = self.adapter.run_encoder(self.encoder, tokens)
        return TokenBatch(hidden, mask)

    def predict(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Head outputs [B, n_outputs]: class logits or regression values."""
        return self.head(self.encode(**inputs))

    def forward(self, labels: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        """The head's loss (cross-entropy or MSE) for one batch."""
        return self.head.loss(self.predict(**inputs), labels.to(self.device))


def _needs_table_statistics(tok: Any) -> bool:
    """A tabular tokenizer with numeric columns and no standardisation statistics yet."""
    return (tok is not None and tok.name == "tabular" and bool(tok.numeric)
            and tok.numeric_mean is None and tok.numeric_std is None)
