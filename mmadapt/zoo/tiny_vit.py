"""``zoo:tiny-vit``: a small HF ``ViTModel`` pretrained here to see the synthetic scenes.

Training images are fresh random scenes drawn with ``render_scene(scene, 64, rng)`` (jitter and background
noise on), preprocessed by the very ``ViTImageProcessor`` that is saved with the model, so the library's
``AutoImageProcessor`` preprocessing matches training exactly. The [CLS] token after the final layernorm
(``last_hidden_state[:, 0]``) feeds linear heads that predict the scene's full attribute table: for each
shape, present / colour / size / side / row (the last four masked when the shape is absent), and the
object count. The heads are thrown away; only the ``ViTModel`` (no pooling layer) and the image processor
are saved. Held-out per-attribute accuracy is recorded in the manifest.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mmadapt.data.synthetic import scene_world as S
from mmadapt.zoo.pretrain import autocast, pretrain

CODE_VERSION = 2

DEFAULT_SPEC: dict = {
    "name": "zoo:tiny-vit",
    "code_version": CODE_VERSION,
    "seed": 0,
    "threads": 2,
    "model": {
        "image_size": 64,
        "patch_size": 8,
        "hidden_size": 128,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "intermediate_size": 512,
        "position_init": "sincos",  # "sincos": 2D sin-cos (MAE-style) start for the learned embeddings
    },
    "processor": {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},
    "train": {
        "steps": 1200,
        "batch_size": 64,
        "lr": 2e-3,
        "warmup_steps": 60,
        "min_lr_ratio": 0.02,
        "weight_decay": 0.05,
        "grad_clip": 1.0,
        "bf16_autocast": "auto",  # bf16 only where the CPU has it natively (pretrain.py)
    },
    "eval": {"n_images": 1000, "batch_size": 250},
}

#: Overrides that make a build take a few seconds (for tests); the model is then untrained.
QUICK_OVERRIDES: dict = {
    "model": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
    "train": {"steps": 5, "batch_size": 8, "warmup_steps": 1},
    "eval": {"n_images": 16, "batch_size": 8},
}

# Attribute table: per shape (in S.SHAPES order) these groups, then the count.
_PER_SHAPE = (("present", 2), ("color", len(S.COLORS)), ("size", len(S.SIZES)), ("side", len(S.SIDES)),
              ("row", len(S.ROWS)))
_COLORS = tuple(S.COLORS)
_MAX_OBJECTS = 3
N_OUTPUTS = len(S.SHAPES) * sum(n for _, n in _PER_SHAPE) + _MAX_OBJECTS


def scene_targets(scene: S.Scene) -> list[int]:
    """The scene's attribute table as class indices (``-100`` = masked), in the heads' order."""
    out = []
    for shape in S.SHAPES:
        obj = scene.by_shape(shape)
        if obj is None:
            out += [0, -100, -100, -100, -100]
        else:
            out += [1, _COLORS.index(obj.color), S.SIZES.index(obj.size), S.SIDES.index(obj.side),
                    S.ROWS.index(obj.row)]
    return out + [len(scene.objects) - 1]


def _split_logits(logits: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """``[B, N_OUTPUTS]`` → ``[(attribute, [B, n_classes]), ...]`` in :func:`scene_targets` order."""
    groups, i = [], 0
    for _shape in S.SHAPES:
        for attr, n in _PER_SHAPE:
            groups.append((attr, logits[:, i : i + n]))
            i += n
    groups.append(("count", logits[:, i : i + _MAX_OBJECTS]))
    return groups


def table_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over attribute groups of the (masked) cross-entropy."""
    losses = []
    for j, (_, group) in enumerate(_split_logits(logits)):
        t = targets[:, j]
        if (t != -100).any():
            losses.append(F.cross_entropy(group.float(), t, ignore_index=-100))
    return torch.stack(losses).mean()


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """Fixed 2D sin-cos position embeddings ``[grid², dim]`` (row-major patches; half the channels encode
    the row, half the column). HF ViT's default start (std 0.02 noise) left the tiny ViT unable to tell
    left from right after its short pretraining (side / row accuracy at chance); this start carries
    position from step 0 and stays learnable."""
    if dim % 4:
        raise ValueError(f"sincos_2d: hidden size {dim} is not a multiple of 4")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    coords = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1).float()


def make_processor(spec: dict):
    from transformers import ViTImageProcessor

    size = spec["model"]["image_size"]
    return ViTImageProcessor(do_resize=True, size={"height": size, "width": size}, resample=2,
                             do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                             image_mean=spec["processor"]["image_mean"], image_std=spec["processor"]["image_std"])


def _batch(rng: random.Random, n: int, size: int, processor) -> tuple[torch.Tensor, torch.Tensor]:
    scenes = [S.sample_scene(rng) for _ in range(n)]
    images = [S.render_scene(s, size, rng) for s in scenes]
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    return pixels, torch.tensor([scene_targets(s) for s in scenes])


@torch.no_grad()
def attribute_accuracy(vit, head: torch.nn.Module, batches) -> dict[str, float]:
    """Held-out accuracy per attribute (colour/size/side/row over present objects only) and of the whole
    table (every attribute of the scene right)."""
    vit.eval()
    hits: dict[str, list[float]] = {}
    for pixels, targets in batches:
        logits = head(vit(pixel_values=pixels).last_hidden_state[:, 0])
        scene_ok = torch.ones(len(targets), dtype=torch.bool)
        for j, (attr, group) in enumerate(_split_logits(logits)):
            t = targets[:, j]
            keep = t != -100
            ok = group.argmax(-1) == t
            hits.setdefault(attr, []).extend(ok[keep].float().tolist())
            scene_ok &= ok | ~keep
        hits.setdefault("table", []).extend(scene_ok.float().tolist())
    return {k: round(sum(v) / len(v), 4) for k, v in hits.items()}


def build(out_dir: Path, spec: dict, progress: bool = True) -> dict:
    """Pretrain the ViT of ``spec`` on rendered scenes; save it and its image processor to ``out_dir``."""
    from transformers import ViTConfig, ViTModel

    t0 = time.perf_counter()
    seed, tr, m = int(spec["seed"]), spec["train"], spec["model"]
    processor = make_processor(spec)
    config = ViTConfig(
        image_size=m["image_size"], patch_size=m["patch_size"], num_channels=3, hidden_size=m["hidden_size"],
        num_hidden_layers=m["num_hidden_layers"], num_attention_heads=m["num_attention_heads"],
        intermediate_size=m["intermediate_size"], hidden_act="gelu", hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, qkv_bias=True, layer_norm_eps=1e-12,
    )
    torch.manual_seed(seed)
    vit = ViTModel(config, add_pooling_layer=False)
    if m["position_init"] == "sincos":
        grid = m["image_size"] // m["patch_size"]
        with torch.no_grad():
            vit.embeddings.position_embeddings[0, 1:] = sincos_2d(grid, m["hidden_size"])
            vit.embeddings.position_embeddings[0, 0] = 0.0
    head = torch.nn.Linear(m["hidden_size"], N_OUTPUTS)
    n_params = sum(p.numel() for p in vit.parameters())

    params = list(vit.named_parameters()) + [("head." + n, p) for n, p in head.named_parameters()]
    bs = int(tr["batch_size"])
    rng = random.Random(f"{seed}/vit-train")
    vit.train()

    def step_loss(step: int) -> torch.Tensor:
        pixels, targets = _batch(rng, bs, m["image_size"], processor)
        with autocast(tr):
            logits = head(vit(pixel_values=pixels).last_hidden_state[:, 0])
        return table_loss(logits, targets)

    def no_decay(name: str, p: torch.Tensor) -> bool:
        return p.dim() < 2 or "position_embeddings" in name or "cls_token" in name

    ema, t_train = pretrain(params, no_decay, step_loss, tr, betas=(0.9, 0.99),
                            desc="zoo:tiny-vit pretrain", progress=progress)

    ev = spec["eval"]
    eval_rng = random.Random(f"{seed}/vit-eval")
    n_eval, ebs = int(ev["n_images"]), int(ev["batch_size"])
    batches = (_batch(eval_rng, min(ebs, n_eval - i), m["image_size"], processor)
               for i in range(0, n_eval, ebs))
    acc = attribute_accuracy(vit, head, batches)

    vit.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return {
        "n_params": n_params,
        "final_train_loss_ema": round(float(ema), 4) if ema is not None else None,
        "accuracy": acc,
        "train_seconds": round(t_train, 2),
        "seconds": round(time.perf_counter() - t0, 2),
    }
