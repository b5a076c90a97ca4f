"""Configuration of Polyhistor and Polyhistor-Lite (Liu et al., NeurIPS 2022)."""

from __future__ import annotations

from dataclasses import dataclass
from mmadapt.errors import ConfigError


@dataclass
class PolyhistorConfig:
    """Polyhistor: a bottleneck adapter after every block of a frozen hierarchical encoder, for every task,
    whose weights come from Decomposed HyperNetworks.

    Block ``l`` of stage ``s`` (width ``d_s``) gets, for task ``t``, a bottleneck of width
    ``r_s = d_s / reduction``::

        W_down[t, l] = H_task_down_s(e_t) @ H_layer_down_s(e_l)     [d_s, rank] @ [rank, r_s]
        W_up[t, l]   = H_layer_up_s(e_l) @ H_task_up_s(e_t)         [r_s, rank] @ [rank, d_s]
        x ← x + scale · (GELU(x W_down + b_down[l]) W_up + b_up[t])

    ``e_t`` (``task_embed_dim``) and ``e_l`` (``layer_embed_dim``) are learned embeddings; the four
    hypernetworks (linear maps, one set per stage because the stages' widths differ) are shared by every
    task and every layer, so adding a task adds one embedding. The task part of ``W_up`` starts at zero:
    training starts from the frozen encoder's own features.

    Keys: ``reduction`` (bottleneck ``d_s / reduction`` in every stage), ``rank`` (inner size of the two
    factors), ``task_embed_dim`` / ``layer_embed_dim`` (``Et`` / ``El``), ``scale`` (multiplies the adapter's
    residual). None of these values is fixed by what could be read of the paper; the defaults and the reasons
    for them are in ``docs/methods/polyhistor.md``.
    """

    name: str = "polyhistor"
    reduction: int = 4
    rank: int = 4
    task_embed_dim: int = 32
    layer_embed_dim: int = 32
    scale: float = 1.0

    def validate(self) -> None:
        for key in ("reduction", "rank", "task_embed_dim", "layer_embed_dim"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: expected a positive integer, got {getattr(self, key)}")


@dataclass
class PolyhistorLiteConfig(PolyhistorConfig):
    """Polyhistor-Lite: one set of Decomposed Lite-HyperNetworks generates a *template* adapter sized for the
    narrowest stage (``d_0``, ``r_0 = d_0 / reduction``) for every (task, layer); each layer's Layer-wise
    Scaling Kernels ``K_down[l], K_up[l]`` (``k × k`` with ``k = d_s / d_0``) expand it to its stage's
    width by a Kronecker product::

        W_down[t, l] = template_down[t, l] ⊗ K_down[l]      [d_0·k, r_0·k] = [d_s, r_s]
        W_up[t, l]   = template_up[t, l] ⊗ K_up[l]

    Every stage width must be ``k × d_0`` for an integer ``k`` (true of Swin: the width doubles per stage).
    The template is the narrowest stage's size, so its hypernetworks can afford a higher ``rank`` (default 8)
    at a fraction of Polyhistor's parameters. Biases are not scaled by the kernels: the template's
    ``b_down`` / ``b_up`` are repeated ``k`` times (each template channel ``j`` becomes channels
    ``j·k .. j·k + k - 1``, the Kronecker product's order).
    """

    name: str = "polyhistor_lite"
    rank: int = 8
