"""Process-group set-up for DeepSpeed: one process or many (torchrun / deepspeed launcher), gloo or NCCL."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed() -> tuple[int, int]:
    """Start (or join) the process group; returns ``(rank, world_size)``.

    Under torchrun / the deepspeed launcher the usual env vars are set; a plain single process gets a
    one-rank group over an in-memory store, so it never listens on a port (no race for a "free" port with
    another process on the machine). Backend: NCCL with CUDA, gloo on CPU.
    """
    import deepspeed

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if "RANK" not in os.environ:
            # Only LOCAL_RANK (which DeepSpeed's engine reads) goes into os.environ: no RANK or MASTER_PORT
            # that a child process (a test worker, a benchmark) would inherit and try to rendezvous on.
            os.environ.setdefault("LOCAL_RANK", "0")
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, verbose=False)
    return dist.get_rank(), dist.get_world_size()


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def all_mean(value: float) -> float:
    """Mean of a Python float over ranks (for logging the global loss)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def device_for_rank() -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def all_mean_parts(parts: dict[str, list[float]]) -> dict[str, float]:
    """``{name: values}`` of this rank → ``{name: mean of the values of every rank}`` (a name missing on a rank
    counts there with no values), for logging each task's loss when ranks hold different tasks."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, parts)
    else:
        gathered = [parts]
    pooled: dict[str, list[float]] = {}
    for rank_parts in gathered:
        for name, values in rank_parts.items():
            pooled.setdefault(name, []).extend(values)
    return {name: sum(values) / len(values) for name, values in sorted(pooled.items())}
