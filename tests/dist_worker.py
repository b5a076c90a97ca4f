"""One training run of the tiny eP-ALM for the multi-process tests (see tests/test_training.py).

Run as one process (``python tests/dist_worker.py ...``) or under torchrun
(``python -m torch.distributed.run --nproc_per_node 2 tests/dist_worker.py ...``). Every rank builds the same
tiny model from ``--seed`` and trains ``--steps`` steps of global batch ``--batch-size`` with
``mmadapt.api.train``. Written under ``--out``:

- ``losses-rank{R}.json``: ``{"world": W, "rank": R, "losses": [...], "evaluations": [...]}`` (per-step global
  loss and the ``--eval-every`` evaluations' records, every rank);
- ``final/``: rank 0's ``result.model.save_pretrained`` after training (``adapter_model.safetensors``).

The trainer's own checkpoints are under ``--out/run/checkpoints``. DeepSpeed ZeRO-3 with two CPU processes
sometimes aborts after finishing ("terminate called without an active exception"), so the worker flushes its
results and leaves with ``os._exit``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scenes", required=True, help="synthetic scenes root (train split of 24 images)")
    p.add_argument("--out", required=True)
    p.add_argument("--zero-stage", type=int, default=0)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8, help="global batch")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=0, help="train.eval_every (VQA only, 6 questions)")
    p.add_argument("--persistence-threshold", type=int, default=None,
                   help="ZeRO-3 stage3_param_persistence_threshold (0: partition every parameter, even tiny ones)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> list[float]:
    """Train and write the results; returns the per-step losses."""
    from tiny import make_model, tiny_config

    from mmadapt.api import train
    from mmadapt.training.distributed import barrier

    out = Path(args.out)
    if args.persistence_threshold is not None:
        _force_partitioning(args.persistence_threshold)
    config = tiny_config(args.scenes, out / "run", max_steps=args.steps, batch_size=args.batch_size,
                         grad_accum=args.grad_accum, zero_stage=args.zero_stage, seed=args.seed,
                         eval_every=args.eval_every, eval_max_samples=6)
    config.tasks["caption"].eval = None  # caption scoring starts Java
    model = make_model(config, seed=args.seed)
    result = train(config, model=model, quiet=True)
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    losses = [r["loss"] for r in result.records]
    if rank == 0:
        result.model.save_pretrained(out / "final")
    (out / f"losses-rank{rank}.json").write_text(json.dumps({"world": world, "rank": rank, "losses": losses,
                                                             "evaluations": result.evaluations}))
    barrier()
    return losses


def _force_partitioning(threshold: int) -> None:
    """DeepSpeed keeps ZeRO-3 parameters below ``stage3_param_persistence_threshold`` (default 1e5 elements)
    whole on every rank, which is every parameter of the tiny model: lower it so ZeRO-3 really partitions."""
    from mmadapt.training import trainer

    base = trainer.deepspeed_config

    def patched(train, world_size):
        cfg = base(train, world_size)
        cfg["zero_optimization"]["stage3_param_persistence_threshold"] = threshold
        return cfg

    trainer.deepspeed_config = patched


def main() -> None:
    code = 0
    try:
        run(parse())
    except BaseException:  # noqa: BLE001 - report anything, then leave with a failure code
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
