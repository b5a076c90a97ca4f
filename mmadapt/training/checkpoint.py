"""Checkpoints that a kill cannot break.

Layout of a run directory::

    checkpoints/step-N/adapter_config.json          PEFT layout: adapter weights only
    checkpoints/step-N/adapter_model.safetensors
    checkpoints/step-N/trainer_state.json           step, RNG states, scheduler
    checkpoints/step-N/deepspeed/...                optimizer state (DeepSpeed's own format, per rank)
    checkpoints/.universal-step-N/deepspeed/...     step-N as DeepSpeed's universal checkpoint, made when a
                                                    run resumes it on another number of ranks (ZeRO 1–3)

Every checkpoint is written under ``checkpoints/.tmp-step-N`` and renamed to ``step-N`` only when complete,
so ``latest_checkpoint`` never returns a half-written one. Old checkpoints beyond ``keep`` are removed
after the new one is in place.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from pathlib import Path

CKPT_RE = re.compile(r"^step-(\d+)$")
#: complete checkpoints: ``step-N``, or ``.old-step-N`` — the previous copy of step N that a kill caught while
#: it was being replaced (``finalize``); a ``step-N`` wins over it
_COMPLETE_RE = re.compile(r"^(\.old-)?step-(\d+)$")


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step}"


def temp_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f".tmp-step-{step}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step, or None. Temporary (unfinished) ones are ignored."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return None
    done = [(int(m.group(2)), not m.group(1), p) for p in root.iterdir() if (m := _COMPLETE_RE.match(p.name))
            and p.is_dir() and (p / "trainer_state.json").is_file()]
    return max(done)[2] if done else None


def finalize(run_dir: Path, step: int, keep: int) -> Path:
    """Move the finished temporary checkpoint into place, then prune older ones (rank 0 only)."""
    tmp, final = temp_dir(run_dir, step), checkpoint_dir(run_dir, step)
    if final.exists():  # re-saving step N: the old copy is moved aside, not deleted, until the new one is in
        old = final.with_name(f".old-{final.name}")  # place, so a kill between the renames leaves .old-step-N
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
    if keep > 0:
        done = sorted((int(m.group(1)), p) for p in final.parent.iterdir() if (m := CKPT_RE.match(p.name)))
        for _, old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    for stale in [*final.parent.glob(".tmp-step-*"), *final.parent.glob(".old-step-*")]:  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    for universal in final.parent.glob(".universal-step-*"):  # conversions of checkpoints pruned above
        if not (final.parent / universal.name.removeprefix(".universal-")).is_dir():
            shutil.rmtree(universal, ignore_errors=True)
    return final


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


# ------------------------------------------------------------------------------- DeepSpeed, weights only
def _deepspeed_state_classes() -> list:
    """The non-tensor classes DeepSpeed pickles into its optimizer states (ZeRO 1–3), allowed by name."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


@contextlib.contextmanager
def weights_only_loads():
    """Within the block every ``torch.load`` unpickles weights only (tensors, containers and the DeepSpeed
    state classes above), whatever its caller asks: DeepSpeed's universal-checkpoint converter and its ZeRO-3
    universal loader call ``torch.load(weights_only=False)`` themselves, past the checkpoint engine."""
    import torch

    allowed, load = _deepspeed_state_classes(), torch.load

    def weights_only_load(f, map_location=None, **kwargs):
        kwargs.pop("weights_only", None)
        with torch.serialization.safe_globals(allowed):
            return load(f, map_location=map_location, weights_only=True, **kwargs)

    torch.load = weights_only_load
    try:
        yield
    finally:
        torch.load = load


def unshare_step_counters(optimizer) -> None:
    """Give every parameter's optimizer state its own ``step`` tensor. DeepSpeed's ZeRO-3 universal loader
    stores one step tensor in the state of every parameter group; torch's Adam increments ``step`` in place,
    so with two groups (the adapter's and the prompt's, ``prompt_lr``) each optimizer step would count twice
    and the second group's bias correction would run one step ahead from the first resumed step on."""
    import torch

    for state in optimizer.state.values():
        if torch.is_tensor(state.get("step")):
            state["step"] = state["step"].clone()


def to_universal(source: Path, out: Path) -> None:
    """DeepSpeed's checkpoint ``source`` (ZeRO 1–3, optimizer state in one file per rank) → its universal
    checkpoint ``out`` (each parameter's fp32 weight and Adam moments whole), which a run on any number of
    ranks resumes from. Written under a temporary name and renamed, so a killed conversion leaves nothing
    half-made to be loaded."""
    import argparse

    from deepspeed.checkpoint import ds_to_universal

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    args = argparse.Namespace(input_folder=str(source), output_folder=str(tmp), num_extract_workers=1,
                              num_merge_workers=1, keep_temp_folder=False, strict=True,
                              inject_missing_state=True)  # the parameter shapes it needs are in our files
    with weights_only_loads():
        ds_to_universal.main(args)
    tmp.replace(out)


def weights_only_checkpoint_engine(config_params):
    """DeepSpeed's torch checkpoint engine, but loading with ``torch.load(weights_only=True)``.

    DeepSpeed itself unpickles its ``*.pt`` files with ``weights_only=False``, which runs whatever code a
    tampered checkpoint carries. Here only tensors, containers and the few DeepSpeed state classes above
    may be rebuilt; anything else fails with torch's "Weights only load failed" naming the global.
    """
    import torch
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    allowed = _deepspeed_state_classes()

    class WeightsOnlyCheckpointEngine(TorchCheckpointEngine):
        def load(self, path: str, map_location=None):
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location=map_location, weights_only=True)

    return WeightsOnlyCheckpointEngine(config_params)
