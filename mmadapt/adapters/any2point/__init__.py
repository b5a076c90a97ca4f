"""Any2Point (Tang et al., 2024): config, projection, guided adapter layer, model."""

from mmadapt.adapters.any2point.config import Any2PointConfig
from mmadapt.adapters.any2point.model import Any2Point

__all__ = ["Any2Point", "Any2PointConfig"]
