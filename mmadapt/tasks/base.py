"""What a task is: data → training examples, and model → scored evaluation files.

A task reads its :class:`~mmadapt.config.TaskConfig`, turns its training split into
:class:`~mmadapt.training.data.Example` s, and evaluates a model on its eval split: it writes the
predictions in the official results format under ``<run>/eval/`` and the scores as ``eval/<task>.json``.
Bad eval samples (unreadable images) are recorded in ``eval/<task>_errors.json`` and the run goes on.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmadapt.config import DatasetConfig, ModelConfig, TaskConfig
from mmadapt.errors import ConfigError, DataError
from mmadapt.io.image import load_image
from mmadapt.training.data import Example


@dataclass
class SplitFiles:
    """Where one split's files are, whatever the source format."""

    questions: Path | None
    annotations: Path | None
    image_root: Path | None
    image_template: str | None = None


def resolve_split(ds: DatasetConfig, where: str) -> SplitFiles:
    """Paths of a dataset config; the synthetic sets are written first if missing."""
    if ds.format in ("synthetic_videoqa", "synthetic_audiocaps"):
        from mmadapt.data import synthetic_media_text as smt
        from mmadapt.data.generated import ensure_generated

        if not ds.root or not ds.split or not ds.n_samples:
            raise ConfigError(f"{where}: {ds.format} needs root, split and n_samples")
        video = ds.format == "synthetic_videoqa"
        writer = smt.write_videoqa_dataset if video else smt.write_audiocaps_dataset
        path = ensure_generated(ds.root, ds.split, ds.n_samples, ds.seed, writer)
        template = smt.VIDEO_TEMPLATE if video else smt.AUDIO_TEMPLATE
        return SplitFiles(path if video else None, None if video else path, Path(ds.root), template)
    if ds.format == "synthetic_video_text":
        from mmadapt.data.generated import ensure_generated
        from mmadapt.data.synthetic_video_text import write_video_text_dataset

        if not ds.root or not ds.split or not ds.n_samples:
            raise ConfigError(f"{where}: synthetic_video_text needs root, split and n_samples")
        ensure_generated(ds.root, ds.split, ds.n_samples, ds.seed, write_video_text_dataset)
        return SplitFiles(Path(ds.root) / f"{ds.split}_qa.json", None, Path(ds.root), "{video}")
    if ds.format == "msrvtt_qa":
        if ds.questions is None:
            raise ConfigError(f"{where}.questions: required for format msrvtt_qa (the QA JSON list)")
        return SplitFiles(Path(ds.questions), None, Path(ds.image_root) if ds.image_root else None, ds.image_template)
    if ds.format == "synthetic_scenes":
        from mmadapt.data.synthetic import ensure_scenes_dataset, read_manifest

        if not ds.root or not ds.split or not ds.n_images:
            raise ConfigError(f"{where}: synthetic_scenes needs root, split and n_images")
        paths = ensure_scenes_dataset(ds.root, {ds.split: ds.n_images}, seed=ds.seed)[ds.split]
        entry = read_manifest(ds.root)["splits"][ds.split]
        return SplitFiles(paths["questions"], paths.get("annotations"), paths["images"], entry["image_template"])
    missing = [k for k in ("annotations",) if getattr(ds, k) is None and ds.format != "vqa_v2"]
    if ds.format == "vqa_v2" and ds.questions is None:
        missing.append("questions")
    if missing:
        raise ConfigError(f"{where}.{missing[0]}: required for format {ds.format}")
    return SplitFiles(Path(ds.questions) if ds.questions else None,
                      Path(ds.annotations) if ds.annotations else None,
                      Path(ds.image_root) if ds.image_root else None, ds.image_template)


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def load_batch_images(paths: Sequence[str | Path], loader=load_image) -> tuple[list[int], list[Any], list[tuple[int, str]]]:
    """Read inputs with ``loader`` (images by default; a model's ``vision.load`` for video / audio); returns
    (indices that loaded, the inputs, [(index, error message)] for the others)."""
    ok, images, errors = [], [], []
    for i, path in enumerate(paths):
        try:
            images.append(loader(path))
            ok.append(i)
        except (DataError, OSError) as exc:
            errors.append((i, str(exc)))
    return ok, images, errors


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)
    return path


class Task(abc.ABC):
    name: str

    def __init__(self, key: str, config: TaskConfig, model_config: ModelConfig | None = None):
        self.key = key  # the task's name in the recipe (`tasks.<key>`)
        self.config = config
        self.model_config = model_config  # what some data formats need (e.g. a table's schema, the classes)

    @abc.abstractmethod
    def train_examples(self) -> list[Example]:
        """The training split as examples (empty if the task has no ``train`` dataset)."""

    @abc.abstractmethod
    def evaluate(self, model, out_dir: Path, batch_size: int, max_samples: int | None = None,
                 quiet: bool = False) -> dict:
        """Predict on the eval split, write results + ``<key>.json`` scores in ``out_dir``; return the scores."""

    @abc.abstractmethod
    def baselines(self, out_dir: Path) -> dict[str, float]:
        """Scores of trivial predictors (constant answer / caption) on the eval split, for comparison."""
