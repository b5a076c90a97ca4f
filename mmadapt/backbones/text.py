"""Frozen text encoders as *shared* token encoders: Hugging Face BERT-family models (BERT, RoBERTa, MiniLM,
...), read through :class:`~mmadapt.backbones.base.TokenEncoder` — Any2Point's 1D source.

``run_blocks`` prepends the encoder's own ``[CLS]`` (its word embedding + its position embedding), adds the
token-type-0 embedding to every token and applies the embedding LayerNorm, exactly as the model's embedding
layer does for text, then runs every block (bidirectional attention, padding masked as keys). BERT-family
layers are post-LN, so there is no final norm. ``position_table()`` is the learned 1D position table of the
content positions after ``[CLS]``, ``[L, D]``.
"""

from __future__ import annotations

import torch
from torch import nn

from mmadapt.backbones.base import DTYPES, TokenEncoder, freeze, run_hf_block
from mmadapt.errors import ConfigError
from mmadapt.names import resolve_name
from mmadapt.registry import register


@register("backbones", "hf_text_encoder")
class HFTextEncoder(TokenEncoder):
    """A bidirectional Hugging Face text encoder (``AutoModel``: ``BertModel``, ``RobertaModel``, ...) whose
    embeddings hold ``word_embeddings``, ``position_embeddings`` and ``token_type_embeddings``."""

    def __init__(self, model: nn.Module, tokenizer, identity: str):
        super().__init__()
        emb = getattr(model, "embeddings", None)
        if emb is None or not all(hasattr(emb, a) for a in ("word_embeddings", "position_embeddings", "LayerNorm")):
            raise ConfigError(f"encoder: {type(model).__name__} is not a BERT-family text encoder "
                              "(needs embeddings.word_embeddings / position_embeddings / LayerNorm)")
        self.model = freeze(model)
        self.tokenizer = tokenizer
        self.hidden_size = model.config.hidden_size
        self.num_layers = model.config.num_hidden_layers
        self.identity = identity
        self.final_norm = nn.Identity()
        # RoBERTa numbers positions from padding_idx + 1; BERT from 0. [CLS] takes the first one.
        self.first_position = model.config.pad_token_id + 1 if model.config.model_type in ("roberta", "xlm-roberta",
                                                                                         "camembert") else 0

    @classmethod
    def from_pretrained(cls, name: str, *, dtype: str = "float32", attn_implementation: str = "sdpa",
                        revision: str | None = None, random_init: bool = False, trust_remote_code: bool = False,
                        **_: object) -> "HFTextEncoder":
        """Load ``name`` (a Hub id, a local directory or a ``zoo:`` name); ``random_init=True`` builds the same
        architecture from its config with freshly initialised weights (a baseline for what pretraining gives)."""
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        path = resolve_name(name)
        hub = {"revision": revision, "trust_remote_code": trust_remote_code}
        if random_init:
            config = AutoConfig.from_pretrained(path, **hub)
            config._attn_implementation = attn_implementation
            model = AutoModel.from_config(config, add_pooling_layer=False,
                                          trust_remote_code=trust_remote_code).to(DTYPES[dtype])
        else:
            # loaded whole (checkpoints hold the pooler), then the pooler is dropped: run_blocks never uses it
            model = AutoModel.from_pretrained(path, dtype=DTYPES[dtype], attn_implementation=attn_implementation,
                                              **hub)
            if getattr(model, "pooler", None) is not None:
                model.pooler = None
        tokenizer = AutoTokenizer.from_pretrained(path, **hub)
        init = "random" if random_init else (revision or "main")
        return cls(model, tokenizer, identity=f"hf_text_encoder:{name}@{init}")

    @property
    def blocks(self) -> list[nn.Module]:
        return list(self.model.encoder.layer)

    def _prefix_tokens(self) -> torch.Tensor:
        emb = self.model.embeddings
        cls_id = self.tokenizer.cls_token_id if self.tokenizer.cls_token_id is not None else self.tokenizer.bos_token_id
        return (emb.word_embeddings.weight[cls_id] + emb.position_embeddings.weight[self.first_position])[None]

    def _pre_blocks(self, hidden: torch.Tensor) -> torch.Tensor:
        emb = self.model.embeddings
        return emb.LayerNorm(hidden + emb.token_type_embeddings.weight[0])

    def position_table(self) -> torch.Tensor:
        return self.model.embeddings.position_embeddings.weight[self.first_position + 1:]

    def _run_block(self, block: nn.Module, hidden: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        return run_hf_block(block, hidden, key_mask)

    def ffn_output(self, block: nn.Module) -> nn.Module:
        return block.output.dense  # post-LN: LayerNorm(dense(intermediate) + attention output)
