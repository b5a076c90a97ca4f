"""Modality tokenizers: raw inputs → TokenBatch in a shared width (importing this registers them)."""

from mmadapt.tokenizers.base import TokenBatch, Tokenizer
from mmadapt.tokenizers.image import ImagePatchTokenizer
from mmadapt.tokenizers.text import TextTokenizer

__all__ = ["ImagePatchTokenizer", "TextTokenizer", "TokenBatch", "Tokenizer"]
