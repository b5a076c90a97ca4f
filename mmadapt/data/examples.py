"""Training examples: one sample the way a model trains on it, what tasks produce and assemblies collate.

:class:`Example` s for text tasks (an input file, a text prefix, a target, a prefix loss weight; optionally
targets to draw from at every read, :func:`draw_target`), :class:`MatchExample` s for retrieval (a clip and
the text that describes it), :class:`LabelledExample` s for classification / regression (a source — a file
path or an already-loaded sample — and a label). An assembly's ``collate_train`` reads them through its
tolerant ``load_batch``.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Any

import torch

from mmadapt.io.shard_member import MediaBlob


@dataclass(frozen=True)
class Example:
    """One training example: ``image_path`` (a file, or a member of a WebDataset shard) is read when the
    batch is built."""

    image_path: str | MediaBlob
    prefix: str
    target: str
    prefix_weight: float | None  # None: the model's default
    task: str
    target_separator: str = " "  # text between ``prefix`` and ``target``
    # (answer, weight) pairs: when given, :func:`draw_target` draws ``target`` among them at every read
    target_choices: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class MatchExample:
    """One video–text (or image–text) retrieval pair: ``text`` describes the clip at ``image_path``."""

    image_path: str | MediaBlob
    text: str
    task: str


@dataclass(frozen=True)
class LabelledExample:
    """One classification / regression example: ``source`` is read by the tokenizer when the batch is built
    (a file path, or an in-memory raw sample such as a table row); ``label`` is a class index or a value."""

    source: Any
    label: int | float
    task: str


def draw_target(example: Any, seed: int, step: int, index: int) -> Any:
    """``example`` with its ``target`` drawn from its ``target_choices`` (probability ∝ weight), or unchanged
    without choices. The draw depends only on ``(seed, step, index)``: the same on every rank and after a
    resume, and new each time the example is read again (as the authors' dataset draws in ``__getitem__``)."""
    choices = example.target_choices if isinstance(example, Example) else ()
    if not choices:
        return example
    g = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{step}:{index}".encode()))
    weights = torch.tensor([w for _, w in choices], dtype=torch.float64)
    pick = int(torch.multinomial(weights, 1, generator=g))
    return dataclasses.replace(example, target=choices[pick][0])
