"""The library's entry points: recipe → model → training → evaluation.

::

    import mmadapt

    cfg = mmadapt.load_recipe("adapters/epalm/vqa.yaml", ["train.max_steps=200"])
    model = mmadapt.build_model(cfg)
    model.print_trainable_parameters()
    result = mmadapt.train(cfg, model=model)          # DeepSpeed, checkpoints, log.jsonl in cfg.output_dir
    scores = mmadapt.evaluate(model, cfg)             # {"vqa": {...}, ...}, files in <output_dir>/eval/
    model.save_pretrained("my-adapter")
    again = mmadapt.PerceptualLM.from_pretrained("my-adapter")
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mmadapt import registry
from mmadapt.config import Config
from mmadapt.config.build import task_kind
from mmadapt.data.loader import Background
from mmadapt.errors import ConfigError
from mmadapt.models.base import Assembly, check_same_backbones
from mmadapt.tasks.base import EvalRun, Shard, Task, flat_scores, merge_label_spaces
from mmadapt.training.checkpoint import latest_checkpoint
from mmadapt.training.data import mixture


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read and validate a YAML recipe (``a.b=value`` overrides applied first)."""
    return Config.from_yaml(path, overrides)


def build_tasks(config: Config) -> dict[str, Task]:
    """The recipe's tasks; ``tasks.<key>`` names a registered task (``vqa``, ``caption``, ``classification``,
    ``regression``), optionally with a suffix (``vqa_gqa``)."""
    if not config.tasks:
        raise ConfigError("tasks: at least one task is required (e.g. tasks.vqa)")
    known = registry.names("tasks")
    return {key: registry.get("tasks", task_kind(key, known))(key, task_cfg, config.model)
            for key, task_cfg in config.tasks.items()}


def build_model(config: Config, tasks: dict[str, Task] | None = None) -> Assembly:
    """Load the frozen backbones and build the trained parts named in ``config.model``.

    Heads the config leaves open are sized by the data: the tasks' splits give a label space (an
    ``adapted_encoder``'s classes or a regression output and a table's statistics, a ``dense_multitask``
    model's segmentation classes, an ``all_in_one`` model's answer vocabulary, matching head and classes),
    which the model keeps in its own config (``model.config``, saved by ``save_pretrained``);
    ``config.model`` is not changed.
    """
    model_cfg = config.model
    if model_cfg.assembly == "perceptual_lm" and model_cfg.adapter is None:
        raise ConfigError("model.adapter: missing (e.g. model.adapter.name=epalm)")
    assembly = registry.get("assemblies", model_cfg.assembly)
    label_space = None
    if assembly.needs_label_space(model_cfg):
        label_space = merge_label_spaces(tasks or build_tasks(config))
    torch.manual_seed(config.train.seed)  # the trained parts' initialisation is part of the run's seed
    return assembly.from_config(model_cfg, label_space)


def training_examples(config: Config, tasks: dict[str, Task] | None = None) -> list:
    """Every task's training examples, mixed by ``sample_weight`` (reads annotations, checks images exist)."""
    tasks = tasks or build_tasks(config)
    per_task = {k: t.train_examples() for k, t in tasks.items()}
    per_task = {k: v for k, v in per_task.items() if v}
    if not per_task:
        raise ConfigError("tasks: no task has a train dataset")
    return mixture(per_task, {k: config.tasks[k].sample_weight for k in per_task}, config.train.seed)


def shard(config: Config, out: str | Path, *, which: str = "train", task: str | None = None,
          max_per_shard: int = 1000, report=print) -> dict:
    """Write the ``which`` split of each task (or of ``task`` only) as WebDataset shards under ``out/<task>``
    (read through the task's own format and read context: the samples a run on loose files trains on);
    ``report`` gets one line per sample left out. Returns task key → :class:`~mmadapt.data.shards.ShardReport`.
    Read them back with ``tasks.<key>.<which>: {format: webdataset, shards: out/<key>}``."""
    from mmadapt.data.shards import write_shards

    tasks = build_tasks(config)
    if task is not None and task not in tasks:
        raise ConfigError(f"--task: {task!r} is not a task of the recipe ({', '.join(tasks)})")
    if which not in ("train", "eval"):
        raise ConfigError(f"--split: expected train or eval, got {which!r}")
    chosen = {k: t for k, t in tasks.items() if task in (None, k) and getattr(t.config, which) is not None}
    if not chosen:
        raise ConfigError(f"tasks: no task has a {which} dataset to shard")
    return {key: write_shards(getattr(t.config, which), t.read_context(which), Path(out) / key, max_per_shard,
                              report) for key, t in chosen.items()}


@dataclass
class TrainResult:
    run_dir: Path
    records: list[dict]  # one per step: loss, lr, ...
    model: Assembly
    scores: dict[str, dict] = field(default_factory=dict)  # evaluate_after's
    evaluations: list[dict] = field(default_factory=list)  # train.eval_every's: {"step", "eval": flat scores, ...}


def train(config: Config, *, model: Assembly | None = None, resume: bool = False,
          evaluate_after: bool = False, quiet: bool = False) -> TrainResult:
    """Train the adapter of ``config`` (data are read and checked before any weights load)."""
    from mmadapt.training.trainer import Trainer

    tasks = build_tasks(config)
    examples = training_examples(config, tasks)
    if resume:  # the checkpoint must belong to these backbones: checked before any weights load
        latest = latest_checkpoint(Path(config.output_dir))
        if latest is not None:
            check_same_backbones(latest, model.config if model is not None else config.model, "--resume")
    model = model or build_model(config, tasks)
    if config.train.feature_cache:
        from mmadapt.training.feature_cache import attach_feature_cache

        report = attach_feature_cache(model, config)
        if not quiet:
            print(report)
    during = dataclasses.replace(config, eval=dataclasses.replace(
        config.eval, max_samples=config.train.eval_max_samples or config.eval.max_samples))

    def evaluator(step: int) -> dict[str, float]:  # the live model, the trainer's own module
        out = Path(config.output_dir) / "eval" / f"step-{step}"
        return flat_scores(evaluate(trainer.module, during, tasks=tasks, out_dir=out, quiet=True))

    trainer = Trainer(model, config, examples, config.output_dir, quiet=quiet,
                      evaluator=evaluator if config.train.eval_every else None)
    records = trainer.train(resume=resume)
    result = TrainResult(Path(config.output_dir), records, trainer.module, evaluations=trainer.evaluations)
    if evaluate_after:  # every rank: the evaluation is sharded over them
        result.scores = evaluate(trainer.module, config, tasks=tasks, quiet=quiet)
    return result


def evaluate(model: Assembly, config: Config, *, tasks: dict[str, Task] | None = None,
             out_dir: str | Path | None = None, quiet: bool = False) -> dict[str, dict]:
    """Score ``model`` on every task that has an ``eval`` dataset; files go to ``<output_dir>/eval``.

    Under torchrun / the deepspeed launcher every process calls this: the eval batches are dealt out over the
    ranks, rank 0 gathers the predictions, writes the result files once and scores them, and every rank
    returns rank 0's scores — exactly what one process computes."""
    tasks = tasks or build_tasks(config)
    out = Path(out_dir) if out_dir is not None else Path(config.output_dir) / "eval"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from mmadapt.training.distributed import init_distributed

        init_distributed()
    shard = Shard.current()
    model.eval()
    ev = config.eval
    loading = Background(num_workers=ev.num_workers, prefetch_factor=ev.prefetch_factor,
                         worker_threads=ev.worker_threads, pin_memory=torch.cuda.is_available())
    run = EvalRun(ev.batch_size, ev.max_samples, quiet=quiet or not shard.main, loading=loading, shard=shard)
    scores = {}
    for key, task in tasks.items():
        if task.config.eval is not None:
            scores[key] = task.evaluate(model, out, run)
    if shard.world > 1:
        import torch.distributed as dist

        box = [scores]
        dist.broadcast_object_list(box, src=0)
        scores = box[0]
    return scores
