"""Checkpoints that a kill cannot break.

Layout of a run directory::

    checkpoints/step-N/adapter_config.json          PEFT layout: adapter weights only
    checkpoints/step-N/adapter_model.safetensors
    checkpoints/step-N/trainer_state.json           step, RNG states, scheduler
    checkpoints/step-N/deepspeed/...                optimizer state (DeepSpeed's own format, per rank)

Every checkpoint is written under ``checkpoints/.tmp-step-N`` and renamed to ``step-N`` only when complete,
so ``latest_checkpoint`` never returns a half-written one. Old checkpoints beyond ``keep`` are removed
after the new one is in place.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

CKPT_RE = re.compile(r"^step-(\d+)$")


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step}"


def temp_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f".tmp-step-{step}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step, or None. Temporary (unfinished) ones are ignored."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return None
    done = [(int(m.group(1)), p) for p in root.iterdir() if (m := CKPT_RE.match(p.name)) and p.is_dir()
            and (p / "trainer_state.json").is_file()]
    return max(done)[1] if done else None


def finalize(run_dir: Path, step: int, keep: int) -> Path:
    """Move the finished temporary checkpoint into place, then prune older ones (rank 0 only)."""
    tmp, final = temp_dir(run_dir, step), checkpoint_dir(run_dir, step)
    if final.exists():  # re-saving the same step (e.g. after a resume): replace
        shutil.rmtree(final)
    tmp.rename(final)
    if keep > 0:
        done = sorted((int(m.group(1)), p) for p in final.parent.iterdir() if (m := CKPT_RE.match(p.name)))
        for _, old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    for stale in final.parent.glob(".tmp-step-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    return final


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)
