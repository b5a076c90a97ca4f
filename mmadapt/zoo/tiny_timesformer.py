"""``zoo:tiny-timesformer``: a small HF ``TimesformerModel`` (divided space-time attention) pretrained here to
see the synthetic moving-shape clips.

Training clips are fresh random clips of :mod:`mmadapt.data.synthetic.video` (``sample_moving_shape`` +
``render_clip``, drawn in memory, no files), normalised exactly as :meth:`HFTimeSformer.preprocess
<mmadapt.backbones.video.HFTimeSformer.preprocess>` does with the ``VideoMAEImageProcessor`` saved beside the
model (``(x / 255 - mean) / std``). The [CLS] token after the final layernorm (``last_hidden_state[:, 0]``)
feeds two linear heads, the motion direction (4 classes: only frame *order* tells it) and the shape
(3 classes), trained on the sum of the two cross-entropies, so the [CLS] carries both — what video QA asks
about. The heads are thrown away; only the ``TimesformerModel`` and the processor are saved. Held-out accuracy
of each head is recorded in the manifest.

Initialisation (``init.scheme = "motion"``). From Hugging Face's own start (weights ~N(0, 0.02), time
embeddings zero) the direction head stayed at chance (25%) for 300 steps; with sin-cos position / time
embeddings, and even with shift-attention heads whose frame code was mixed with pixel content, it learnt the
motion *axis* but never its *sign* in 1,500 steps (50%, the ceiling of a model blind to frame order, while the
shape reached 0.96): temporal attention starts uniform over frames, and nothing order-sensitive gets a
first-order gradient. The motion start gives the model a temporal derivative from step 0 instead;
everything stays trainable:

* linear layers Xavier-uniform (patch projection too) rather than N(0, 0.02), so signals survive 4 blocks;
* the last ``T`` channels are a clean frame code: time embedding ``amplitude * one_hot(t)`` there, patch
  projection and position embeddings zero there; position embeddings are 2D sin-cos in the other channels;
* in every block, temporal-attention head ``h`` attends from frame ``t`` to frame ``t + shifts[h]`` (its
  query / key read the frame code; logit ``shift_logit_scale`` times the code's squared size), and the
  ``shifts`` heads share one orthogonal value map whose output map is ``sign(shift)`` times its transpose,
  with ``temporal_dense`` the identity: each token starts with ``x[t+1] - x[t-1]`` (projected) added to it.

Measured on the project's 2-core CPU (default spec): direction 0.94 after 50 steps; the full build (600 steps)
takes ~2 minutes (1 thread; 75 s with 2) and reaches held-out direction 0.998, shape 0.93. Linear probes on the
frozen per-layer [CLS] read the direction at 0.99 from every layer, also on 16-frame mp4 clips sampled to 8.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mmadapt.data.synthetic.video import CLASSES, SHAPES, render_clip, sample_moving_shape
from mmadapt.zoo.pretrain import autocast, pretrain
from mmadapt.zoo.tiny_vit import sincos_2d

CODE_VERSION = 1

DEFAULT_SPEC: dict = {
    "name": "zoo:tiny-timesformer",
    "code_version": CODE_VERSION,
    "seed": 0,
    # one thread: measured on this project's 2-core machine, 2 threads were ~1.5x faster when idle but ~20x
    # slower when another process kept a core busy (OpenMP threads spinning for each other)
    "threads": 1,
    "model": {
        "image_size": 32,
        "patch_size": 8,
        "num_frames": 8,
        "hidden_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 512,
        "attention_type": "divided_space_time",
    },
    # "motion": see the module docstring; "hf": transformers' own initialisation (learns no direction)
    "init": {"scheme": "motion", "time_amplitude": 2.0, "shifts": [-1, 1], "shift_logit_scale": 12.0},
    "processor": {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},
    "train": {
        "steps": 600,
        "batch_size": 32,
        "lr": 2e-3,
        "warmup_steps": 30,
        "min_lr_ratio": 0.02,
        "weight_decay": 0.05,
        "grad_clip": 1.0,
        "bf16_autocast": "auto",  # bf16 only where the CPU has it natively (pretrain.py)
    },
    "eval": {"n_clips": 512, "batch_size": 128},
}

#: Overrides that make a build take a few seconds (for tests); the model is then untrained.
QUICK_OVERRIDES: dict = {
    "model": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
    "train": {"steps": 3, "batch_size": 4, "warmup_steps": 1},
    "eval": {"n_clips": 8, "batch_size": 8},
}


def motion_init(model, spec: dict) -> None:
    """Apply the "motion" start of the module docstring to a freshly built ``TimesformerModel`` (in place)."""
    m, init = spec["model"], spec["init"]
    dim, frames, n_heads = int(m["hidden_size"]), int(m["num_frames"]), int(m["num_attention_heads"])
    head_dim, shifts = dim // n_heads, [int(s) for s in init["shifts"]]
    if m["attention_type"] != "divided_space_time":
        raise ValueError(f"init.scheme 'motion' needs attention_type 'divided_space_time', got {m['attention_type']!r}")
    if len(shifts) > n_heads or head_dim < frames or (dim - frames) % 4 or 0 in shifts:
        raise ValueError(f"init.scheme 'motion': needs non-zero shifts, no more shifts ({len(shifts)}) than heads "
                         f"({n_heads}), head size {head_dim} >= num_frames {frames} and hidden - num_frames "
                         "divisible by 4")
    code = slice(dim - frames, dim)  # the frame-code channels
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight)
        emb = model.embeddings
        proj = emb.patch_embeddings.projection
        torch.nn.init.xavier_uniform_(proj.weight.view(dim, -1))
        proj.weight[code] = 0.0
        proj.bias[code] = 0.0
        emb.position_embeddings.zero_()
        emb.position_embeddings[0, 1:, : dim - frames] = sincos_2d(m["image_size"] // m["patch_size"], dim - frames)
        emb.time_embeddings.zero_()
        emb.time_embeddings[0, :, code] = float(init["time_amplitude"]) * torch.eye(frames)
        for layer in model.encoder.layer:
            qkv = layer.temporal_attention.attention.qkv.weight  # rows: [queries | keys | values], D each
            out = layer.temporal_attention.output.dense.weight
            values = torch.nn.init.orthogonal_(torch.empty(head_dim, dim))
            for h, shift in enumerate(shifts):
                rows = slice(h * head_dim, h * head_dim + frames)
                target = torch.zeros(frames, frames)  # query of frame t = code of frame t + shift
                for t in range(frames):
                    if 0 <= t + shift < frames:
                        target[t + shift, t] = 1.0
                qkv[rows] = 0.0
                qkv[rows, code] = float(init["shift_logit_scale"]) * target
                keys = slice(dim + h * head_dim, dim + h * head_dim + frames)
                qkv[keys] = 0.0
                qkv[keys, code] = torch.eye(frames)
                qkv[2 * dim + h * head_dim : 2 * dim + (h + 1) * head_dim] = values
                out[:, h * head_dim : (h + 1) * head_dim] = (1.0 if shift > 0 else -1.0) * values.T
            layer.temporal_dense.weight.copy_(torch.eye(dim))


def make_processor(spec: dict):
    """The ``VideoMAEImageProcessor`` saved with the model (what ``AutoImageProcessor`` loads for TimeSformer)."""
    from transformers import VideoMAEImageProcessor

    size = spec["model"]["image_size"]
    return VideoMAEImageProcessor(do_resize=True, size={"shortest_edge": size}, do_center_crop=True,
                                  crop_size={"height": size, "width": size}, resample=2, do_rescale=True,
                                  rescale_factor=1 / 255, do_normalize=True,
                                  image_mean=spec["processor"]["image_mean"], image_std=spec["processor"]["image_std"])


def clip_batch(rng: np.random.Generator, n: int, spec: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` random clips: normalised pixels ``[n, T, 3, S, S]``, direction ``[n]`` and shape ``[n]`` indices."""
    m = spec["model"]
    size, frames = int(m["image_size"]), int(m["num_frames"])
    directions = rng.integers(len(CLASSES), size=n)
    clips = [sample_moving_shape(rng, CLASSES[int(d)], size) for d in directions]
    video = torch.from_numpy(np.stack([render_clip(c, size, frames) for c in clips]))  # uint8 [n, T, S, S, 3]
    mean = torch.tensor(spec["processor"]["image_mean"]).view(3, 1, 1)
    std = torch.tensor(spec["processor"]["image_std"]).view(3, 1, 1)
    pixels = (video.permute(0, 1, 4, 2, 3).float() / 255.0 - mean) / std
    shapes = torch.tensor([SHAPES.index(c.shape) for c in clips])
    return pixels, torch.from_numpy(directions).long(), shapes


class _Heads(torch.nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.direction = torch.nn.Linear(hidden, len(CLASSES))
        self.shape = torch.nn.Linear(hidden, len(SHAPES))

    def forward(self, cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.direction(cls), self.shape(cls)


@torch.no_grad()
def head_accuracy(model, heads: _Heads, batches) -> dict[str, float]:
    """Held-out accuracy of the direction head, the shape head, and both right at once."""
    model.eval()
    hits = {"direction": [], "shape": [], "both": []}
    for pixels, directions, shapes in batches:
        d_logits, s_logits = heads(model(pixel_values=pixels).last_hidden_state[:, 0])
        d_ok, s_ok = d_logits.argmax(-1) == directions, s_logits.argmax(-1) == shapes
        for key, ok in (("direction", d_ok), ("shape", s_ok), ("both", d_ok & s_ok)):
            hits[key].extend(ok.float().tolist())
    return {k: round(sum(v) / len(v), 4) for k, v in hits.items()}


def build(out_dir: Path, spec: dict, progress: bool = True) -> dict:
    """Pretrain the TimeSformer of ``spec`` on rendered clips; save it and its processor to ``out_dir``."""
    from transformers import TimesformerConfig, TimesformerModel

    t0 = time.perf_counter()
    seed, tr, m = int(spec["seed"]), spec["train"], spec["model"]
    processor = make_processor(spec)
    config = TimesformerConfig(
        image_size=m["image_size"], patch_size=m["patch_size"], num_channels=3, num_frames=m["num_frames"],
        hidden_size=m["hidden_size"], num_hidden_layers=m["num_hidden_layers"],
        num_attention_heads=m["num_attention_heads"], intermediate_size=m["intermediate_size"],
        hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, drop_path_rate=0,
        qkv_bias=True, layer_norm_eps=1e-6, attention_type=m["attention_type"],
    )
    torch.manual_seed(seed)
    model = TimesformerModel(config)
    if spec["init"]["scheme"] == "motion":
        motion_init(model, spec)
    elif spec["init"]["scheme"] != "hf":
        raise ValueError(f"init.scheme: expected 'motion' or 'hf', got {spec['init']['scheme']!r}")
    heads = _Heads(m["hidden_size"])
    n_params = sum(p.numel() for p in model.parameters())

    params = list(model.named_parameters()) + [("heads." + n, p) for n, p in heads.named_parameters()]
    bs = int(tr["batch_size"])
    model.train()

    def step_loss(step: int) -> torch.Tensor:
        pixels, directions, shapes = clip_batch(np.random.default_rng([seed, 1, step]), bs, spec)
        with autocast(tr):
            d_logits, s_logits = heads(model(pixel_values=pixels).last_hidden_state[:, 0])
        return F.cross_entropy(d_logits.float(), directions) + F.cross_entropy(s_logits.float(), shapes)

    def no_decay(name: str, p: torch.Tensor) -> bool:
        return p.dim() < 2 or any(k in name for k in ("position_embeddings", "time_embeddings", "cls_token"))

    ema, t_train = pretrain(params, no_decay, step_loss, tr, betas=(0.9, 0.99),
                            desc="zoo:tiny-timesformer pretrain", progress=progress)

    ev = spec["eval"]
    n_eval, ebs = int(ev["n_clips"]), int(ev["batch_size"])
    batches = (clip_batch(np.random.default_rng([seed, 2, i]), min(ebs, n_eval - i), spec)
               for i in range(0, n_eval, ebs))
    acc = head_accuracy(model, heads, batches)

    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return {
        "n_params": n_params,
        "final_train_loss_ema": round(float(ema), 4) if ema is not None else None,
        "accuracy": acc,
        "train_seconds": round(t_train, 2),
        "seconds": round(time.perf_counter() - t0, 2),
    }
