"""Frozen pretrained backbones (importing this registers them)."""

from mmadapt.backbones.audio import HFAST
from mmadapt.backbones.base import TokenEncoder
from mmadapt.backbones.lm import CausalLM
from mmadapt.backbones.swin import HFSwin
from mmadapt.backbones.text import HFTextEncoder
from mmadapt.backbones.video import HFTimeSformer
from mmadapt.backbones.vision import HFCLIPVision, HFViT, OpenCLIPViT, VisionEncoder, load_vision_encoder

__all__ = ["CausalLM", "HFAST", "HFCLIPVision", "HFSwin", "HFTextEncoder", "HFTimeSformer", "HFViT", "OpenCLIPViT",
           "TokenEncoder", "VisionEncoder", "load_vision_encoder"]
