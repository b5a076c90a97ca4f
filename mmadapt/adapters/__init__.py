"""Adapters: the only trained parts (importing this registers them)."""

from mmadapt.adapters.any2point import Any2Point, Any2PointConfig
from mmadapt.adapters.base import Adapter
from mmadapt.adapters.bottleneck import BottleneckAdapters, BottleneckConfig
from mmadapt.adapters.dense import DenseAdapter
from mmadapt.adapters.epalm import EPALM, EPALMConfig
from mmadapt.adapters.llava import LLaVAProjector, LLaVAProjectorConfig
from mmadapt.adapters.lora import LoRA, LoRAConfig
from mmadapt.adapters.polyhistor import Polyhistor, PolyhistorConfig, PolyhistorLite, PolyhistorLiteConfig
from mmadapt.adapters.solo import SOLO, SOLOConfig
from mmadapt.adapters.token_rolling import TokenRolling, TokenRollingConfig

__all__ = ["Adapter", "Any2Point", "Any2PointConfig", "BottleneckAdapters", "BottleneckConfig", "DenseAdapter",
           "EPALM", "EPALMConfig", "LLaVAProjector", "LLaVAProjectorConfig", "LoRA", "LoRAConfig", "Polyhistor",
           "PolyhistorConfig", "PolyhistorLite", "PolyhistorLiteConfig", "SOLO", "SOLOConfig", "TokenRolling",
           "TokenRollingConfig"]
