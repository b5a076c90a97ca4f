"""A training run of the tiny eP-ALM that can be told to stop dead at a chosen moment (tests/test_robust_training.py).

    python tests/kill_worker.py --scenes DIR --run DIR [--resume] [--pause POINT --nth N --marker FILE]

It trains ``--steps`` steps with a checkpoint after every step (``mmadapt.api.train``, as ``mmadapt train
--resume`` does). With ``--pause``, the ``N``-th time the run reaches ``POINT`` it writes ``FILE`` and sleeps,
so that the test can ``kill -9`` it exactly there:

- ``forward``: inside a training forward (after the batch was read);
- ``adapter``: after ``adapter_model.safetensors`` of a checkpoint was written, before the rest of it;
- ``deepspeed``: after DeepSpeed wrote one of its state files (optimizer state) into the checkpoint;
- ``state``: while ``trainer_state.json`` is being written (temporary file written, not yet renamed);
- ``rename``: the checkpoint is complete under ``.tmp-step-N``, not yet renamed to ``step-N``;
- ``prune``: the new checkpoint is in place and an old one is half deleted.

The per-step losses go to ``log.jsonl`` in the run directory, as in any run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

POINTS = ("forward", "adapter", "deepspeed", "state", "rename", "prune")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scenes", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--pause", choices=POINTS)
    p.add_argument("--nth", type=int, default=1)
    p.add_argument("--marker")
    args = p.parse_args()

    from tiny import make_model, tiny_config

    from mmadapt.api import train
    from mmadapt.models import base as model_base
    from mmadapt.training import checkpoint as ckpt

    seen = {"n": 0}

    def pause_here() -> None:
        seen["n"] += 1
        if seen["n"] == args.nth:
            Path(args.marker).write_text("paused")
            time.sleep(600)  # the test kills us here

    cfg = tiny_config(args.scenes, args.run, max_steps=args.steps, save_every=1, keep_checkpoints=2)
    model = make_model(cfg)
    if args.pause == "forward":
        forward = model.forward

        def paused_forward(*a, **kw):
            loss = forward(*a, **kw)
            pause_here()
            return loss

        model.forward = paused_forward
    elif args.pause == "adapter":
        real_save_file = model_base.save_file

        def save_then_pause(tensors, filename, *a, **kw):
            real_save_file(tensors, filename, *a, **kw)
            pause_here()

        model_base.save_file = save_then_pause
    elif args.pause == "deepspeed":
        from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

        real_save = TorchCheckpointEngine.save

        def ds_save_then_pause(self, state_dict, path):
            real_save(self, state_dict, path)
            pause_here()

        TorchCheckpointEngine.save = ds_save_then_pause
    elif args.pause == "state":
        real_replace = Path.replace

        def replace_after_pause(self, target):
            if Path(target).name == "trainer_state.json":
                pause_here()
            return real_replace(self, target)

        Path.replace = replace_after_pause
    elif args.pause == "rename":
        real_finalize = ckpt.finalize

        def pause_then_finalize(run_dir, step, keep):
            pause_here()
            return real_finalize(run_dir, step, keep)

        ckpt.finalize = pause_then_finalize
    elif args.pause == "prune":
        real_rmtree = ckpt.shutil.rmtree

        def rmtree_half(path, *a, **kw):
            path = Path(path)
            if path.name.startswith("step-") and path.is_dir():
                first = next(iter(sorted(path.iterdir())), None)  # delete one file of it, then stop dead
                if first is not None and first.is_file():
                    first.unlink()
                pause_here()
            return real_rmtree(path, *a, **kw)

        ckpt.shutil.rmtree = rmtree_half
    train(cfg, model=model, resume=args.resume, quiet=True)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
