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
    p.add_argument("--mixed", action="store_true",
                   help="All-in-One on video QA + retrieval (two heads; a rank's micro-batch may hold one task only)")
    p.add_argument("--save-every", type=int, default=0, help="train.save_every")
    p.add_argument("--keep-checkpoints", type=int, default=2, help="train.keep_checkpoints")
    p.add_argument("--resume", action="store_true", help="continue the latest checkpoint under --out/run")
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
    if args.mixed:
        config = mixed_config(Path(args.scenes) / "video_text", out / "run", args)
        model = None  # built by train() from the config (every rank: the same seed)
    else:
        config = tiny_config(args.scenes, out / "run", max_steps=args.steps, batch_size=args.batch_size,
                             grad_accum=args.grad_accum, zero_stage=args.zero_stage, seed=args.seed,
                             eval_every=args.eval_every, eval_max_samples=6, save_every=args.save_every,
                             keep_checkpoints=args.keep_checkpoints)
        config.tasks["caption"].eval = None  # caption scoring starts Java
        model = make_model(config, seed=args.seed)
    result = train(config, model=model, resume=args.resume, quiet=True)
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    losses = [r["loss"] for r in result.records]
    if rank == 0:
        result.model.save_pretrained(out / "final")
    record = {"world": world, "rank": rank, "losses": losses, "steps": [r["step"] for r in result.records],
              "evaluations": result.evaluations}
    if args.mixed:
        record["tasks"] = _tasks_seen(config, rank, world)
    (out / f"losses-rank{rank}.json").write_text(json.dumps(record))
    barrier()
    return losses


def mixed_config(root: Path, out: Path, args: argparse.Namespace):
    """All-in-One (token rolling) on the zoo ViT with two tasks of different heads, video QA (an answer
    classifier) and retrieval (a matching head), mixed into one example list."""
    from mmadapt.config import Config

    data = lambda split, n: {"format": "synthetic_video_text", "root": str(root), "split": split,  # noqa: E731
                             "n_samples": n, "seed": 0}
    return Config.from_dict({
        "model": {"assembly": "all_in_one", "encoder": {"name": "zoo:tiny-vit", "kind": "hf_vit"},
                  "adapter": {"name": "token_rolling"}, "video_text": {"n_frames": 4, "max_text_len": 16}},
        "tasks": {"vqa": {"train": data("train", 8), "prompt": "{question}"},
                  "retrieval": {"train": data("train", 8)}},
        "train": {"max_steps": args.steps, "batch_size": args.batch_size, "lr": 1e-2, "warmup_steps": 0,
                  "log_every": 1, "zero_stage": args.zero_stage, "seed": args.seed, "grad_accum": args.grad_accum},
        "output_dir": str(out)})


def _tasks_seen(config, rank: int, world: int) -> list[list[str]]:
    """The example types (``Example``: video QA, ``MatchExample``: retrieval) of this rank's micro-batches at
    each step, from the trainer's own batch order."""
    from mmadapt.api import training_examples
    from mmadapt.training.data import GlobalBatchOrder

    examples = training_examples(config)
    t = config.train
    order = GlobalBatchOrder(len(examples), t.batch_size, world, rank, t.grad_accum, t.seed)
    return [sorted({type(examples[i]).__name__ for mb in order.micro_batches(s) for i in mb})
            for s in range(t.max_steps)]


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
