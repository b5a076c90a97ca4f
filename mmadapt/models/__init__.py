"""Assemblies of tokenizer / backbone / adapter / head (importing this registers them)."""

from mmadapt.models.perceptual_lm import PerceptualLM

__all__ = ["PerceptualLM"]
