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


def predict_all(desc: str, items: Sequence[Any], batch_size: int, load: Callable, predict: Callable,
                quiet: bool = False, loading: Background = Background()) -> tuple[list[Any], list[tuple[int, str]]]:
    """The evaluation loop: ``items`` in batches of ``batch_size``; ``load(chunk)`` → (indices that loaded,
    inputs or None, [(index, error)]) (an assembly's ``load_batch``), run ahead by ``loading.num_workers``
    DataLoader workers (:mod:`mmadapt.data.loader`; 0: here), ``predict(inputs, kept_items)`` → one
    prediction per kept item, here. Returns the predictions aligned with ``items`` (``None`` for items that did
    not load) and the [(index into items, error)] of those."""
    outputs: list[Any] = [None] * len(items)
    errors: list[tuple[int, str]] = []
    chunks = list(batched(items, batch_size))
    loaded = in_background(range(len(chunks)), lambda c: load([*chunks[c]]), loading)
    offset = 0
    for chunk, (kept, inputs, bad) in tqdm(zip(chunks, loaded), total=len(chunks), desc=desc, disable=quiet):
        errors.extend((offset + i, msg) for i, msg in bad)
        if inputs is not None:
            for i, out in zip(kept, predict(inputs, [chunk[i] for i in kept])):
                outputs[offset + i] = out
        offset += len(chunk)
    return outputs, errors


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
    def evaluate(self, model, out_dir: Path, batch_size: int, max_samples: int | None = None,
                 quiet: bool = False, loading: Background = Background()) -> dict:
        """Predict on the eval split, write results + ``<key>.json`` scores in ``out_dir``; return the scores.
        ``loading``: how the eval batches are read (``eval.num_workers`` …)."""

    @abc.abstractmethod
    def baselines(self, out_dir: Path) -> dict[str, float]:
        """Scores of trivial predictors (constant answer / caption) on the eval split, for comparison."""


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
