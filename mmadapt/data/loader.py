"""Background data loading: the reading, decoding and preprocessing of batches in ``torch.utils.data.DataLoader``
workers, in a fixed order, with the same result whatever the number of workers.

::

    for result in in_background(jobs, work, Background(num_workers=2)):
        ...  # work(jobs[0]), work(jobs[1]), ... in order

``work(job)`` is what a training step or an evaluation batch needs from the files (an assembly's
``collate_train`` / ``load_batch``: file reading, decoding, the encoder's preprocessing). With
``num_workers == 0`` it runs in this process; otherwise DataLoader workers run it ``prefetch_factor`` jobs
ahead. The workers are forked, so ``work`` may be a bound method of the model (its CPU-side preprocessing
state is shared, not pickled); it must not touch an accelerator. Each worker runs torch with
``worker_threads`` threads, so that workers and the main process do not oversubscribe the cores.

Every job runs under its own seeded torch RNG (:func:`job_seed`, from ``(seed, job)``) inside
:func:`torch.random.fork_rng`: random frame sampling or point resampling draws the same numbers in a worker
as in this process, and the caller's RNG (dropout, ...) is left as it was. Bad samples stay ``work``'s
business (the tolerant batch loader reports them in its result).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


@dataclass(frozen=True)
class Background:
    """How to load in the background: ``num_workers`` DataLoader workers (0: in this process), each
    ``prefetch_factor`` jobs ahead, ``worker_threads`` torch threads each; pinned memory for a GPU."""

    num_workers: int = 0
    prefetch_factor: int = 2
    worker_threads: int = 1
    pin_memory: bool = False


def job_seed(seed: int, job: Any) -> int:
    """The RNG seed of one job: a function of ``seed`` and the job's ``repr`` only."""
    return zlib.crc32(f"{seed}:{job!r}".encode())


class _Jobs(Dataset):
    def __init__(self, jobs: Sequence[Any], work: Callable[[Any], Any], seed: int):
        self.jobs, self.work, self.seed = jobs, work, seed

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> Any:
        job = self.jobs[i]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(job_seed(self.seed, job))
            return self.work(job)


def _as_is(item: Any) -> Any:
    return item


class _WorkerInit:
    def __init__(self, threads: int):
        self.threads = threads

    def __call__(self, worker_id: int) -> None:
        torch.set_num_threads(self.threads)


def in_background(jobs: Sequence[Any], work: Callable[[Any], Any], how: Background = Background(),
                  seed: int = 0) -> Iterator[Any]:
    """``work(job)`` for each of ``jobs``, in order (see the module docstring)."""
    dataset = _Jobs(jobs, work, seed)
    if how.num_workers == 0:
        return (dataset[i] for i in range(len(dataset)))
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=how.num_workers,
                        collate_fn=_as_is, prefetch_factor=how.prefetch_factor, persistent_workers=False,
                        pin_memory=how.pin_memory, worker_init_fn=_WorkerInit(how.worker_threads),
                        multiprocessing_context="fork",
                        generator=torch.Generator().manual_seed(seed))  # its worker seeds: not from the caller's RNG
    return iter(loader)
