"""A CSV / Parquet table, one sample per row (format ``table``), for classification / regression.

The columns are read with the tabular tokenizer's schema (``ctx.table_schema``: numeric and categorical
feature columns, the target column = the task's ``label_key``); each sample is the row's tensors (what the
tabular tokenizer collates) with its label. The split's label space carries each numeric column's mean and
standard deviation (what the tokenizer standardises with, from the training table).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmadapt.config import DatasetConfig
from mmadapt.data.split import LabelSpace, ReadContext, Split, register_format
from mmadapt.errors import ConfigError, DataError


@dataclass
class TableConfig(DatasetConfig):
    """A CSV or Parquet table: ``annotations`` = the file; the label is the task's ``label_key`` column, the
    feature columns come from the tabular tokenizer's schema."""

    annotations: str | None = None


@register_format("table", TableConfig, serves=("labelled",))
def read_table(cfg: TableConfig, ctx: ReadContext) -> Split:
    if not cfg.annotations:
        raise ConfigError(f"{ctx.where}.annotations: required for format table (the table file)")
    path = Path(cfg.annotations)
    if not path.is_file():
        raise DataError(f"{path}: file not found ({ctx.where}.annotations)")
    return read_table_split(path, ctx)


def read_table_split(path: Path, ctx: ReadContext) -> Split:
    """The rows of the table at ``path`` as ``(row tensors, label)`` samples, and its numeric statistics."""
    if ctx.table_schema is None:
        raise ConfigError(f"{ctx.where}: a table needs the tabular tokenizer (model.tokenizer.name: tabular)")
    from mmadapt.io.table import load_table

    table = load_table(path, ctx.table_schema)
    if table.schema.target_kind == "numeric":
        labels = table.target.tolist()
    else:
        classes = table.schema.classes
        labels = [classes[i] for i in table.target.tolist()]
    mean, std = table.numeric_statistics()
    rows = [({"numeric": table.numeric[i], "categorical": table.categorical[i]}, labels[i])
            for i in range(len(labels))]
    return Split("labelled", rows, LabelSpace(numeric_mean=mean, numeric_std=std))
