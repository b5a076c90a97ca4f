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
    """What every task of a run has: its data and its share of training batches. Each task kind extends it
    with its own keys (its ``config_class``: :class:`~mmadapt.tasks.vqa.VQATaskConfig`, ...), chosen by the
    task's name in the recipe (``tasks.vqa``, ``tasks.vqa_gqa``, ``tasks.classification``), so a key that the
    task would not read fails when the recipe is read."""

    train: DatasetConfig | None = None
    eval: DatasetConfig | None = None
    sample_weight: float = 1.0  # relative share of training batches when several tasks are mixed


#: the trackers ``train.report_to`` may name (:mod:`mmadapt.training.tracking`)
TRACKERS = ("tensorboard", "wandb")


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
    keep_checkpoints: int = 2  # 0: keep every checkpoint
    # background data loading (DataLoader workers read, decode and preprocess the next micro-batches; 0: the
    # trainer reads them itself between steps), each `prefetch_factor` micro-batches ahead, `worker_threads`
    # torch threads per worker
    num_workers: int = 0
    prefetch_factor: int = 2
    worker_threads: int = 1
    seed: int = 0
    # a step whose loss or gradient is not finite is skipped (no update) and logged; this many in a row stop the run
    max_nonfinite_steps: int = 3
    # fast paths (see README, Performance): bf16 autocast of the forward (weights and optimizer stay fp32),
    # activation recomputation in the frozen LM's layers, torch.compile of the frozen LM's layers
    autocast: Literal["none", "bf16"] = "none"
    gradient_checkpointing: bool = False
    compile: bool = False
    # evaluation during training, on the live model: every `eval_every` steps (0: never), on the first
    # `eval_max_samples` items of each eval split (None: eval.max_samples); the scores go to log.jsonl and
    # eval/step-N/. `best_metric` (a key of those scores, e.g. vqa/overall) keeps the best adapter so far in
    # best/ (higher is better with best_mode max, lower with min)
    eval_every: int = 0
    eval_max_samples: int | None = None
    best_metric: str | None = None
    best_mode: Literal["max", "min"] = "max"
    # a directory of precomputed frozen-encoder features (`mmadapt cache-features <recipe>`); training reads the
    # rows whose key (file content, encoder weights, preprocessing) matches and runs the encoder for the others
    feature_cache: str | None = None
    # experiment tracking: every log.jsonl record also to TensorBoard (RUN_DIR/tensorboard/) and / or Weights &
    # Biases (RUN_DIR/wandb/, offline unless WANDB_API_KEY or WANDB_MODE says otherwise; project `wandb_project`)
    report_to: list[str] = field(default_factory=list)
    wandb_project: str = "mmadapt"

    def validate(self) -> None:
        if self.max_steps < 1:
            raise ConfigError(f"max_steps: expected at least 1 training step, got {self.max_steps} (to score an "
                              f"adapter without training it, use `mmadapt eval`)")
        for key in ("batch_size", "micro_batch_size", "grad_accum", "log_every"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"{key}: expected a positive integer, got {value}")
        for key in ("lr", "prompt_lr"):
            if not getattr(self, key) > 0:  # also refuses NaN
                raise ConfigError(f"{key}: expected a positive learning rate, got {getattr(self, key)} (a negative "
                                  f"one would train by gradient ascent)")
        for key in ("warmup_steps", "save_every", "keep_checkpoints"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}: expected 0 or more steps, got {getattr(self, key)}")
        if self.weight_decay < 0 or self.clip_grad < 0:
            bad = "weight_decay" if self.weight_decay < 0 else "clip_grad"
            raise ConfigError(f"{bad}: expected >= 0, got {getattr(self, bad)}")
        check_background(self)
        if self.eval_every < 0:
            raise ConfigError(f"eval_every: expected 0 (no evaluation during training) or a step count, got "
                              f"{self.eval_every}")
        if self.eval_max_samples is not None and self.eval_max_samples < 1:
            raise ConfigError(f"eval_max_samples: expected a positive integer or null, got {self.eval_max_samples}")
        if self.best_metric is not None and not self.eval_every:
            raise ConfigError(f"best_metric: {self.best_metric!r} is read from the evaluations during training; "
                              f"set train.eval_every too")
        if self.num_workers and self.feature_cache:
            raise ConfigError("num_workers: with train.feature_cache the features come from the cache and its misses "
                              "go through the frozen encoder, in the trainer's process; set num_workers: 0")
        if self.max_nonfinite_steps < 1:
            raise ConfigError(f"max_nonfinite_steps: expected a positive integer, got {self.max_nonfinite_steps}")
        for name in self.report_to:
            if name not in TRACKERS:
                raise ConfigError(f"report_to: unknown tracker {name!r}; expected any of {', '.join(TRACKERS)}")
        if len(set(self.report_to)) != len(self.report_to):
            raise ConfigError(f"report_to: {self.report_to} names a tracker twice")
        if self.autocast != "none" and self.precision != "fp32":
            raise ConfigError(f"autocast: {self.autocast} autocast runs fp32 weights in bf16 matmuls; "
                              f"train.precision={self.precision} already casts the model — use one of the two")


def check_background(cfg) -> None:
    """``num_workers`` ≥ 0, ``prefetch_factor`` and ``worker_threads`` ≥ 1 (of a train or eval section)."""
    if cfg.num_workers < 0:
        raise ConfigError(f"num_workers: expected 0 (load in the main process) or more workers, got {cfg.num_workers}")
    for key in ("prefetch_factor", "worker_threads"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{key}: expected a positive integer, got {getattr(cfg, key)}")


@dataclass
class EvalConfig:
    batch_size: int = 64
    max_samples: int | None = None
    # background loading of the eval batches, as train.num_workers / prefetch_factor / worker_threads
    num_workers: int = 0
    prefetch_factor: int = 2
    worker_threads: int = 1

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: expected a positive integer, got {self.batch_size}")
        check_background(self)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output_dir: str = "runs/default"
    source: str | None = None  # the recipe file this came from (set by from_yaml)

    def validate(self) -> None:
        out = Path(self.output_dir).expanduser()
        for p in (out, *out.parents):
            if p.exists() and not p.is_dir():
                raise ConfigError(f"output_dir: {p} is a file, not a directory"
                                  + (f" (output_dir is {self.output_dir})" if p != out else ""))

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
