"""Adapters: the only trained parts (importing this registers them)."""

from mmadapt.adapters.any2point import Any2Point, Any2PointConfig
from mmadapt.adapters.base import Adapter
from mmadapt.adapters.epalm import EPALM, EPALMConfig

__all__ = ["Adapter", "Any2Point", "Any2PointConfig", "EPALM", "EPALMConfig"]
