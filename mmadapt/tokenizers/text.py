"""Text → token embeddings through a Hugging Face tokenizer and an embedding table (usually the LM's)."""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedTokenizerBase

from mmadapt.registry import register
from mmadapt.tokenizers.base import TokenBatch, Tokenizer


@register("tokenizers", "text")
class TextTokenizer(Tokenizer):
    """``list[str]`` → right-padded ``tokens`` [B, N, D], ``mask`` [B, N], ``coords`` = position [B, N, 1]."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, embedding: nn.Embedding, max_length: int | None = None):
        super().__init__()
        self.tokenizer, self.embedding, self.max_length = tokenizer, embedding, max_length
        self.dim = embedding.embedding_dim

    def forward(self, texts: list[str]) -> TokenBatch:
        if isinstance(texts, str) or not texts:
            raise ValueError(f"text tokenizer: expected a non-empty list of strings, got {texts!r:.40}")
        enc = self.tokenizer(texts, padding=True, truncation=self.max_length is not None,
                             max_length=self.max_length, return_tensors="pt")
        ids = enc["input_ids"].to(self.embedding.weight.device)
        mask = enc["attention_mask"].to(ids.device).bool()
        positions = (mask.long().cumsum(dim=1) - 1).clamp(min=0).unsqueeze(-1)
        return TokenBatch(self.embedding(ids), mask, positions)
