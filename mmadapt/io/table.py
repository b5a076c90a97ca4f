"""Load a table (CSV or Parquet) into tensors for the tabular tokenizer, under a :class:`TableSchema`.

What :func:`load_table` guarantees, for a table of ``R`` rows:

* ``numeric`` float32 ``[R, n_num]`` in the schema's column order, ``NaN`` where a value is missing;
* ``categorical`` long ``[R, n_cat]``: ``k`` (1-based) for the ``k``-th known category of that column,
  ``0`` for a missing *or unseen* value, so a test table with a new category still loads;
* ``target``: long ``[R]`` class indices (0-based into the known classes) for a categorical target, float32
  ``[R]`` for a numeric one, ``None`` when the schema has no target; a missing or unknown target is an error;
* ``columns``: the feature names in token order (numeric, then categorical), and ``schema``: the schema with
  every list of known categories filled in. Categories not given are learned from the table being loaded, so
  load the training table first and pass its ``data.schema`` to the validation / test tables: then the same
  value gets the same index everywhere;
* every failure is a :class:`~mmadapt.errors.DataError` with a one-line message naming the file: missing /
  empty / unreadable file, unsupported extension, no data rows, missing schema columns (all of them named),
  a non-numeric or infinite value in a numeric column (column and first bad row named).

Categorical values are compared as text with surrounding spaces removed (``" red"`` is ``"red"``; an integer
column gives ``"3"``), so a CSV and a Parquet file of the same table give identical tensors. Missing values
are pandas' defaults (empty field, ``NA``, ``NaN``, ``null``, ...). pandas is imported on first use (the
``tabular`` extra), so importing this module needs only torch.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from mmadapt.errors import ConfigError, DataError
from mmadapt.io._files import check_file, not_utf8, one_line

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TableData", "TableSchema", "load_table"]

PathLike = str | os.PathLike[str]
TargetKind = Literal["auto", "categorical", "numeric"]
RowLabel = Callable[[int], str]  # 0-based data row → how messages name it
_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass
class TableSchema:
    """Which columns of a table are numeric features, categorical features and the target.

    - ``categories``: the known values of each categorical column (and of a categorical target), in index
      order; columns left out are learned by :meth:`fit` (sorted distinct values);
    - ``target_kind``: ``"categorical"`` (class indices), ``"numeric"`` (regression) or ``"auto"``, which
      :meth:`fit` resolves: categorical when ``categories`` lists the target's classes; otherwise numeric
      when every target value is a number and not all are integers, categorical (class names, or integer
      class ids such as 0 / 1) when not.
    """

    numeric: list[str]
    categorical: list[str]
    target: str | None = None
    categories: dict[str, list[str]] | None = None
    target_kind: TargetKind = "auto"

    def __post_init__(self) -> None:
        names = [*self.numeric, *self.categorical, *([self.target] if self.target is not None else [])]
        if not all(isinstance(name, str) for name in names):
            raise ConfigError(f"TableSchema: column names must be strings, got {names!r}")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ConfigError(f"TableSchema: column(s) {_quoted(repeated)} listed more than once")
        if not self.numeric and not self.categorical:
            raise ConfigError("TableSchema: needs at least one numeric or categorical column")
        if self.target_kind not in ("auto", "categorical", "numeric"):
            raise ConfigError(f"TableSchema.target_kind: expected auto|categorical|numeric, got {self.target_kind!r}")
        for name, values in (self.categories or {}).items():
            if name not in self.categorical and name != self.target:
                raise ConfigError(f"TableSchema.categories[{name!r}]: not a categorical column or the target")
            if len(set(values)) != len(values) or not all(isinstance(value, str) for value in values):
                raise ConfigError(f"TableSchema.categories[{name!r}]: expected distinct strings, got {values!r}")

    @property
    def columns(self) -> list[str]:
        """Feature columns in token order: numeric, then categorical."""
        return [*self.numeric, *self.categorical]

    @property
    def cardinalities(self) -> list[int]:
        """Embedding-table size per categorical column: known categories + 1 (index 0 = missing / unseen)."""
        known = self.categories or {}
        unfitted = [name for name in self.categorical if name not in known]
        if unfitted:
            raise ConfigError(f"TableSchema: categories of {_quoted(unfitted)} unknown; call fit() or load a table")
        return [len(known[name]) + 1 for name in self.categorical]

    @property
    def classes(self) -> list[str] | None:
        """The target's class names (index order) for a fitted categorical target, else ``None``."""
        if self.target is None or self.target_kind != "categorical":
            return None
        return (self.categories or {}).get(self.target)

    def fit(self, frame: pd.DataFrame) -> TableSchema:
        """A copy with ``target_kind`` resolved and categories learned from ``frame`` where not already known.

        Raises:
            DataError: a column the schema needs is not in ``frame``.
        """
        _require_columns(frame, self, "frame")
        categories = dict(self.categories or {})
        kind = self.target_kind
        if self.target is not None and kind == "auto":
            regression = self.target not in categories and _looks_like_regression(frame[self.target])
            kind = "numeric" if regression else "categorical"
        learn = [*self.categorical, *([self.target] if self.target is not None and kind == "categorical" else [])]
        for name in learn:
            if name not in categories:
                categories[name] = sorted(_as_text(frame[name]).dropna().unique().tolist())
        return replace(self, categories=categories, target_kind=kind)


@dataclass(eq=False)
class TableData:
    """A table as tensors; see the module docstring for what each field holds.

    - ``numeric`` float32 ``[R, n_num]`` (NaN = missing); ``categorical`` long ``[R, n_cat]`` (0 = missing /
      unseen); ``target`` long ``[R]`` (classes) or float32 ``[R]`` (regression) or ``None``;
    - ``columns``: feature names in token order; ``schema``: the fitted schema used to encode the table.
    """

    numeric: torch.Tensor
    categorical: torch.Tensor
    target: torch.Tensor | None
    columns: list[str]
    schema: TableSchema = field(repr=False)

    def __len__(self) -> int:
        return self.numeric.shape[0]

    def numeric_statistics(self) -> tuple[list[float], list[float]]:
        """Mean and standard deviation of each numeric column over the values present (an all-missing column
        gets mean 0; a constant or all-missing one std 1): what the tabular tokenizer standardises with."""
        x = self.numeric.double()
        present = ~x.isnan()
        count = present.sum(dim=0).clamp(min=1)
        mean = torch.where(present, x, 0.0).sum(dim=0) / count
        std = (torch.where(present, x - mean, 0.0).square().sum(dim=0) / count).sqrt()
        return mean.tolist(), torch.where(std > 0, std, 1.0).tolist()


def load_table(path: PathLike, schema: TableSchema) -> TableData:
    """Read a ``.csv`` or ``.parquet`` table and encode it under ``schema`` (fitted on this table where needed).

    Raises:
        DataError: see the module docstring; the message is one line, ``"{path}: {what is wrong}"``.
    """
    where = os.fspath(path)
    frame, is_csv = _read_frame(where)
    if len(frame) == 0:
        raise DataError(f"{where}: table has no data rows")
    _require_columns(frame, schema, where)
    fitted = schema.fit(frame)
    categories = fitted.categories or {}

    def row_label(row: int) -> str:
        return f"row {row} (CSV line {row + 2})" if is_csv else f"row {row}"

    numeric = np.zeros((len(frame), len(fitted.numeric)), dtype=np.float32)
    for j, name in enumerate(fitted.numeric):
        numeric[:, j] = _as_numbers(frame[name], name, where, row_label)
    categorical = np.zeros((len(frame), len(fitted.categorical)), dtype=np.int64)
    for j, name in enumerate(fitted.categorical):
        index = {value: k for k, value in enumerate(categories[name], start=1)}
        categorical[:, j] = _as_text(frame[name]).map(index).fillna(0).to_numpy(dtype=np.int64)
    return TableData(
        numeric=torch.from_numpy(numeric),
        categorical=torch.from_numpy(categorical),
        target=_encode_target(frame, fitted, where, row_label),
        columns=fitted.columns,
        schema=fitted,
    )


def _read_frame(where: str) -> tuple[pd.DataFrame, bool]:
    """The file as a DataFrame (CSV: every cell as text) and whether it is a CSV."""
    import pandas as pd

    suffix = Path(where).suffix.lower()
    if suffix not in _SUFFIXES:
        raise DataError(f"{where}: unsupported table extension {suffix!r} (expected one of {', '.join(_SUFFIXES)})")
    check_file(where, "table")
    try:
        if suffix == ".csv":
            return pd.read_csv(where, dtype=str), True
        return pd.read_parquet(where, dtype_backend="numpy_nullable"), False
    except pd.errors.EmptyDataError:
        raise DataError(f"{where}: no header line (the file holds only blank space)") from None
    except UnicodeDecodeError:
        raise DataError(f"{where}: {not_utf8(where)}") from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - pandas / pyarrow raise ParserError, ArrowInvalid, OSError, ...
        kind = "CSV" if suffix == ".csv" else "Parquet"
        raise DataError(f"{where}: cannot parse {kind} ({one_line(exc)})") from None


def _require_columns(frame: pd.DataFrame, schema: TableSchema, where: str) -> None:
    wanted = [*schema.columns, *([schema.target] if schema.target is not None else [])]
    present = set(frame.columns)
    missing = [name for name in wanted if name not in present]
    if missing:
        have = [str(name) for name in frame.columns]
        shown = ", ".join(have[:20]) + (f", ... ({len(have)} in all)" if len(have) > 20 else "")
        raise DataError(f"{where}: missing column(s) {_quoted(missing)} (the table has: {shown or 'no columns'})")


def _as_text(series: pd.Series) -> pd.Series:
    """Values as stripped strings, ``NA`` for missing (and for blank strings); integral floats print as ints."""
    import pandas as pd

    if pd.api.types.is_float_dtype(series):
        values = series.dropna()
        if bool((values == values.round()).all()):
            series = series.astype("Int64")
    text = series.astype("string").str.strip()
    return text.mask(text == "")


def _as_numbers(series: pd.Series, name: str, where: str, row_label: RowLabel) -> np.ndarray:
    """A numeric column as float64 ``[R]`` (NaN = missing); text that is not a finite number is an error."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        text = series.astype("string")
    else:
        text = _as_text(series)
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(~np.isfinite(values) & text.notna().to_numpy())
    if len(bad):
        row = int(bad[0])
        raise DataError(f"{where}: column {name!r} {row_label(row)}: not a finite number: {str(text.iloc[row])[:40]!r}")
    return values


def _encode_target(frame: pd.DataFrame, schema: TableSchema, where: str, row_label: RowLabel) -> torch.Tensor | None:
    if schema.target is None:
        return None
    name = schema.target
    if schema.target_kind == "numeric":
        values = _as_numbers(frame[name], name, where, row_label)
        missing = np.flatnonzero(np.isnan(values))
        if len(missing):
            raise DataError(f"{where}: column {name!r} {row_label(int(missing[0]))}: missing target value")
        return torch.from_numpy(values.astype(np.float32))
    classes = (schema.categories or {})[name]
    text = _as_text(frame[name])
    index = text.map({value: k for k, value in enumerate(classes)})
    unknown = np.flatnonzero(index.isna().to_numpy())
    if len(unknown):
        row = int(unknown[0])
        present = bool(text.notna().iloc[row])
        what = f"unknown class {text.iloc[row]!r} (known: {_quoted(classes)})" if present else "missing target value"
        raise DataError(f"{where}: column {name!r} {row_label(row)}: {what}")
    return torch.tensor(index.to_numpy(dtype=np.int64))


def _looks_like_regression(series: pd.Series) -> bool:
    """True when every present value is a number and not all of them are integers."""
    import pandas as pd

    numbers = pd.to_numeric(_as_text(series), errors="coerce")
    present = _as_text(series).notna()
    if bool((numbers.isna() & present).any()):
        return False
    values = numbers[present].to_numpy(dtype=np.float64)
    return bool(len(values)) and not bool((values == np.round(values)).all())


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(name) for name in names)


def write_csv(path: PathLike, header: list[str], rows: list[list[str]]) -> Path:
    """Write a CSV table via a temporary file and a rename, so a killed writer never leaves half a table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(temporary, path)
    return path
