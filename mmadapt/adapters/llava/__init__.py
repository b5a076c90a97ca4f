"""LLaVA-style projector (Liu et al., 2023 / 2024): config and model."""

from mmadapt.adapters.llava.config import LLaVAProjectorConfig
from mmadapt.adapters.llava.model import LLaVAProjector, build_projector

__all__ = ["LLaVAProjector", "LLaVAProjectorConfig", "build_projector"]
