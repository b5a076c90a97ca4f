"""Learning-rate schedule shared by the trainer and the zoo's pretraining."""

from __future__ import annotations

import math


def cosine_with_warmup(warmup: int, total: int, min_ratio: float = 0.0):
    """LR multiplier: linear warmup to 1 over ``warmup`` steps, then cosine decay to ``min_ratio``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
