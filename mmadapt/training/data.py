"""The deterministic global-batch order and the mixing of tasks' training examples
(:mod:`mmadapt.data.examples`).

The order of examples is a function of (seed, step) only, so a resumed run sees exactly the batches an
uninterrupted one would, and N ranks together see exactly the global batch one rank would.
"""

from __future__ import annotations

import math
from typing import Any

import torch


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
