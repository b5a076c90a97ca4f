"""Training examples, the deterministic global-batch order, and collation.

Every task turns its data into examples: :class:`Example` s for text tasks (an image, a text prefix, a
target, a prefix loss weight; optionally targets to draw from at every read, :func:`draw_target`),
:class:`LabelledExample` s for classification / regression (a source — a file path or an already-loaded
sample — and a label). The assembly collates them (``collate_train``, through its tolerant ``load_batch``).
The order of examples is a function of (seed, step) only, so a resumed run sees exactly the batches an
uninterrupted one would, and N ranks together see exactly the global batch one rank would.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Example:
    """One training example: ``image_path`` is read when the batch is built."""

    image_path: str
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

    image_path: str
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


class GlobalBatchOrder:
    """Which examples each rank uses at each optimisation step.

    Epoch ``e`` is a permutation drawn from ``seed + e``; step ``s`` takes the next ``global_batch``
    examples of the (concatenated) epochs; rank ``r`` takes its contiguous ``global_batch / world``
    slice, cut into ``grad_accum`` micro-batches.
    """

    def __init__(self, n_examples: int, global_batch: int, world_size: int, rank: int, grad_accum: int, seed: int):
        if global_batch % (world_size * grad_accum):
            raise ValueError(
                f"train.batch_size={global_batch} is not divisible by world size {world_size} × "
                f"train.grad_accum {grad_accum}"
            )
        self.n, self.global_batch, self.world, self.rank = n_examples, global_batch, world_size, rank
        self.grad_accum, self.seed = grad_accum, seed
        self.micro = global_batch // (world_size * grad_accum)
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g).tolist()}
        return self._perms[epoch]

    def micro_batches(self, step: int) -> list[list[int]]:
        """The ``grad_accum`` micro-batches (example indices) of this rank at ``step``."""
        start = step * self.global_batch
        idx = []
        for pos in range(start, start + self.global_batch):
            epoch, offset = divmod(pos, self.n)
            idx.append(self._perm(epoch)[offset])
        mine = idx[self.rank * self.micro * self.grad_accum : (self.rank + 1) * self.micro * self.grad_accum]
        return [mine[i * self.micro : (i + 1) * self.micro] for i in range(self.grad_accum)]

    def epochs(self, steps: int) -> float:
        return steps * self.global_batch / self.n


def mixture(task_examples: dict[str, list[Any]], weights: dict[str, float], seed: int) -> list[Any]:
    """Mix tasks: each task's examples are repeated / subsampled so tasks appear in ratio ``weights``
    (relative to the largest task's size)."""
    if len(task_examples) == 1:
        return next(iter(task_examples.values()))
    size = max(len(v) for v in task_examples.values())
    total_w = sum(weights.values())
    g = torch.Generator().manual_seed(seed)
    out: list[Any] = []
    for name, exs in task_examples.items():
        want = math.ceil(size * len(task_examples) * weights[name] / total_w)
        perm = torch.randperm(len(exs), generator=g).tolist()
        out.extend(exs[perm[i % len(exs)]] for i in range(want))
    return out
