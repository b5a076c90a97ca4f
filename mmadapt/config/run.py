"""A whole run: the model, its tasks, training and evaluation settings (:class:`Config`, what a recipe holds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from mmadapt.config.build import _build, _inline_tokenizer_file, apply_overrides, read_yaml, to_plain
from mmadapt.config.dataset import DatasetConfig
from mmadapt.config.model import ModelConfig
from mmadapt.errors import ConfigError


@dataclass
class TaskConfig:
    """One task of a run: its data, its text format and how it is evaluated."""

    train: DatasetConfig | None = None
    eval: DatasetConfig | None = None
    prompt: str = "question: {question} answer:"
    sample_weight: float = 1.0  # relative share of training batches when several tasks are mixed
    # loss weight of the prompt / question tokens; None: the method's own (eP-ALM: 1, SOLO and others: 0)
    prefix_loss_weight: float | None = None
    target_separator: str = " "  # text between the prompt and the target (eP-ALM's authors: "" after "</a>")
    # VQA only: the training answer — the annotation's most common one, or ``sampled`` (eP-ALM's authors): drawn
    # each time the question is read, among its distinct annotator answers with weight min(1, 0.3 · count)
    train_answer: Literal["most_common", "sampled"] = "most_common"
    answer_mode: Literal["generate", "rank"] = "generate"  # VQA only
    candidates: str | None = None  # rank mode: a JSON list of answers; default: training answers
    rank_top_k: int = 16  # rank mode: candidates kept by first-token probability before full scoring
    max_new_tokens: int = 10
    # a cap on the whole sequence, as Hugging Face generate's max_length: the prompt's tokens (padded to the
    # batch) + the new ones; None: only max_new_tokens (eP-ALM's authors: 30 and no max_new_tokens)
    max_length: int | None = None
    num_beams: int = 1
    label_key: str = "label"  # classification / regression: the label field (manifest) or column (table)


@dataclass
class TrainConfig:
    max_steps: int = 1000
    batch_size: int = 32  # global batch = micro_batch_size × grad_accum × world size
    micro_batch_size: int | None = None  # per rank; default: batch_size / (grad_accum × world)
    grad_accum: int = 1
    lr: float = 2e-5
    prompt_lr: float = 1e-5
    weight_decay: float = 0.02
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0
    clip_grad: float = 1.0
    zero_stage: Literal[0, 1, 2, 3] = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    log_every: int = 10
    save_every: int = 0  # 0: only at the end
    keep_checkpoints: int = 2
    num_workers: int = 0
    seed: int = 0
    # a step whose loss or gradient is not finite is skipped (no update) and logged; this many in a row stop the run
    max_nonfinite_steps: int = 3
    # fast paths (see README, Performance): bf16 autocast of the forward (weights and optimizer stay fp32),
    # activation recomputation in the frozen LM's layers, torch.compile of the frozen LM's layers
    autocast: Literal["none", "bf16"] = "none"
    gradient_checkpointing: bool = False
    compile: bool = False
    # a directory of precomputed frozen-encoder features (`mmadapt cache-features <recipe>`); training reads the
    # rows whose key (file content, encoder weights, preprocessing) matches and runs the encoder for the others
    feature_cache: str | None = None

    def validate(self) -> None:
        if self.num_workers != 0:  # refused rather than silently ignored until DataLoader workers exist
            raise ConfigError(f"num_workers: background data loading is not implemented yet; the trainer reads "
                              f"data in its own process, so only 0 is accepted (got {self.num_workers})")
        if self.max_nonfinite_steps < 1:
            raise ConfigError(f"max_nonfinite_steps: expected a positive integer, got {self.max_nonfinite_steps}")
        if self.autocast != "none" and self.precision != "fp32":
            raise ConfigError(f"autocast: {self.autocast} autocast runs fp32 weights in bf16 matmuls; "
                              f"train.precision={self.precision} already casts the model — use one of the two")


@dataclass
class EvalConfig:
    batch_size: int = 64
    max_samples: int | None = None


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output_dir: str = "runs/default"
    source: str | None = None  # the recipe file this came from (set by from_yaml)

    # ---------------------------------------------------------------------------------------- loading
    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> "Config":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: recipe file not found")
        raw = read_yaml(path) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
        cfg = cls.from_dict(raw, overrides, where=str(path))
        cfg.source = str(path)
        return cfg

    @classmethod
    def from_dict(cls, raw: dict, overrides: list[str] | None = None, where: str = "config") -> "Config":
        try:
            raw = _inline_tokenizer_file(raw)  # so that overrides can reach into it (model.tokenizer.x=...)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        raw = apply_overrides(raw, overrides or [], where)
        try:
            return _build(cls, raw, "")
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def to_dict(self) -> dict:
        return to_plain(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)
