"""Polyhistor / Polyhistor-Lite (Liu et al., NeurIPS 2022): config, hypernetworks, adapters."""

from mmadapt.adapters.polyhistor.config import PolyhistorConfig, PolyhistorLiteConfig
from mmadapt.adapters.polyhistor.model import Polyhistor, PolyhistorLite

__all__ = ["Polyhistor", "PolyhistorConfig", "PolyhistorLite", "PolyhistorLiteConfig"]
