"""SOLO (Chen et al., 2024): config, image patches, and the adapter."""

from mmadapt.adapters.solo.config import SOLOConfig
from mmadapt.adapters.solo.model import SOLO, SPECIAL_TOKENS, n_image_tokens, visual_layout
from mmadapt.adapters.solo.patches import NativeResolutionProcessor, PatchBatch

__all__ = ["SOLO", "SOLOConfig", "SPECIAL_TOKENS", "NativeResolutionProcessor", "PatchBatch", "n_image_tokens",
           "visual_layout"]
