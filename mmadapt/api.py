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

from dataclasses import dataclass, field
from pathlib import Path

import torch

from mmadapt import registry
from mmadapt.config import Config
from mmadapt.errors import ConfigError
from mmadapt.models.base import Assembly
from mmadapt.tasks.base import Task
from mmadapt.training.data import mixture


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read and validate a YAML recipe (``a.b=value`` overrides applied first)."""
    return Config.from_yaml(path, overrides)


def build_tasks(config: Config) -> dict[str, Task]:
    """The recipe's tasks; ``tasks.<key>`` names a registered task (``vqa``, ``caption``, ``classification``,
    ``regression``), optionally with a suffix (``vqa_gqa``)."""
    if not config.tasks:
        raise ConfigError("tasks: at least one task is required (e.g. tasks.vqa)")
    tasks = {}
    for key, task_cfg in config.tasks.items():
        kind = key.split("_")[0] if key not in registry.names("tasks") else key
        try:
            task_cls = registry.get("tasks", kind)
        except KeyError as exc:
            raise ConfigError(f"tasks.{key}: {exc.args[0]} (name the task after one, e.g. vqa or vqa_<suffix>)") from None
        tasks[key] = task_cls(key, task_cfg, config.model)
    return tasks


def build_model(config: Config, tasks: dict[str, Task] | None = None) -> Assembly:
    """Load the frozen backbones and build the trained parts named in ``config.model``.

    For an ``adapted_encoder`` whose ``model.head.n_outputs`` is not set, the (single) task's training data
    give the classes; they are written into ``config.model.head`` so that ``save_pretrained`` keeps them.
    A ``dense_multitask`` model's segmentation tasks get their class names from the dense task's data.
    Likewise a tabular tokenizer without ``numeric_mean`` / ``numeric_std`` gets them from the training table.
    """
    model_cfg = config.model
    if model_cfg.assembly == "perceptual_lm" and model_cfg.adapter is None:
        raise ConfigError("model.adapter: missing (e.g. model.adapter.name=epalm)")
    if model_cfg.assembly == "adapted_encoder" and model_cfg.head.n_outputs is None:
        tasks = tasks or build_tasks(config)
        if len(tasks) != 1:
            raise ConfigError(f"tasks: an adapted_encoder has one head, so one task (got {', '.join(tasks)})")
        (task,) = tasks.values()
        if not hasattr(task, "n_outputs"):
            raise ConfigError(f"tasks.{task.key}: an adapted_encoder needs a classification or regression task")
        model_cfg.head.n_outputs = task.n_outputs()
        if task.name == "classification":
            model_cfg.head.classes = task.classes()
        if model_cfg.head.name == "classification" and task.name == "regression":
            model_cfg.head.name = "regression"
    tok = getattr(model_cfg, "tokenizer", None)
    if model_cfg.assembly == "adapted_encoder" and getattr(tok, "name", None) == "tabular" and tok.numeric \
            and tok.numeric_mean is None and tok.numeric_std is None:
        tasks = tasks or build_tasks(config)
        (task,) = tasks.values()
        tok.numeric_mean, tok.numeric_std = task.numeric_statistics()
    if model_cfg.assembly == "dense_multitask":
        missing = [n for n, t in model_cfg.dense.tasks.items() if t.kind == "segmentation" and not t.classes]
        if missing:
            tasks = tasks or build_tasks(config)
            dense = [t for t in tasks.values() if t.name == "dense"]
            if len(dense) != 1:
                raise ConfigError("tasks: a dense_multitask model reads its classes from one dense task "
                                  f"(got {', '.join(tasks) or 'none'}); or set model.dense.tasks.<name>.classes")
            for name in missing:
                model_cfg.dense.tasks[name].classes = dense[0].class_names(name)
    if model_cfg.assembly == "all_in_one":
        _all_in_one_heads(model_cfg, tasks or build_tasks(config))
    assembly = registry.get("assemblies", model_cfg.assembly)
    torch.manual_seed(config.train.seed)  # the trained parts' initialisation is part of the run's seed
    return assembly.from_config(model_cfg)


def _all_in_one_heads(model_cfg, tasks: dict[str, Task]) -> None:
    """An ``all_in_one`` model's heads from its tasks: the video QA answer vocabulary (training answers), a
    matching head for retrieval, video classes for classification (at most one task of each kind)."""
    vt = model_cfg.video_text
    kinds: dict[str, list[Task]] = {}
    for task in tasks.values():
        kinds.setdefault(task.name, []).append(task)
    unknown = set(kinds) - {"vqa", "retrieval", "classification"}
    if unknown:
        raise ConfigError(f"tasks: an all_in_one model does video QA, retrieval and classification, not "
                          f"{', '.join(sorted(unknown))}")
    for kind, found in kinds.items():
        if len(found) > 1:
            raise ConfigError(f"tasks: an all_in_one model has one {kind} head ({', '.join(t.key for t in found)})")
    if "vqa" in kinds and not vt.answers:
        vt.answers = kinds["vqa"][0].candidates()
    if "retrieval" in kinds:
        vt.matching = True
    if "classification" in kinds and model_cfg.head.n_outputs is None:
        model_cfg.head.classes = kinds["classification"][0].classes()
        model_cfg.head.n_outputs = len(model_cfg.head.classes)


def training_examples(config: Config, tasks: dict[str, Task] | None = None) -> list:
    """Every task's training examples, mixed by ``sample_weight`` (reads annotations, checks images exist)."""
    tasks = tasks or build_tasks(config)
    per_task = {k: t.train_examples() for k, t in tasks.items()}
    per_task = {k: v for k, v in per_task.items() if v}
    if not per_task:
        raise ConfigError("tasks: no task has a train dataset")
    return mixture(per_task, {k: config.tasks[k].sample_weight for k in per_task}, config.train.seed)


@dataclass
class TrainResult:
    run_dir: Path
    records: list[dict]
    model: Assembly
    scores: dict[str, dict] = field(default_factory=dict)


def train(config: Config, *, model: Assembly | None = None, resume: bool = False,
          evaluate_after: bool = False, quiet: bool = False) -> TrainResult:
    """Train the adapter of ``config`` (data are read and checked before any weights load)."""
    from mmadapt.training.trainer import Trainer

    tasks = build_tasks(config)
    examples = training_examples(config, tasks)
    model = model or build_model(config, tasks)
    if config.train.feature_cache:
        from mmadapt.training.feature_cache import attach_feature_cache

        report = attach_feature_cache(model, config)
        if not quiet:
            print(report)
    trainer = Trainer(model, config, examples, config.output_dir, quiet=quiet)
    records = trainer.train(resume=resume)
    result = TrainResult(Path(config.output_dir), records, trainer.module)
    if evaluate_after and trainer.world == 1:
        result.scores = evaluate(trainer.module, config, tasks=tasks, quiet=quiet)
    return result


def evaluate(model: Assembly, config: Config, *, tasks: dict[str, Task] | None = None,
             out_dir: str | Path | None = None, quiet: bool = False) -> dict[str, dict]:
    """Score ``model`` on every task that has an ``eval`` dataset; files go to ``<output_dir>/eval``."""
    tasks = tasks or build_tasks(config)
    out = Path(out_dir) if out_dir is not None else Path(config.output_dir) / "eval"
    model.eval()
    scores = {}
    for key, task in tasks.items():
        if task.config.eval is not None:
            scores[key] = task.evaluate(model, out, config.eval.batch_size, config.eval.max_samples, quiet=quiet)
    return scores
