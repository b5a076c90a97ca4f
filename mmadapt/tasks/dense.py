"""Dense multi-task prediction (Polyhistor's setting): one image, every dense task's label map.

``tasks.dense`` reads a PASCAL-Context multi-task layout (``format: pascal_context``) or the generated
scenes written in that layout (``format: synthetic_dense``); which label kinds it reads are the model's
``dense.tasks``. Evaluation runs the model once per batch for every task and scores each on its own metric
(:mod:`mmadapt.eval.dense_metric`): segmentation and human parts mIoU, saliency maxF (and mIoU), normals
mean angular error. Labels are compared at the model's input size (nearest-neighbour resized). Scores go
to ``eval/<key>.json`` beside the scores of trivial predictors (majority class, prior saliency, mean
normal); unreadable samples to ``eval/<key>_errors.json``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from mmadapt.config import DatasetConfig
from mmadapt.errors import ConfigError
from mmadapt.registry import register
from mmadapt.tasks.base import Task, batched, write_json

#: The headline metric of each task kind, and whether lower is better.
HEADLINE = {"segmentation": ("mIoU", False), "saliency": ("maxF", False), "normals": ("mean", True)}


@register("tasks", "dense")
class DenseTask(Task):
    name = "dense"

    # ------------------------------------------------------------------------------------------- data
    def _dense_tasks(self) -> list[str]:
        dense = getattr(self.model_config, "dense", None)
        if dense is None:
            raise ConfigError(f"tasks.{self.key}: a dense task needs model.dense.tasks (a dense_multitask model)")
        return list(dense.tasks)

    def _root(self, ds: DatasetConfig, where: str) -> Path:
        if ds.format == "synthetic_dense":
            from mmadapt.data.synthetic_dense import ensure_dense_dataset

            if not ds.root or not ds.split or not ds.n_samples:
                raise ConfigError(f"{where}: synthetic_dense needs root, split and n_samples")
            ensure_dense_dataset(ds.root, ds.split, ds.n_samples, ds.seed)
        elif ds.format != "pascal_context":
            raise ConfigError(f"{where}.format: {ds.format!r} is not a dense format (pascal_context, synthetic_dense)")
        if not ds.root or not ds.split:
            raise ConfigError(f"{where}: {ds.format} needs root and split")
        return Path(ds.root)

    def samples(self, which: str) -> list:
        from mmadapt.data.pascal_context import read_dense_split

        ds = getattr(self.config, which)
        if ds is None:
            return []
        where = f"tasks.{self.key}.{which}"
        samples = read_dense_split(self._root(ds, where), ds.split, self._dense_tasks())
        return samples[: ds.limit] if ds.limit else samples

    def class_names(self, task: str) -> list[str]:
        """Class names of a segmentation label kind, from the training data (else the eval data)."""
        from mmadapt.data.pascal_context import class_names

        ds = self.config.train or self.config.eval
        if ds is None:
            raise ConfigError(f"tasks.{self.key}: no train or eval dataset to read the classes of {task!r} from")
        return class_names(self._root(ds, f"tasks.{self.key}.{'train' if self.config.train else 'eval'}"), task)

    def train_examples(self) -> list:
        from mmadapt.models.dense_multitask import DenseExample

        return [DenseExample(s, self.key) for s in self.samples("train")]

    # ------------------------------------------------------------------------------------- evaluation
    def _meters(self) -> dict:
        from mmadapt.eval.dense_metric import NormalsMeter, SaliencyMeter, SegmentationMeter

        meters = {}
        for name, task in self.model_config.dense.tasks.items():
            if task.kind == "segmentation":
                meters[name] = SegmentationMeter(len(task.classes))
            elif task.kind == "saliency":
                meters[name] = SaliencyMeter()
            else:
                meters[name] = NormalsMeter()
        return meters

    def evaluate(self, model, out_dir: Path, batch_size: int, max_samples: int | None = None,
                 quiet: bool = False) -> dict:
        samples = self.samples("eval")
        samples = samples[:max_samples] if max_samples else samples
        model.eval()
        meters, errors, offset = self._meters(), [], 0
        for chunk in tqdm(list(batched(samples, batch_size)), desc=f"eval {self.key}", disable=quiet):
            _, inputs, errs = model.load_samples(chunk)
            errors.extend({"index": offset + i, "id": chunk[i].id, "error": msg} for i, msg in errs)
            offset += len(chunk)
            if inputs is None:
                continue
            with torch.no_grad():
                preds = model.predict(inputs["pixel_values"])
            for name, meter in meters.items():
                meter.update(preds[name].cpu(), inputs["targets"][name])
        scores = {name: _compute(meter, name) for name, meter in meters.items()}
        scores.update(n_samples=len(samples), n_errors=len(errors), baselines=self.baselines(out_dir))
        out_dir = Path(out_dir)
        if errors:
            write_json(out_dir / f"{self.key}_errors.json", errors)
        write_json(out_dir / f"{self.key}.json", scores)
        return scores

    def baselines(self, out_dir: Path) -> dict:
        """Scores of constant predictors on the eval split: the most frequent class everywhere, the saliency
        prior (fraction of salient pixels) everywhere, the mean normal everywhere — each from the eval
        labels themselves, so an optimistic floor."""
        from mmadapt.data.pascal_context import load_dense_labels

        dense = self.model_config.dense
        size = getattr(dense, "image_size", None)
        samples = self.samples("eval")
        labels = []
        for s in samples:
            try:
                labels.append(load_dense_labels(s, list(dense.tasks), size=(size, size) if size else None))
            except (OSError, ValueError):
                continue
        meters, out = self._meters(), {}
        for name, meter in meters.items():
            kind = dense.tasks[name].kind
            maps = [torch.from_numpy(lab[name]) for lab in labels]
            if kind == "segmentation":
                counts = torch.bincount(torch.cat([m[m != 255].flatten() for m in maps]),
                                        minlength=len(dense.tasks[name].classes))
                const = lambda m: torch.full_like(m, int(counts.argmax()))  # noqa: E731
            elif kind == "saliency":
                valid = torch.cat([m[m != 255].flatten() for m in maps]).float()
                const = lambda m: torch.full(m.shape, valid.mean().item())  # noqa: E731
            else:
                vecs = torch.cat([m.reshape(-1, 3) for m in maps])
                mean = torch.nn.functional.normalize(vecs[vecs.norm(dim=1) > 0.5].mean(0), dim=0)
                const = lambda m: mean.expand(m.shape).clone()  # noqa: E731
            for m in maps:
                meter.update(const(m)[None], m[None])
            metric, _ = HEADLINE[kind]
            out[name] = round(_compute(meter, name).get(metric, float("nan")), 2)
        return out


def _compute(meter, name: str) -> dict:
    """A meter's scores; a task without a single labelled pixel in the split (e.g. no people, so no human
    parts) scores NaN instead of stopping the evaluation of the others."""
    try:
        return meter.compute()
    except RuntimeError as exc:
        return {"error": f"{name}: {exc}"}
