"""Assemblies of tokenizer / backbone / adapter / head (importing this registers them)."""

from mmadapt.models.adapted_encoder import AdaptedEncoder
from mmadapt.models.all_in_one import AllInOne
from mmadapt.models.base import Assembly
from mmadapt.models.dense_multitask import DenseMultiTask
from mmadapt.models.perceptual_lm import PerceptualLM

__all__ = ["AdaptedEncoder", "AllInOne", "Assembly", "DenseMultiTask", "PerceptualLM"]
