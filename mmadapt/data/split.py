"""What a dataset format reads a split into, and the registry of formats.

A recipe's ``tasks.<key>.train`` / ``eval`` names a ``format``; the format is a registered part (one file
under :mod:`mmadapt.data.formats` for real datasets, :mod:`mmadapt.data.synthetic` for generators) made of a
typed config dataclass (a :class:`~mmadapt.config.DatasetConfig` subclass: its fields are the keys a recipe
may set) and a reader::

    @dataclass
    class VQAv2Config(DatasetConfig):
        questions: str | None = None
        ...

    @register_format("vqa_v2", VQAv2Config, serves=("vqa",))
    def read(cfg: VQAv2Config, ctx: ReadContext) -> Split: ...

A reader is called once per split and run (the task keeps the :class:`Split`); it returns the samples of
the kind the task asked for (``ctx.kind``) and what the split knows about its labels. ``limit`` (every
format has it) keeps the first samples, and the label space is taken from the samples kept:

======== =========================================================== ====================================
kind     samples                                                      label space from the samples
======== =========================================================== ====================================
vqa      :class:`~mmadapt.data.formats.vqa_v2.VQASample`              ``answers``: the training targets
caption  :class:`~mmadapt.data.formats.coco_captions.CaptionSample`   —
labelled ``(source, label)``: a path or an in-memory row, a raw label ``classes``: the labels, sorted
dense    :class:`~mmadapt.data.formats.pascal_context.DenseSample`    (``dense_classes``: from the files)
pairs    :class:`~mmadapt.data.formats.msrvtt_retrieval.Caption`      —
======== =========================================================== ====================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmadapt.config import DatasetConfig
from mmadapt.errors import ConfigError
from mmadapt.registry import register

#: what each sample kind is called in messages
KIND_NOUNS = {"vqa": "question answering", "caption": "captioning", "labelled": "classification",
              "dense": "dense", "pairs": "retrieval"}


@dataclass(frozen=True)
class ReadContext:
    """What the task tells a format about the split it wants: the sample ``kind``, where the split is in
    the recipe (``tasks.vqa.train``, for messages), the label field of manifests / tables, the schema a table
    is read with (``None``: not a tabular model) and the dense label kinds to read."""

    kind: str
    where: str
    label_key: str = "label"
    table_schema: Any = None  # mmadapt.io.table.TableSchema
    dense_tasks: tuple[str, ...] = ()


@dataclass
class LabelSpace:
    """What a model's heads are sized by, read from the data (never written into the recipe's config):

    - ``classes``: classification labels in index order; ``regression``: a single numeric output instead;
    - ``answers``: a VQA answer vocabulary (candidates to rank, a classifier's outputs);
    - ``numeric_mean`` / ``numeric_std``: per numeric column of the training table (the tabular tokenizer's
      standardisation);
    - ``dense_classes``: class names of each segmentation label kind;
    - ``tasks``: task key → task name, for the assemblies that check which tasks they can serve.
    """

    classes: list[str] | None = None
    regression: bool = False
    answers: list[str] | None = None
    numeric_mean: list[float] | None = None
    numeric_std: list[float] | None = None
    dense_classes: dict[str, list[str]] = field(default_factory=dict)
    tasks: dict[str, str] = field(default_factory=dict)

    def of_task(self, name: str) -> list[str]:
        """The keys of the tasks named ``name`` (``vqa``, ``classification``, ...)."""
        return [key for key, kind in self.tasks.items() if kind == name]


@dataclass
class Split:
    """One split read once: its samples (the kind the task asked for) and its label space.

    ``questions`` / ``annotations``: the official VQA v2 files the split was read from, to score against (a
    format that is not VQA v2 on disk leaves them ``None`` and the task writes them from the samples).
    ``limited``: ``limit`` cut the split (missing predictions are then not scored as wrong)."""

    kind: str
    samples: list
    label_space: LabelSpace = field(default_factory=LabelSpace)
    questions: Path | None = None
    annotations: Path | None = None
    limited: bool = False

    def __len__(self) -> int:
        return len(self.samples)


@dataclass(frozen=True)
class DatasetFormat:
    """A registered format: its name, config dataclass, reader and the sample kinds it serves."""

    name: str
    config_class: type
    read: Callable[[Any, ReadContext], Split]
    serves: tuple[str, ...]

    @property
    def doc(self) -> str:
        return " ".join((self.config_class.__doc__ or "").split())


def register_format(name: str, config_class: type, serves: Sequence[str]) -> Callable:
    """Decorator of a format's reader: registers ``name`` (``format:`` in a recipe) with its config dataclass."""
    if not (dataclasses.is_dataclass(config_class) and issubclass(config_class, DatasetConfig)):
        raise TypeError(f"dataset format {name!r}: its config must be a DatasetConfig dataclass")
    unknown = set(serves) - set(KIND_NOUNS)
    if unknown:
        raise TypeError(f"dataset format {name!r}: unknown sample kinds {sorted(unknown)}")

    def deco(fn: Callable[[Any, ReadContext], Split]) -> Callable[[Any, ReadContext], Split]:
        register("datasets", name)(DatasetFormat(name, config_class, fn, tuple(serves)))
        return fn

    return deco


def dataset_format(name: str) -> DatasetFormat:
    from mmadapt import registry

    return registry.get("datasets", name)


def formats_serving(kind: str) -> list[str]:
    from mmadapt import registry

    return [n for n in registry.names("datasets") if kind in dataset_format(n).serves]


def make_dataset(format: str, **fields: Any) -> DatasetConfig:  # noqa: A002 - the recipe key's name
    """A validated dataset config in Python, as a recipe would give it: ``make_dataset("manifest",
    annotations="train.jsonl")``."""
    from mmadapt.config import build_dataset_config

    return build_dataset_config({"format": format, **fields}, "dataset")


def read_split(cfg: DatasetConfig, ctx: ReadContext) -> Split:
    """Read the split ``cfg`` names, as ``ctx.kind`` samples; ``limit`` applied and the label space filled."""
    fmt = dataset_format(cfg.format)
    if ctx.kind not in fmt.serves:
        raise ConfigError(f"{ctx.where}.format: {cfg.format!r} is not a {KIND_NOUNS[ctx.kind]} format "
                          f"({', '.join(formats_serving(ctx.kind))})")
    split = fmt.read(cfg, ctx)
    if cfg.limit:
        split.samples, split.limited = split.samples[: cfg.limit], True
    space = split.label_space
    if split.kind == "labelled" and space.classes is None:
        space.classes = sorted({str(label) for _, label in split.samples})
    if split.kind == "vqa" and space.answers is None:
        from mmadapt.data.formats.vqa_v2 import training_answer

        space.answers = sorted({a for a in map(training_answer, split.samples) if a is not None})
    return split


def require_fields(cfg: Any, names: Sequence[str], where: str) -> None:
    """``{where}: {format} needs a, b and c`` when one of ``names`` is unset."""
    if any(not getattr(cfg, n) for n in names):
        listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
        raise ConfigError(f"{where}: {cfg.format} needs {listed}")
