"""What every frozen backbone shares: loading by id / path / zoo name, and freezing."""

from __future__ import annotations

import torch
from torch import nn

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def freeze(module: nn.Module) -> nn.Module:
    """Frozen means frozen: no gradients, eval mode (dropout off). Returns ``module``."""
    module.requires_grad_(False)
    module.eval()
    return module


def resolve_name(name: str) -> str:
    """A ``zoo:`` name becomes the local directory of the built zoo model; anything else is unchanged."""
    from mmadapt.zoo import resolve_pretrained

    return resolve_pretrained(name)


class FrozenBackbone(nn.Module):
    """Base class: stays in eval mode whatever ``train()`` says (frozen parts never switch on dropout)."""

    def train(self, mode: bool = True) -> "FrozenBackbone":
        return super().train(False)
