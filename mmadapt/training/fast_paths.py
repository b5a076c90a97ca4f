"""Fast paths for training with frozen backbones (recipe keys under ``train``).

- ``autocast: bf16`` — the forward runs under ``torch.autocast`` in bfloat16: matmuls in bf16, weights,
  gradients and the optimizer in fp32 (unlike ``precision: bf16``, which casts the whole model).
- ``gradient_checkpointing: true`` — each layer of a frozen causal LM keeps only its input and recomputes its
  activations in the backward pass (non-reentrant ``torch.utils.checkpoint``): the gradient of a soft
  prompt or an injected token still flows through every layer, at ~1 extra forward of the LM.
- ``compile: true`` — ``torch.compile`` on each layer of the frozen LM (hooks included).

Two fast paths are always on: attention uses PyTorch's SDPA kernels (``model.*.attn_implementation: sdpa``
is the default), and nothing below the first trained input keeps an autograd graph (frozen encoders run
under ``torch.no_grad()`` in the adapters, and their outputs can be precomputed: ``train.feature_cache``).
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from mmadapt.backbones.lm import CausalLM


def autocast_context(train_cfg, device: torch.device):
    """The autocast context of one training forward (a no-op unless ``train.autocast`` is set)."""
    if train_cfg.autocast == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def checkpoint_layers(layers: nn.ModuleList) -> int:
    """Recompute each layer's activations in backward instead of keeping them (when grad is enabled).

    The layer's forward is wrapped in place (``functools.wraps`` keeps its signature visible, which
    adapters' hooks read); forward pre-hooks still run outside the recomputed region, once per call.
    Returns the number of layers wrapped (layers already wrapped are skipped).
    """
    wrapped = 0
    for layer in layers:
        if getattr(layer, "_mmadapt_checkpointed", False):
            continue
        forward = layer.forward

        @functools.wraps(forward)
        def run(*args, _forward=forward, **kwargs):
            if torch.is_grad_enabled():
                return checkpoint(_forward, *args, use_reentrant=False, **kwargs)
            return _forward(*args, **kwargs)

        layer.forward = run
        layer._mmadapt_checkpointed = True
        wrapped += 1
    return wrapped


def frozen_lms(model: nn.Module) -> list[CausalLM]:
    return [m for m in model.modules() if isinstance(m, CausalLM)]


def apply_fast_paths(model: nn.Module, train_cfg) -> None:
    """Apply ``train.gradient_checkpointing`` and ``train.compile`` to the frozen LMs in ``model``."""
    for lm in frozen_lms(model):
        if train_cfg.gradient_checkpointing:
            checkpoint_layers(lm.layers)
        if train_cfg.compile:
            for layer in lm.layers:
                layer.compile()
