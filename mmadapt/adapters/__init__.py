"""Adapters: the only trained parts (importing this registers them)."""

from mmadapt.adapters.base import Adapter
from mmadapt.adapters.epalm import EPALM, EPALMConfig

__all__ = ["Adapter", "EPALM", "EPALMConfig"]
