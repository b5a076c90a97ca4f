"""Table rows → one token per column (FT-Transformer's feature tokenizer, Gorishniy et al., 2021).

- numeric column c: ``x̂ · w_c + b_c`` with ``x̂ = (x - numeric_mean[c]) / numeric_std[c]``; a missing value
  (NaN) takes the column's learned "missing" token instead;
- categorical column c: a row of the column's own embedding table, indexed by the loader's code
  (0 = missing or unseen value, k = the k-th known category);
- every token then gets its column's learned column embedding (the position information).

Columns are ordered numeric first, then categorical, as in the config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from mmadapt.errors import ConfigError
from mmadapt.registry import register
from mmadapt.tokenizers.base import TokenBatch, Tokenizer

__all__ = ["TabularTokenizer", "TabularTokenizerConfig"]


@dataclass
class TabularTokenizerConfig:
    """The table's schema (as :class:`mmadapt.io.table.TableSchema`) plus numeric standardisation.

    - ``numeric`` / ``categorical``: column names, in token order;
    - ``categories``: the known values of every categorical column (its embedding table has one more row,
      index 0, for missing / unseen values), and optionally the target's classes;
    - ``target``, ``target_kind``: the label column (read by the loader, never tokenised) and its kind;
    - ``numeric_mean`` / ``numeric_std``: per numeric column, from the training table (:func:`mmadapt.build_model`
      takes them from the training split's label space when both are None, into the model's own config; a
      tokenizer built alone then uses 0 and 1).

    :meth:`from_table` fills all of it from a loaded training table.
    """

    name: str = "tabular"
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    categories: dict[str, list[str]] = field(default_factory=dict)
    target: str | None = None
    target_kind: Literal["auto", "categorical", "numeric"] = "auto"
    numeric_mean: list[float] | None = None
    numeric_std: list[float] | None = None

    def validate(self) -> None:
        columns = self.numeric + self.categorical
        if not columns:
            raise ConfigError("numeric/categorical: no columns to tokenise (name at least one)")
        seen: set[str] = set()
        for column in columns:
            if column in seen:
                raise ConfigError(f"numeric/categorical: column {column!r} is listed twice")
            seen.add(column)
        if self.target is not None and self.target in seen:
            raise ConfigError(f"target: {self.target!r} is also an input column")
        for column in self.categorical:
            if not self.categories.get(column):
                raise ConfigError(f"categories.{column}: missing or empty (list the known values of every "
                                  "categorical column)")
        extra = sorted(set(self.categories) - {*self.categorical, self.target})
        if extra:
            raise ConfigError(f"categories: {extra} are neither categorical columns {self.categorical} nor the "
                              f"target {self.target!r}")
        for key in ("numeric_mean", "numeric_std"):
            values = getattr(self, key)
            if values is not None and len(values) != len(self.numeric):
                raise ConfigError(f"{key}: expected {len(self.numeric)} values (one per numeric column), got "
                                  f"{len(values)}")
        if self.numeric_std is not None and any(s <= 0 for s in self.numeric_std):
            raise ConfigError(f"numeric_std: expected values > 0, got {self.numeric_std}")

    @classmethod
    def from_table(cls, data: Any) -> TabularTokenizerConfig:
        """The config of a loaded training table (:class:`mmadapt.io.table.TableData`): its fitted schema
        (columns, known categories, target) and each numeric column's mean / std over the values present (an
        all-missing column gets mean 0; a constant or all-missing one std 1)."""
        schema = data.schema
        mean, std = data.numeric_statistics()
        return cls(numeric=list(schema.numeric), categorical=list(schema.categorical),
                   categories={k: list(v) for k, v in (schema.categories or {}).items()}, target=schema.target,
                   target_kind=schema.target_kind, numeric_mean=mean, numeric_std=std)

    def cardinalities(self) -> list[int]:
        """Embedding rows per categorical column: its known values + 1 (index 0: missing / unseen)."""
        return [len(self.categories[c]) + 1 for c in self.categorical]


@register("tokenizers", "tabular")
class TabularTokenizer(Tokenizer):
    """``numeric`` [B, n_num] (NaN = missing) + ``categorical`` [B, n_cat] long → ``tokens``
    [B, n_num + n_cat, D]; ``coords`` = column index [B, n_cols, 1]; mask all True."""

    config_class = TabularTokenizerConfig

    def __init__(self, dim: int, config: TabularTokenizerConfig | None = None):
        super().__init__()
        cfg = self._set_config(dim, config)
        n_num, cards = len(cfg.numeric), cfg.cardinalities()
        # FT-Transformer's initialisation: uniform(±1/√D) for the numeric weights, biases and tables.
        bound = dim ** -0.5
        self.numeric_weight = nn.Parameter(torch.empty(n_num, dim).uniform_(-bound, bound))
        self.numeric_bias = nn.Parameter(torch.empty(n_num, dim).uniform_(-bound, bound))
        self.missing_token = nn.Parameter(torch.empty(n_num, dim).uniform_(-bound, bound))
        self.category_embed = nn.Embedding(sum(cards), dim)
        nn.init.uniform_(self.category_embed.weight, -bound, bound)
        self.column_embed = nn.Parameter(torch.empty(n_num + len(cards), dim).uniform_(-bound, bound))
        offsets = torch.tensor([0, *cards], dtype=torch.long).cumsum(0)[:-1]  # first row of each column's table
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("cardinality", torch.tensor(cards, dtype=torch.long), persistent=False)
        mean = torch.tensor(cfg.numeric_mean if cfg.numeric_mean is not None else [0.0] * n_num)
        std = torch.tensor(cfg.numeric_std if cfg.numeric_std is not None else [1.0] * n_num)
        self.register_buffer("mean", mean.float(), persistent=False)
        self.register_buffer("std", std.float(), persistent=False)

    # ------------------------------------------------------------------------------------------ data side
    def load(self, source: str | os.PathLike[str] | Any) -> Any:
        """A CSV / Parquet file → its :class:`mmadapt.io.table.TableData` under the config's schema (every row
        is a sample); anything else (a ``TableData``, a row ``{"numeric": [n_num], "categorical": [n_cat]}``)
        passes through."""
        if not isinstance(source, (str, os.PathLike)):
            return source
        from mmadapt.io.table import TableSchema, load_table

        cfg = self.config
        schema = TableSchema(numeric=list(cfg.numeric), categorical=list(cfg.categorical), target=cfg.target,
                             categories={c: list(v) for c, v in cfg.categories.items()},
                             target_kind=cfg.target_kind)
        return load_table(source, schema)

    def collate(self, samples: list[Any]) -> dict[str, torch.Tensor]:
        """Rows (``{"numeric": [n_num], "categorical": [n_cat]}``) or tables (``TableData``, or the same
        mapping with [R, ·] tensors) → ``{"numeric": [B, n_num], "categorical": [B, n_cat]}``, rows in order."""
        if not samples:
            raise ValueError("tabular tokenizer: collate got no samples")
        numeric, categorical = [], []
        for i, sample in enumerate(samples):
            if isinstance(sample, Mapping):
                num, cat = sample["numeric"], sample["categorical"]
            else:
                num, cat = sample.numeric, sample.categorical
            numeric.append(_rows(num, torch.float32, f"sample {i} numeric"))
            categorical.append(_rows(cat, torch.long, f"sample {i} categorical"))
        return {"numeric": torch.cat(numeric), "categorical": torch.cat(categorical)}

    # ------------------------------------------------------------------------------------------ model side
    def forward(self, numeric: torch.Tensor | None = None, categorical: torch.Tensor | None = None) -> TokenBatch:
        """``numeric`` [B, n_num] float (NaN = missing), ``categorical`` [B, n_cat] long (0 = missing) →
        TokenBatch(tokens [B, n_num + n_cat, D], mask [B, n_cols], coords [B, n_cols, 1] long)."""
        cfg = self.config
        B = self._check(numeric, categorical)
        device = self.column_embed.device
        parts = []
        if cfg.numeric:
            x = numeric.to(device=device, dtype=torch.float32)
            missing = x.isnan()[..., None]  # [B, n_num, 1]
            scaled = (torch.nan_to_num(x, nan=0.0) - self.mean) / self.std
            value = scaled[..., None] * self.numeric_weight + self.numeric_bias  # [B, n_num, D]
            parts.append(torch.where(missing, self.missing_token.expand_as(value), value))
        if cfg.categorical:
            parts.append(self.category_embed(categorical.to(device) + self.offsets))  # [B, n_cat, D]
        tokens = torch.cat(parts, dim=1) + self.column_embed
        n_cols = tokens.shape[1]
        coords = torch.arange(n_cols, device=device).view(1, n_cols, 1).expand(B, -1, -1)
        return TokenBatch(tokens, torch.ones(B, n_cols, dtype=torch.bool, device=device), coords)

    def _check(self, numeric: torch.Tensor | None, categorical: torch.Tensor | None) -> int:
        """Shapes and category codes; returns B."""
        cfg = self.config
        batch = set()
        for key, given, columns in (("numeric", numeric, cfg.numeric), ("categorical", categorical, cfg.categorical)):
            if not columns:
                continue
            if given is None or given.ndim != 2 or given.shape[1] != len(columns):
                got = "nothing" if given is None else list(given.shape)
                raise ValueError(f"tabular tokenizer: {key} must be [B, {len(columns)}] (columns {columns}), "
                                 f"got {got}")
            batch.add(given.shape[0])
        if len(batch) > 1:
            raise ValueError(f"tabular tokenizer: numeric {list(numeric.shape)} and categorical "
                             f"{list(categorical.shape)} disagree on B")
        if cfg.categorical:
            if categorical.dtype.is_floating_point:
                raise ValueError(f"tabular tokenizer: categorical must hold integer codes, got {categorical.dtype}")
            bad = (categorical < 0) | (categorical >= self.cardinality.to(categorical.device))
            if bad.any():
                row, col = (int(i) for i in bad.nonzero()[0])
                raise ValueError(f"tabular tokenizer: categorical column {cfg.categorical[col]!r} has code "
                                 f"{int(categorical[row, col])} in row {row}, expected 0..{int(self.cardinality[col]) - 1} "
                                 "(0 = missing)")
        return batch.pop()


def _rows(values: Any, dtype: torch.dtype, what: str) -> torch.Tensor:
    """One row [n] or a table [R, n] → [R, n] of ``dtype``."""
    x = torch.as_tensor(values, dtype=dtype)
    if x.ndim == 1:
        return x.unsqueeze(0)
    if x.ndim != 2:
        raise ValueError(f"tabular tokenizer: {what} must be [n] or [R, n], got {list(x.shape)}")
    return x
