"""Frozen pretrained backbones (importing this registers them)."""

from mmadapt.backbones.lm import CausalLM
from mmadapt.backbones.vision import HFCLIPVision, HFViT, OpenCLIPViT, VisionEncoder, load_vision_encoder

__all__ = ["CausalLM", "HFCLIPVision", "HFViT", "OpenCLIPViT", "VisionEncoder", "load_vision_encoder"]
