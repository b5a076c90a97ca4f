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

from mmadapt.data.split import LabelSpace, ReadContext
from mmadapt.errors import ConfigError
from mmadapt.registry import register
from mmadapt.tasks.base import EvalRun, Task, predict_all, write_json

#: The headline metric of each task kind, and whether lower is better.
HEADLINE = {"segmentation": ("mIoU", False), "saliency": ("maxF", False), "normals": ("mean", True)}


@register("tasks", "dense")
class DenseTask(Task):
    name = "dense"
    sample_kind = "dense"

    # ------------------------------------------------------------------------------------------- data
    def read_context(self, which: str) -> ReadContext:
        dense = self.model_config.dense if self.model_config is not None else None
        if dense is None:
            raise ConfigError(f"tasks.{self.key}: a dense task needs model.dense.tasks (a dense_multitask model)")
        return ReadContext(self.sample_kind, f"tasks.{self.key}.{which}", dense_tasks=tuple(dense.tasks))

    def samples(self, which: str) -> list:
        return self.split(which).samples if getattr(self.config, which) is not None else []

    def label_space(self) -> LabelSpace:
        space = super().label_space()
        which = "train" if self.config.train is not None else "eval"
        if getattr(self.config, which) is not None:
            space.dense_classes = dict(self.split(which).label_space.dense_classes)
        return space

    def train_examples(self) -> list:
        from mmadapt.models.dense_multitask import DenseExample

        return [DenseExample(s, self.key) for s in self.samples("train")]

    # ------------------------------------------------------------------------------------- evaluation
    @staticmethod
    def _meters(dense) -> dict:
        """One meter per dense task of ``dense`` (the model's :class:`~mmadapt.config.DenseConfig`)."""
        from mmadapt.eval.dense_metric import NormalsMeter, SaliencyMeter, SegmentationMeter

        meters = {}
        for name, task in dense.tasks.items():
            if task.kind == "segmentation":
                meters[name] = SegmentationMeter(len(task.classes))
            elif task.kind == "saliency":
                meters[name] = SaliencyMeter()
            else:
                meters[name] = NormalsMeter()
        return meters

    def evaluate(self, model, out_dir: Path, run: EvalRun = EvalRun()) -> dict:
        samples = run.first(self.samples("eval"))
        model.eval()

        @torch.no_grad()
        def update(inputs, kept: list) -> list:
            """One batch's meters (summed on rank 0 in batch order, so any sharding gives the same totals)."""
            preds = model.predict(inputs["pixel_values"])
            meters = self._meters(model.config.dense)
            for name, meter in meters.items():
                meter.update(preds[name].cpu(), inputs["targets"][name])
            return [meters] + [None] * (len(kept) - 1)

        per_batch, bad = predict_all(f"eval {self.key}", samples, model.load_batch, update, run)
        if not run.shard.main:
            return {}
        meters = self._meters(model.config.dense)
        for batch_meters in per_batch:
            if batch_meters is not None:
                for name, meter in meters.items():
                    meter.merge(batch_meters[name])
        errors = [{"index": i, "id": samples[i].id, "error": msg} for i, msg in bad]
        scores = {name: _compute(meter, name) for name, meter in meters.items()}
        scores.update(n_samples=len(samples), n_errors=len(errors), baselines=self.baselines(out_dir, model.config.dense))
        out_dir = Path(out_dir)
        if errors:
            write_json(out_dir / f"{self.key}_errors.json", errors)
        write_json(out_dir / f"{self.key}.json", scores)
        return scores

    def baselines(self, out_dir: Path, dense=None) -> dict:
        """Scores of constant predictors on the eval split: the most frequent class everywhere, the saliency
        prior (fraction of salient pixels) everywhere, the mean normal everywhere — each from the eval
        labels themselves, so an optimistic floor."""
        from mmadapt.data.formats.pascal_context import load_dense_labels

        dense = dense or self.model_config.dense
        size = dense.image_size
        samples = self.samples("eval")
        labels = []
        for s in samples:
            try:
                labels.append(load_dense_labels(s, list(dense.tasks), size=(size, size) if size else None))
            except (OSError, ValueError):
                continue
        meters, out = self._meters(dense), {}
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
