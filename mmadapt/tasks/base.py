"""What a task is: a split's samples → training examples, and predictions → official result files + scores.

A task reads its :class:`~mmadapt.config.TaskConfig`. Each of its splits is read once, through its dataset
format, into a :class:`~mmadapt.data.split.Split` (samples and label space) that the task keeps. It turns
the training split into :class:`~mmadapt.data.examples.Example` s, and evaluates a model on its eval split
through the one evaluation loop (:func:`predict_all`): the model loads each batch tolerantly
(``model.load_batch``), the task predicts on what loaded, and writes the predictions in the official
results format under ``<run>/eval/`` and the scores as ``eval/<task>.json``. Bad eval samples (unreadable
images) are recorded in ``eval/<task>_errors.json`` and the run goes on.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mmadapt.config import ModelConfig, TaskConfig
from mmadapt.data.loader import Background, in_background
from mmadapt.data.split import LabelSpace, ReadContext, Split, read_split
from mmadapt.errors import ConfigError


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass(frozen=True)
class Shard:
    """This process's part of a distributed evaluation: rank ``rank`` of ``world`` (the default: one process,
    everything here). Items are dealt out by batch, round robin; rank 0 gathers every rank's predictions,
    writes the result files and scores them, so the scores are exactly one process's."""

    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> "Shard":
        """The running process group's rank and size (one process when there is none)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mine(self, n: int) -> range:
        """The indices of ``n`` batches (or rows) this rank computes."""
        return range(self.rank, n, self.world)

    def gather(self, local: dict[int, Any]) -> dict[int, Any]:
        """``{index: value}`` of every rank, merged on rank 0 (the other ranks get ``{}``)."""
        if self.world == 1:
            return local
        import torch.distributed as dist

        parts: list[Any] | None = [None] * self.world if self.main else None
        dist.gather_object(local, parts, dst=0)
        return {k: v for part in parts for k, v in part.items()} if self.main else {}


@dataclass(frozen=True)
class EvalRun:
    """How one evaluation runs: ``batch_size`` items a batch, the first ``max_samples`` of the eval split
    (None: all), read by ``loading`` (background workers, :mod:`mmadapt.data.loader`), this process's
    ``shard`` of the batches; ``quiet``: no progress bar."""

    batch_size: int = 64
    max_samples: int | None = None
    quiet: bool = False
    loading: Background = Background()
    shard: Shard = Shard()

    def first(self, items: Sequence[Any]) -> Sequence[Any]:
        return items[: self.max_samples] if self.max_samples else items


def predict_all(desc: str, items: Sequence[Any], load: Callable, predict: Callable,
                run: EvalRun = EvalRun()) -> tuple[list[Any], list[tuple[int, str]]]:
    """The evaluation loop: ``items`` in batches of ``run.batch_size``; ``load(chunk)`` → (indices that loaded,
    inputs or None, [(index, error)]) (an assembly's ``load_batch``), run ahead by ``run.loading``'s workers
    (0: here), ``predict(inputs, kept_items)`` → one prediction per kept item, here. Under a distributed
    ``run.shard`` each rank does its own batches and rank 0 gathers them. Returns (on rank 0; the other ranks
    get only their own, and stop there) the predictions aligned with ``items`` (``None`` for items that did
    not load) and the [(index into items, error)] of those, in item order."""
    chunks = list(batched(items, run.batch_size))
    starts = [i * run.batch_size for i in range(len(chunks))]
    mine = list(run.shard.mine(len(chunks)))
    local: dict[int, Any] = {}
    local_errors: dict[int, str] = {}
    loaded = in_background(mine, lambda c: load([*chunks[c]]), run.loading)
    for c, (kept, inputs, bad) in tqdm(zip(mine, loaded), total=len(mine), desc=desc, disable=run.quiet):
        local_errors.update((starts[c] + i, msg) for i, msg in bad)
        if inputs is not None:
            for i, out in zip(kept, predict(inputs, [chunks[c][i] for i in kept])):
                local[starts[c] + i] = out
    gathered = run.shard.gather({run.shard.rank: (local, local_errors)})
    outputs: list[Any] = [None] * len(items)
    errors: dict[int, str] = {}
    for part_outputs, part_errors in gathered.values():
        for i, out in part_outputs.items():
            outputs[i] = out
        errors.update(part_errors)
    return outputs, sorted(errors.items())


@dataclass
class TextTaskConfig(TaskConfig):
    """What a task that trains on text has (VQA, captioning): the prompt, the loss on it, how targets follow
    it and how answers are generated."""

    prompt: str = "question: {question} answer:"
    # loss weight of the prompt / question tokens; None: the method's own (eP-ALM: 1, SOLO and others: 0)
    prefix_loss_weight: float | None = None
    target_separator: str = " "  # text between the prompt and the target (eP-ALM's authors: "" after "</a>")
    max_new_tokens: int = 10
    # a cap on the whole sequence, as Hugging Face generate's max_length: the prompt's tokens (padded to the
    # batch) + the new ones; None: only max_new_tokens (eP-ALM's authors: 30 and no max_new_tokens)
    max_length: int | None = None
    num_beams: int = 1


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)
    return path


class Task(abc.ABC):
    name: str
    #: the samples this task reads from its formats (see :mod:`mmadapt.data.split`)
    sample_kind: str
    #: the dataclass of ``tasks.<key>`` in a recipe
    config_class: type = TaskConfig

    def __init__(self, key: str, config: TaskConfig, model_config: ModelConfig | None = None):
        self.key = key  # the task's name in the recipe (`tasks.<key>`)
        self.config = config
        self.model_config = model_config  # what some formats are read with (a table's schema, dense kinds)
        self._splits: dict[str, Split] = {}

    # ------------------------------------------------------------------------------------------- data
    def read_context(self, which: str) -> ReadContext:
        return ReadContext(self.sample_kind, f"tasks.{self.key}.{which}")

    def split(self, which: str) -> Split:
        """The ``train`` / ``eval`` split, read the first time it is asked for and kept."""
        if which not in self._splits:
            ds = getattr(self.config, which)
            if ds is None:
                raise ConfigError(f"tasks.{self.key}.{which}: no dataset configured")
            self._splits[which] = read_split(ds, self.read_context(which))
        return self._splits[which]

    def label_space(self) -> LabelSpace:
        """What this task tells the model's heads (from its training split); see :func:`merge_label_spaces`."""
        return LabelSpace(tasks={self.key: self.name})

    # --------------------------------------------------------------------------------------- the jobs
    @abc.abstractmethod
    def train_examples(self) -> list:
        """The training split as examples (empty if the task has no ``train`` dataset)."""

    @abc.abstractmethod
    def evaluate(self, model, out_dir: Path, run: EvalRun = EvalRun()) -> dict:
        """Predict on the eval split, write results + ``<key>.json`` scores in ``out_dir``; return the scores.
        Under a distributed ``run.shard`` every rank takes part and rank 0 alone writes and scores (the other
        ranks return ``{}``)."""

    @abc.abstractmethod
    def baselines(self, out_dir: Path) -> dict[str, float]:
        """Scores of trivial predictors (constant answer / caption) on the eval split, for comparison."""


#: per-sample tables in the scores, never a log line's business
PER_SAMPLE_KEYS = ("perQuestion",)


def flat_scores(scores: dict[str, dict], max_entries: int = 32) -> dict[str, float]:
    """``{task: scores}`` → ``{"task/key": number, "task/key/sub": number}``: the numeric leaves up to three
    levels down, leaving out per-sample tables (:data:`PER_SAMPLE_KEYS`) and any table of more than
    ``max_entries`` entries — what a log line or ``train.best_metric`` names (e.g. ``vqa/overall``,
    ``vqa/perAnswerType/yes/no``, ``caption/CIDEr``)."""
    out: dict[str, float] = {}

    def walk(prefix: str, value: Any, depth: int) -> None:
        if isinstance(value, bool) or prefix.rsplit("/", 1)[-1] in PER_SAMPLE_KEYS:
            return
        if isinstance(value, (int, float)):
            out[prefix] = value
        elif isinstance(value, dict) and depth < 3 and len(value) <= max_entries:
            for key, sub in value.items():
                walk(f"{prefix}/{key}", sub, depth + 1)

    for task, task_scores in scores.items():
        for key, value in task_scores.items():
            walk(f"{task}/{key}", value, 1)
    return out


def merge_label_spaces(tasks: dict[str, Task]) -> LabelSpace:
    """One label space for a model from its tasks': each field from the first task that has it (an assembly
    that sizes a head by a field checks that one task of that kind gives it: ``LabelSpace.of_task``)."""
    merged = LabelSpace()
    for task in tasks.values():
        space = task.label_space()
        merged.tasks.update(space.tasks)
        for name in ("classes", "answers", "numeric_mean", "numeric_std"):
            if getattr(merged, name) is None:
                setattr(merged, name, getattr(space, name))
        merged.regression = merged.regression or space.regression
        for name, classes in space.dense_classes.items():
            merged.dense_classes.setdefault(name, classes)
    return merged
