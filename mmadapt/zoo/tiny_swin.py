"""``zoo:tiny-swin``: a small HF ``SwinModel`` (four stages) pretrained here to see the synthetic scenes.

The hierarchical backbone of the dense multi-task methods (Polyhistor): 64² input, patch 2, window 4, so the
stage maps are 32², 16², 8², 4² (strides 2 / 4 / 8 / 16) with widths 32 / 64 / 128 / 256.

Pretraining is tiny-vit's (:mod:`mmadapt.zoo.tiny_vit`, whose scene sampling, rendering, attribute table,
loss and held-out accuracy are imported, not copied): fresh random scenes rendered at 64² with jitter and
background noise, preprocessed by the very ``ViTImageProcessor`` saved with the model (mean / std 0.5, size
64; what Swin checkpoints ship), and linear heads on the final-layernormed last stage predicting the whole
attribute table. The heads are thrown away; the ``SwinModel`` and its image processor are saved, so
``SwinModel.from_pretrained(path)`` and ``AutoImageProcessor.from_pretrained(path)`` read the entry. Held-out
per-attribute accuracy is recorded in the manifest.

What the heads read (``train.readout``): ``"cells"`` (the default) — the last stage's 4 × 4 map flattened,
one weight per cell; ``"mean"`` — the mean-pooled map (``pooler_output``, a special case: equal weights
for every cell). Swin has no absolute position embeddings, so a mean-pooled feature cannot say where an
object is: measured, with ``"mean"`` side and row stayed at chance (48% / 50% held-out after 150 steps of
32) while count reached 99.6%. Reading the cells keeps the standard Swin architecture, makes position
learnable, and trains what a dense-prediction backbone needs: features that say what is *here*.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from mmadapt.zoo.pretrain import autocast, pretrain
from mmadapt.zoo.tiny_vit import N_OUTPUTS, _batch, attribute_accuracy, make_processor, table_loss

CODE_VERSION = 1

DEFAULT_SPEC: dict = {
    "name": "zoo:tiny-swin",
    "code_version": CODE_VERSION,
    "seed": 0,
    # one torch thread: measured on this project's 2 shared cores, a build step (batch 32) took 0.4 s with one
    # thread and 6-8 s with two while another job kept both cores busy (OpenMP threads waiting on each other)
    "threads": 1,
    "model": {
        "image_size": 64,
        "patch_size": 2,
        "embed_dim": 32,
        "depths": [2, 2, 2, 2],
        "num_heads": [1, 2, 4, 8],
        "window_size": 4,
        "mlp_ratio": 4.0,
    },
    "processor": {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},
    "train": {
        "steps": 450,
        "batch_size": 32,
        "lr": 2e-3,
        "warmup_steps": 30,
        "min_lr_ratio": 0.02,
        "weight_decay": 0.05,
        "grad_clip": 1.0,
        "bf16_autocast": "auto",  # bf16 only where the CPU has it natively (pretrain.py)
        "readout": "cells",  # what the thrown-away heads read: "cells" (the flattened last-stage map) or "mean"
    },
    "eval": {"n_images": 1000, "batch_size": 250},
}

#: Overrides that make a build take a few seconds (for tests); the model is then untrained.
QUICK_OVERRIDES: dict = {
    "model": {"embed_dim": 8, "num_heads": [1, 1, 2, 2]},
    "train": {"steps": 5, "batch_size": 8, "warmup_steps": 1},
    "eval": {"n_images": 16, "batch_size": 8},
}


def make_config(spec: dict):
    """The ``SwinConfig`` of ``spec`` (no dropout, no stochastic depth: the entry is a frozen backbone)."""
    from transformers import SwinConfig

    m = spec["model"]
    return SwinConfig(
        image_size=m["image_size"], patch_size=m["patch_size"], num_channels=3, embed_dim=m["embed_dim"],
        depths=list(m["depths"]), num_heads=list(m["num_heads"]), window_size=m["window_size"],
        mlp_ratio=float(m["mlp_ratio"]), qkv_bias=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        drop_path_rate=0.0, hidden_act="gelu", use_absolute_embeddings=False, layer_norm_eps=1e-5,
    )


def _features(out, readout: str) -> torch.Tensor:
    """What the pretraining heads read from a ``SwinModel`` output: ``[B, cells · C]`` or ``[B, C]``."""
    if readout == "cells":
        return out.last_hidden_state.flatten(1)  # [B, h·w, C] (final layernorm applied) → [B, h·w·C]
    if readout == "mean":
        return out.last_hidden_state.mean(1)  # = pooler_output
    raise ValueError(f"zoo:tiny-swin: train.readout {readout!r}; expected 'cells' or 'mean'")


class _Readout(torch.nn.Module):
    """Shows the heads' input [B, F] as a one-token ``last_hidden_state`` [B, 1, F], the feature that
    :func:`mmadapt.zoo.tiny_vit.attribute_accuracy` reads (``[:, 0]``)."""

    def __init__(self, swin: torch.nn.Module, readout: str):
        super().__init__()
        self.swin, self.readout = swin, readout

    def forward(self, pixel_values: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(last_hidden_state=_features(self.swin(pixel_values=pixel_values), self.readout)[:, None])


def build(out_dir: Path, spec: dict, progress: bool = True) -> dict:
    """Pretrain the Swin of ``spec`` on rendered scenes; save it and its image processor to ``out_dir``."""
    from transformers import SwinModel

    t0 = time.perf_counter()
    seed, tr, m = int(spec["seed"]), spec["train"], spec["model"]
    processor = make_processor(spec)  # tiny-vit's: ViTImageProcessor, resize to image_size², spec mean / std
    config = make_config(spec)
    torch.manual_seed(seed)
    swin = SwinModel(config, add_pooling_layer=False)
    readout = tr["readout"]
    cells = (m["image_size"] // (m["patch_size"] * 2 ** (len(m["depths"]) - 1))) ** 2
    head = torch.nn.Linear(swin.num_features * (cells if readout == "cells" else 1), N_OUTPUTS)
    n_params = sum(p.numel() for p in swin.parameters())

    params = list(swin.named_parameters()) + [("head." + n, p) for n, p in head.named_parameters()]
    bs = int(tr["batch_size"])
    rng = random.Random(f"{seed}/swin-train")
    swin.train()

    def step_loss(step: int) -> torch.Tensor:
        pixels, targets = _batch(rng, bs, m["image_size"], processor)
        with autocast(tr):
            logits = head(_features(swin(pixel_values=pixels), readout))
        return table_loss(logits, targets)

    def no_decay(name: str, p: torch.Tensor) -> bool:
        return p.dim() < 2 or "relative_position_bias_table" in name

    ema, t_train = pretrain(params, no_decay, step_loss, tr, betas=(0.9, 0.99),
                            desc="zoo:tiny-swin pretrain", progress=progress)

    ev = spec["eval"]
    eval_rng = random.Random(f"{seed}/swin-eval")
    n_eval, ebs = int(ev["n_images"]), int(ev["batch_size"])
    batches = (_batch(eval_rng, min(ebs, n_eval - i), m["image_size"], processor)
               for i in range(0, n_eval, ebs))
    acc = attribute_accuracy(_Readout(swin, readout), head, batches)

    swin.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return {
        "n_params": n_params,
        "final_train_loss_ema": round(float(ema), 4) if ema is not None else None,
        "accuracy": acc,
        "train_seconds": round(t_train, 2),
        "seconds": round(time.perf_counter() - t0, 2),
    }
