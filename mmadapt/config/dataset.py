"""The base of every dataset format's config (``tasks.<key>.train`` / ``eval``)."""

from __future__ import annotations

from dataclasses import dataclass

from mmadapt.errors import ConfigError


@dataclass
class DatasetConfig:
    """Where a split's files are: the base of every dataset format's own config.

    ``format`` picks a registered format (``mmadapt info`` lists them; each is one file under
    :mod:`mmadapt.data.formats` or :mod:`mmadapt.data.synthetic`), whose config dataclass — this class plus
    the format's own keys — then validates the other keys, as ``model.adapter.name`` picks an adapter's
    config. ``limit`` keeps only the first ``limit`` samples (every format has it).
    """

    format: str = "vqa_v2"
    limit: int | None = None  # use only the first `limit` samples

    def validate(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit: expected a positive integer, got {self.limit}")
