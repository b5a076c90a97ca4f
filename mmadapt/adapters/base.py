"""The contract every adapter keeps: a typed config, its own parameters, named LR groups."""

from __future__ import annotations

from typing import ClassVar

from torch import nn


class Adapter(nn.Module):
    """Base class of the trained parts.

    Subclasses set ``config_class`` (a dataclass with a ``name`` field, validated from the recipe) and may
    override :meth:`param_groups` to give some parameters their own learning rate (e.g. eP-ALM's prompt).
    """

    config_class: ClassVar[type]

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by group name; the trainer maps names to learning rates."""
        return {"default": [p for p in self.parameters() if p.requires_grad]}
