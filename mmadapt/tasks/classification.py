"""Classification and regression on any modality, for encoder assemblies (:class:`AdaptedEncoder`).

Data (``tasks.<key>.train`` / ``eval``): any format that reads ``(source, label)`` samples — ``manifest``
(JSON lines of files and labels), ``table`` (CSV / Parquet rows, read with the tabular tokenizer's schema),
``sklearn_table``, ``modelnet40``, ``scanobjectnn`` and the ``synthetic_*`` generators (``mmadapt info``
lists them).

Classes are the sorted labels of the training split (or ``model.head.classes``); evaluation maps the
model's outputs through the classes the model was built with. Evaluation writes
``eval/<key>_predictions.jsonl``, ``eval/<key>.json`` (accuracy and mean-class accuracy in percent, per class,
beside the chance and majority-class baselines; regression: MSE, MAE, R² beside the train-mean baseline)
and ``eval/<key>_errors.json`` for samples that could not be read — a bad sample is reported, not fatal.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmadapt.data.examples import LabelledExample
from mmadapt.config import TaskConfig
from mmadapt.data.split import LabelSpace, ReadContext
from mmadapt.errors import ConfigError, DataError
from mmadapt.eval.classification_metric import classification_scores, regression_scores
from mmadapt.registry import register
from mmadapt.tasks.base import EvalRun, Task, predict_all, write_json


@dataclass
class LabelledTaskConfig(TaskConfig):
    """A classification / regression task: which field of a manifest (column of a table) is the label."""

    label_key: str = "label"


@register("tasks", "classification")
class ClassificationTask(Task):
    name = "classification"
    sample_kind = "labelled"
    config_class = LabelledTaskConfig
    regression = False

    # ------------------------------------------------------------------------------------------- data
    def read_context(self, which: str) -> ReadContext:
        ctx = ReadContext(self.sample_kind, f"tasks.{self.key}.{which}", label_key=self.config.label_key)
        tok = self.model_config.tokenizer if self.model_config is not None else None
        if tok is None or tok.name != "tabular":
            return ctx
        from mmadapt.io.table import TableSchema

        schema = TableSchema(numeric=list(tok.numeric), categorical=list(tok.categorical), target=self.config.label_key,
                             categories={c: list(v) for c, v in tok.categories.items()} or None,
                             target_kind="numeric" if self.regression else "categorical")
        return ReadContext(ctx.kind, ctx.where, ctx.label_key, table_schema=schema)

    def records(self, which: str) -> list[tuple[Any, Any]]:
        """``[(source, raw label)]`` of ``which`` (``train`` / ``eval``); sources are paths or loaded rows."""
        return self.split(which).samples

    # ----------------------------------------------------------------------------------------- labels
    def classes(self) -> list[str]:
        """The class names, in index order: ``model.head.classes`` if set, else the training labels sorted."""
        head = self.model_config.head if self.model_config is not None else None
        if head is not None and head.classes:
            return list(head.classes)
        if self.config.train is None:
            raise ConfigError(f"tasks.{self.key}: no train split to read the classes from (set model.head.classes)")
        return list(self.split("train").label_space.classes)

    def label_space(self) -> LabelSpace:
        space = super().label_space()
        space.regression = self.regression
        if not self.regression:
            space.classes = self.classes()
        train = self.split("train") if self.config.train is not None else None
        if train is not None and train.label_space.numeric_mean is not None:
            space.numeric_mean, space.numeric_std = train.label_space.numeric_mean, train.label_space.numeric_std
        return space

    def _encode_label(self, label: Any, classes: dict[str, int], where: str) -> int | float:
        if self.regression:
            try:
                return float(label)
            except (TypeError, ValueError):
                raise DataError(f"{where}: label {label!r} is not a number") from None
        if str(label) not in classes:
            raise DataError(f"{where}: label {label!r} is not one of the classes {sorted(classes)}")
        return classes[str(label)]

    def train_examples(self) -> list[LabelledExample]:
        if self.config.train is None:
            return []
        index = {c: i for i, c in enumerate(self.classes())} if not self.regression else {}
        return [LabelledExample(source, self._encode_label(label, index, f"tasks.{self.key}.train[{i}]"), self.key)
                for i, (source, label) in enumerate(self.records("train"))]

    # ------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def predict(self, model, sources: list[Any], run: EvalRun = EvalRun(quiet=True)):
        """Outputs [n, n_outputs] (NaN rows for samples that could not be read) and [(index, error)] (on rank 0
        of a distributed ``run``; the other ranks get theirs only)."""
        rows, errors = predict_all(f"eval {self.key}", sources, model.load_batch,
                                   lambda inputs, kept: model.predict(**inputs).float().cpu(), run)
        outputs = torch.full((len(sources), model.config.head.n_outputs), float("nan"))
        for i, row in enumerate(rows):
            if row is not None:
                outputs[i] = row
        return outputs, errors

    def evaluate(self, model, out_dir: Path, run: EvalRun = EvalRun()) -> dict:
        rows = run.first(self.records("eval"))
        model.eval()
        outputs, errors = self.predict(model, [s for s, _ in rows], run)
        if not run.shard.main:
            return {}
        bad = {i for i, _ in errors}
        classes = list(model.config.head.classes or self.classes()) if not self.regression else []
        index = {c: i for i, c in enumerate(classes)}
        labels = [self._encode_label(lab, index, f"tasks.{self.key}.eval[{i}]") for i, (_, lab) in enumerate(rows)]
        good = [i for i in range(len(rows)) if i not in bad]
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / f"{self.key}_predictions.jsonl", "w") as f:
            for i in good:
                pred = outputs[i].tolist() if self.regression else classes[int(outputs[i].argmax())]
                f.write(json.dumps({"source": _describe(rows[i][0]), "label": rows[i][1], "prediction": pred}) + "\n")
        if self.regression:
            scores = regression_scores(outputs[good], torch.tensor([labels[i] for i in good]))
        else:
            scores = classification_scores(outputs[good].argmax(dim=1), torch.tensor([labels[i] for i in good]),
                                             classes)
        scores.update(n_samples=len(rows), n_scored=len(good), n_errors=len(errors),
                      baselines=self.baselines(out_dir, n_classes=len(classes)))
        if errors:
            write_json(out_dir / f"{self.key}_errors.json",
                       [{"index": i, "source": _describe(rows[i][0]), "error": msg} for i, msg in errors])
        write_json(out_dir / f"{self.key}.json", scores)
        return scores

    def baselines(self, out_dir: Path, n_classes: int | None = None) -> dict[str, float]:
        """Classification: uniform chance and the majority training class on the eval split (percent).
        Regression: the MSE of always predicting the training mean."""
        train = [lab for _, lab in self.records("train")] if self.config.train is not None else []
        evals = [lab for _, lab in self.records("eval")]
        if self.regression:
            mean = sum(float(x) for x in train) / max(len(train), 1)
            return {"train_mean_mse": round(sum((float(y) - mean) ** 2 for y in evals) / max(len(evals), 1), 6)}
        n_classes = n_classes or len(self.classes())
        majority = Counter(str(x) for x in train).most_common(1)[0][0] if train else None
        hits = sum(str(y) == majority for y in evals)
        return {"chance": round(100.0 / n_classes, 2), "majority_class": round(100.0 * hits / max(len(evals), 1), 2)}


@register("tasks", "regression")
class RegressionTask(ClassificationTask):
    name = "regression"
    regression = True


# ------------------------------------------------------------------------------------------- helpers
def _describe(source: Any) -> str:
    return source if isinstance(source, str) else type(source).__name__
