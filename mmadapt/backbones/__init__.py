"""Frozen pretrained backbones (importing this registers them)."""

from mmadapt.backbones.audio import HFAST
from mmadapt.backbones.lm import CausalLM
from mmadapt.backbones.video import HFTimeSformer
from mmadapt.backbones.vision import HFCLIPVision, HFViT, OpenCLIPViT, VisionEncoder, load_vision_encoder

__all__ = ["CausalLM", "HFAST", "HFCLIPVision", "HFTimeSformer", "HFViT", "OpenCLIPViT", "VisionEncoder", "load_vision_encoder"]
