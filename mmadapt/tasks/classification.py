"""Classification and regression on any modality, for encoder assemblies (:class:`AdaptedEncoder`).

Data (``tasks.<key>.train`` / ``eval``, see :class:`~mmadapt.config.DatasetConfig`):

- ``manifest``: a JSON-lines file, one ``{"path": ..., "<label_key>": ...}`` per sample;
- ``table``: a CSV / Parquet file, one sample per row, read with the tabular tokenizer's schema;
- ``synthetic_<modality>``: the generated set of that modality (written under ``root`` if missing);
  ``synthetic_video_text``: the colour-cycle clips labelled by their cycle (frame order decides the class);
- ``sklearn_table``: a table that ships inside scikit-learn (wine, breast_cancer, iris), stratified split;
- ``modelnet40`` / ``scanobjectnn``: the official ModelNet40 (or 10) folder / a ScanObjectNN ``.h5`` file
  (:mod:`mmadapt.data.point_datasets`).

Classes are the sorted labels of the training split (or ``model.head.classes``). Evaluation writes
``eval/<key>_predictions.jsonl``, ``eval/<key>.json`` (accuracy and mean-class accuracy in percent, per class,
beside the chance and majority-class baselines; regression: MSE, MAE, R² beside the train-mean baseline)
and ``eval/<key>_errors.json`` for samples that could not be read — a bad sample is reported, not fatal.
"""

from __future__ import annotations

import importlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from mmadapt.config import DatasetConfig
from mmadapt.data.point_datasets import (
    MODELNET_NAMES,
    MODELNET_SPLITS,
    modelnet_records,
    scanobjectnn_records,
)
from mmadapt.errors import ConfigError, DataError
from mmadapt.io._files import not_utf8, one_line, resolve_inside
from mmadapt.registry import register
from mmadapt.tasks.base import Task, batched, write_json
from mmadapt.training.data import LabelledExample

#: dataset format → (module, writer) of the generator that writes it
GENERATORS = {
    "synthetic_images": ("mmadapt.data.synthetic_images", "write_image_dataset"),
    "synthetic_video": ("mmadapt.data.synthetic_video", "write_video_dataset"),
    "synthetic_audio": ("mmadapt.data.synthetic_audio", "write_audio_dataset"),
    "synthetic_points": ("mmadapt.data.synthetic_points", "write_point_cloud_dataset"),
    "synthetic_graph": ("mmadapt.data.synthetic_graph", "write_graph_dataset"),
    "synthetic_tabular": ("mmadapt.data.synthetic_tabular", "write_tabular_dataset"),
}
TABLE_FORMATS = ("table", "synthetic_tabular", "sklearn_table")


@register("tasks", "classification")
class ClassificationTask(Task):
    name = "classification"
    regression = False

    # ---------------------------------------------------------------------------------------- records
    def records(self, split: str) -> list[tuple[Any, Any]]:
        """``[(source, raw label)]`` of ``split`` (``train`` / ``eval``); sources are paths or loaded rows."""
        ds = getattr(self.config, split)
        if ds is None:
            raise ConfigError(f"tasks.{self.key}.{split}: no dataset configured")
        where = f"tasks.{self.key}.{split}"
        path = _dataset_file(ds, where)
        if ds.format in TABLE_FORMATS:
            rows = self._table_records(path, where)
        elif ds.format == "modelnet40":
            rows = modelnet_records(path, ds.split, ds.name or "modelnet40")
        elif ds.format == "scanobjectnn":
            rows = scanobjectnn_records(path)
        else:
            rows = _manifest_records(path, Path(ds.root) if ds.format == "manifest" and ds.root else path.parent,
                                     self.config.label_key)
        return rows[: ds.limit] if ds.limit else rows

    def _load_table(self, path: Path, where: str):
        """The table at ``path`` read with the tabular tokenizer's schema (:class:`~mmadapt.io.table.TableData`)."""
        tok = getattr(self.model_config, "tokenizer", None)
        if getattr(tok, "name", None) != "tabular":
            raise ConfigError(f"{where}: a table needs the tabular tokenizer (model.tokenizer.name: tabular)")
        from mmadapt.io.table import TableSchema, load_table

        schema = TableSchema(numeric=list(tok.numeric), categorical=list(tok.categorical), target=self.config.label_key,
                             categories={c: list(v) for c, v in tok.categories.items()} or None,
                             target_kind="numeric" if self.regression else "categorical")
        return load_table(path, schema)

    def _table_records(self, path: Path, where: str) -> list[tuple[Any, Any]]:
        """One record per row: the row's tensors (what the tabular tokenizer collates) and its label."""
        table = self._load_table(path, where)
        if self.regression:
            labels = table.target.tolist()
        else:
            classes = table.schema.classes
            labels = [classes[i] for i in table.target.tolist()]
        return [({"numeric": table.numeric[i], "categorical": table.categorical[i]}, labels[i])
                for i in range(len(labels))]

    def numeric_statistics(self) -> tuple[list[float], list[float]]:
        """Mean and standard deviation of every numeric column over the training table's present values
        (what the tabular tokenizer standardises with; a constant or all-missing column gets std 1)."""
        ds = self.config.train
        if ds is None or ds.format not in TABLE_FORMATS:
            raise ConfigError(f"tasks.{self.key}.train: numeric statistics need a table ({', '.join(TABLE_FORMATS)})")
        from mmadapt.tokenizers.tabular import TabularTokenizerConfig

        where = f"tasks.{self.key}.train"
        fitted = TabularTokenizerConfig.from_table(self._load_table(_dataset_file(ds, where), where))
        return fitted.numeric_mean, fitted.numeric_std

    # ----------------------------------------------------------------------------------------- labels
    def classes(self) -> list[str]:
        """The class names, in index order: ``model.head.classes`` if set, else the training labels sorted."""
        head = getattr(self.model_config, "head", None)
        if head is not None and head.classes:
            return list(head.classes)
        if self.config.train is None:
            raise ConfigError(f"tasks.{self.key}: no train split to read the classes from (set model.head.classes)")
        return sorted({str(label) for _, label in self.records("train")})

    def n_outputs(self) -> int:
        return 1 if self.regression else len(self.classes())

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
    def predict(self, model, sources: list[Any], batch_size: int, quiet: bool = True):
        """Outputs [n, n_outputs] (NaN rows for samples that could not be read) and [(index, error)]."""
        outputs = torch.full((len(sources), model.config.head.n_outputs), float("nan"))
        errors: list[tuple[int, str]] = []
        offset = 0
        for chunk in tqdm(list(batched(sources, batch_size)), desc=f"eval {self.key}", disable=quiet):
            kept, inputs, errs = model.collate(chunk)
            errors.extend((offset + i, msg) for i, msg in errs)
            if inputs is not None:
                outputs[[offset + i for i in kept]] = model.predict(**inputs).float().cpu()
            offset += len(chunk)
        return outputs, errors

    def evaluate(self, model, out_dir: Path, batch_size: int, max_samples: int | None = None,
                 quiet: bool = False) -> dict:
        rows = self.records("eval")[:max_samples] if max_samples else self.records("eval")
        model.eval()
        outputs, errors = self.predict(model, [s for s, _ in rows], batch_size, quiet)
        bad = {i for i, _ in errors}
        classes = self.classes() if not self.regression else []
        index = {c: i for i, c in enumerate(classes)}
        labels = [self._encode_label(lab, index, f"tasks.{self.key}.eval[{i}]") for i, (_, lab) in enumerate(rows)]
        good = [i for i in range(len(rows)) if i not in bad]
        out_dir = Path(out_dir)
        with open(_mkdir(out_dir) / f"{self.key}_predictions.jsonl", "w") as f:
            for i in good:
                pred = outputs[i].tolist() if self.regression else classes[int(outputs[i].argmax())]
                f.write(json.dumps({"source": _describe(rows[i][0]), "label": rows[i][1], "prediction": pred}) + "\n")
        if self.regression:
            scores = _regression_scores(outputs[good], torch.tensor([labels[i] for i in good]))
        else:
            scores = _classification_scores(outputs[good].argmax(dim=1), torch.tensor([labels[i] for i in good]),
                                             classes)
        scores.update(n_samples=len(rows), n_scored=len(good), n_errors=len(errors), baselines=self.baselines(out_dir))
        if errors:
            write_json(out_dir / f"{self.key}_errors.json",
                       [{"index": i, "source": _describe(rows[i][0]), "error": msg} for i, msg in errors])
        write_json(out_dir / f"{self.key}.json", scores)
        return scores

    def baselines(self, out_dir: Path) -> dict[str, float]:
        """Classification: uniform chance and the majority training class on the eval split (percent).
        Regression: the MSE of always predicting the training mean."""
        train = [lab for _, lab in self.records("train")] if self.config.train is not None else []
        evals = [lab for _, lab in self.records("eval")]
        if self.regression:
            mean = sum(float(x) for x in train) / max(len(train), 1)
            return {"train_mean_mse": round(sum((float(y) - mean) ** 2 for y in evals) / max(len(evals), 1), 6)}
        n_classes = len(self.classes())
        majority = Counter(str(x) for x in train).most_common(1)[0][0] if train else None
        hits = sum(str(y) == majority for y in evals)
        return {"chance": round(100.0 / n_classes, 2), "majority_class": round(100.0 * hits / max(len(evals), 1), 2)}


@register("tasks", "regression")
class RegressionTask(ClassificationTask):
    name = "regression"
    regression = True


# ------------------------------------------------------------------------------------------- helpers
def _dataset_file(ds: DatasetConfig, where: str) -> Path:
    """The manifest / table file of a dataset config (generated first for ``synthetic_*``); the dataset
    folder for ``modelnet40``, the ``.h5`` file for ``scanobjectnn``."""
    if ds.format in GENERATORS:
        if not ds.root or not ds.split or not ds.n_samples:
            raise ConfigError(f"{where}: {ds.format} needs root, split and n_samples")
        from mmadapt.data.generated import ensure_generated

        module, fn = GENERATORS[ds.format]
        return ensure_generated(ds.root, ds.split, ds.n_samples, ds.seed, getattr(importlib.import_module(module), fn))
    if ds.format == "synthetic_video_text":  # the clips' manifest, labelled by colour cycle (an order task)
        if not ds.root or not ds.split or not ds.n_samples:
            raise ConfigError(f"{where}: {ds.format} needs root, split and n_samples")
        from mmadapt.data.generated import ensure_generated
        from mmadapt.data.synthetic_video_text import write_video_text_dataset

        captions = ensure_generated(ds.root, ds.split, ds.n_samples, ds.seed, write_video_text_dataset)
        return captions.with_name(f"{ds.split}.jsonl")
    if ds.format == "sklearn_table":
        if not ds.root or not ds.name or ds.split not in ("train", "val"):
            raise ConfigError(f"{where}: sklearn_table needs root, name (wine, breast_cancer, iris) and split "
                              f"(train or val); got root={ds.root!r}, name={ds.name!r}, split={ds.split!r}")
        from mmadapt.data.synthetic_tabular import write_sklearn_table

        return write_sklearn_table(ds.root, ds.name, ds.split, ds.seed)
    if ds.format in ("manifest", "table"):
        if not ds.annotations:
            raise ConfigError(f"{where}.annotations: required for format {ds.format} (the manifest / table file)")
        path = Path(ds.annotations)
        if not path.is_file():
            raise DataError(f"{path}: file not found ({where}.annotations)")
        return path
    if ds.format == "modelnet40":
        if not ds.root or ds.split not in MODELNET_SPLITS or (ds.name or "modelnet40") not in MODELNET_NAMES:
            raise ConfigError(f"{where}: modelnet40 needs root (the dataset folder), split (train or test) and "
                              f"optionally name (modelnet40 or modelnet10); got root={ds.root!r}, "
                              f"split={ds.split!r}, name={ds.name!r}")
        return Path(ds.root)
    if ds.format == "scanobjectnn":
        if not ds.annotations:
            raise ConfigError(f"{where}.annotations: required for format scanobjectnn (the .h5 file)")
        return Path(ds.annotations)
    raise ConfigError(f"{where}.format: {ds.format!r} is not a classification format "
                      f"(manifest, table, sklearn_table, modelnet40, scanobjectnn, {', '.join(GENERATORS)})")


def _manifest_records(path: Path, root: Path, label_key: str) -> list[tuple[str, Any]]:
    """``[(absolute path, label)]`` from a JSON-lines manifest; malformed lines name file and line, and a path
    that leads outside ``root`` is refused."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: {not_utf8(path)}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read manifest ({one_line(exc)})") from None
    rows = []
    for lineno, line in enumerate(text.split("\n"), start=1):  # not splitlines(): JSON strings may hold U+2028
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(item, dict) or "path" not in item or label_key not in item:
            raise DataError(f"{path}:{lineno}: expected an object with 'path' and {label_key!r}")
        rows.append((str(resolve_inside(root, item["path"], f"{path}:{lineno}: path")), item[label_key]))
    if not rows:
        raise DataError(f"{path}: no samples")
    return rows


def _classification_scores(pred: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    per_class = {}
    for k, name in enumerate(classes):
        sel = labels == k
        if sel.any():
            per_class[name] = round(100.0 * (pred[sel] == k).float().mean().item(), 2)
    acc = 100.0 * (pred == labels).float().mean().item() if len(labels) else float("nan")
    mean_class = sum(per_class.values()) / len(per_class) if per_class else float("nan")
    return {"accuracy": round(acc, 2), "mean_class_accuracy": round(mean_class, 2), "per_class": per_class}


def _regression_scores(pred: torch.Tensor, target: torch.Tensor) -> dict:
    pred = pred.view(len(target), -1)[:, 0]
    err = pred - target
    var = (target - target.mean()).square().mean().item() if len(target) else float("nan")
    mse = err.square().mean().item()
    return {"mse": round(mse, 6), "mae": round(err.abs().mean().item(), 6),
            "r2": round(1 - mse / var, 4) if var and not math.isnan(var) else float("nan")}


def _describe(source: Any) -> str:
    return source if isinstance(source, str) else type(source).__name__


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
