"""LLaVA-style projector: the frozen vision encoder's tokens, projected into the frozen LM's input sequence.

The LM input of a sample is::

    [image tokens] [virtual tokens (prompt_tuning)] [text (left-padded)]

- image tokens: the encoder's hidden states of ``feature_layer`` (default -2, the penultimate block, as
  LLaVA), either every patch token ([CLS] / registers left out, ``features: patches``: N tokens per image,
  LLaVA) or the [CLS] token alone (``features: cls``: 1 token), through the projector (``linear``: LLaVA-1;
  ``mlp2x_gelu``: LLaVA-1.5) to the LM's input-embedding width. The encoder runs under ``torch.no_grad()``:
  nothing below the projector trains and no graph is kept;
- virtual tokens: ``prompt_tuning`` trainable input embeddings, peft's ``PromptEmbedding`` (built from a
  ``PromptTuningConfig``, initialised as peft does: random, sampled vocabulary or a text's tokens);
- every column is a real, positioned token (:class:`~mmadapt.adapters.base.InputPrefix` with
  ``positioned=True``): the image tokens take positions 0..K-1 and the text continues after them, as in
  LLaVA, where the image tokens replace an ``<image>`` placeholder inside the sequence. Every image has the
  same number of tokens, so there is no padding inside the prefix.

With ``lora``, peft LoRA layers are inserted into the frozen LM at construction
(:func:`~mmadapt.adapters.lora.inject_lora`, as SOLO does; they start as the identity, B = 0).
Trained: the projector, the virtual tokens and the LoRA A / B; the loss covers the text only.
"""

from __future__ import annotations

import tempfile

import torch
from torch import nn

from mmadapt.adapters.base import InputPrefix, PerceptualAdapter
from mmadapt.adapters.llava.config import LLaVAProjectorConfig
from mmadapt.adapters.lora import inject_lora
from mmadapt.backbones.lm import CausalLM
from mmadapt.backbones.vision import absolute_layer
from mmadapt.errors import ConfigError
from mmadapt.registry import register


def build_projector(kind: str, encoder_dim: int, lm_dim: int) -> nn.Module:
    """``linear``: ``Linear(D_enc, D_lm)``; ``mlp2x_gelu``: ``Linear(D_enc, D_lm) → GELU → Linear(D_lm, D_lm)``
    (LLaVA's ``mm_projector`` layouts, so the state-dict names match: ``weight`` / ``0.weight``, ``2.weight``)."""
    if kind == "linear":
        return nn.Linear(encoder_dim, lm_dim)
    if kind == "mlp2x_gelu":
        return nn.Sequential(nn.Linear(encoder_dim, lm_dim), nn.GELU(), nn.Linear(lm_dim, lm_dim))
    raise ConfigError(f"model.adapter.projector: expected linear or mlp2x_gelu, got {kind!r}")


def build_prompt(config: LLaVAProjectorConfig, lm: CausalLM, dim: int) -> nn.Module:
    """peft's prompt-tuning embedding of ``config.prompt_tuning`` virtual tokens of width ``dim``, initialised
    from ``lm``'s input embeddings as ``config.prompt_init`` says. peft reads the ``text`` init's tokenizer by
    name: the LM's tokenizer is written to a temporary folder for it (no download, any tokenizer)."""
    from peft import PromptEmbedding, PromptTuningConfig

    fields = {"task_type": "CAUSAL_LM", "num_virtual_tokens": config.prompt_tuning, "token_dim": dim,
              "num_transformer_submodules": 1, "num_layers": lm.num_layers,
              "num_attention_heads": getattr(lm.model.config, "num_attention_heads", None),
              "prompt_tuning_init": config.prompt_init.upper()}
    word_embeddings = lm.input_embeddings
    if config.prompt_init != "text":
        return PromptEmbedding(PromptTuningConfig(**fields), word_embeddings)
    with tempfile.TemporaryDirectory(prefix="mmadapt-prompt-init-") as folder:
        lm.tokenizer.save_pretrained(folder)
        peft_config = PromptTuningConfig(**fields, prompt_tuning_init_text=config.prompt_init_text,
                                         tokenizer_name_or_path=folder)
        return PromptEmbedding(peft_config, word_embeddings)


@register("adapters", "llava_projector")
class LLaVAProjector(PerceptualAdapter):
    """The trained part: ``projector`` (``D_enc → D_lm``), ``prompt`` (peft ``PromptEmbedding``, with
    ``prompt_tuning``) and ``lora`` (the LoRA layers inside ``lm``, with ``config.lora``)."""

    config_class = LLaVAProjectorConfig

    def __init__(self, config: LLaVAProjectorConfig, lm: CausalLM, vision=None):
        super().__init__()
        encoder_dim, encoder_layers = vision.hidden_size, vision.num_layers
        try:
            absolute_layer(config.feature_layer, encoder_layers)
        except ValueError as exc:
            raise ConfigError(f"model.adapter.feature_layer: {exc}") from None
        if config.features == "cls" and vision.n_prefix_tokens == 0:
            raise ConfigError(f"model.adapter.features: 'cls' needs an encoder with a [CLS] token; "
                              f"{type(vision).__name__} has none (use 'patches')")
        self.config = config
        self.input_dim = lm.input_embeddings.embedding_dim  # OPT-350m: 512, projected to 1024 inside the LM
        self.projector = build_projector(config.projector, encoder_dim, self.input_dim)
        self.prompt = build_prompt(config, lm, self.input_dim) if config.prompt_tuning else None
        self.lora = inject_lora(config.lora, lm.model, "model.adapter.lora") if config.lora is not None else None

    # ------------------------------------------------------------------------------ PerceptualLM contract
    def image_features(self, vision, pixel_values: torch.Tensor) -> torch.Tensor:
        """The frozen encoder's tokens that are projected, [B, N, D_enc] (``patches``: every token after the
        encoder's prefix — [CLS], registers; SigLIP has none) or [B, 1, D_enc] (``cls``), computed without a graph."""
        with torch.no_grad():
            hidden = vision.hidden_states(pixel_values.to(vision.dtype), self.config.feature_layer)  # [B, P+N, D]
        return hidden[:, :1] if self.config.features == "cls" else hidden[:, vision.n_prefix_tokens:]

    def perceive(self, vision, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pixels [B, 3, H, W] → image tokens [B, K, D_lm] (K = N patches, or 1 for ``cls``)."""
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
            got = type(pixel_values).__name__ + (f" of shape {list(pixel_values.shape)}"
                                                 if hasattr(pixel_values, "shape") else "")
            raise TypeError(f"llava_projector reads images as pixel_values [B, 3, H, W], got {got}")
        features = self.image_features(vision, pixel_values)
        weight = next(self.projector.parameters())
        return self.projector(features.to(device=weight.device, dtype=weight.dtype))

    def input_prefix(self, perception: torch.Tensor | None, batch_size: int, dtype: torch.dtype,
                     device: torch.device) -> InputPrefix:
        """Image tokens then virtual tokens, [B, K (+ n), D], every column real and positioned."""
        if perception is None:
            raise ValueError("llava_projector: the image tokens need the batch's pixel_values (perception is None)")
        if perception.shape[0] != batch_size:
            raise ValueError(f"llava_projector: {perception.shape[0]} images for {batch_size} texts")
        columns = [perception.to(device=device, dtype=dtype)]
        if self.prompt is not None:
            ids = torch.arange(self.config.prompt_tuning, device=self.prompt.embedding.weight.device)
            columns.append(self.prompt(ids).to(device=device, dtype=dtype).unsqueeze(0).expand(batch_size, -1, -1))
        embeds = torch.cat(columns, dim=1)
        valid = torch.ones(embeds.shape[:2], dtype=torch.long, device=device)
        return InputPrefix(embeds, valid, positioned=True)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """The virtual tokens train at ``train.prompt_lr`` (group ``prompt``), the rest at ``train.lr``."""
        groups = {"default": [p for name, p in self.named_parameters() if not name.startswith("prompt.")]}
        if self.prompt is not None:
            groups["prompt"] = list(self.prompt.parameters())
        return groups

    def n_tokens(self, num_patches: int) -> int:
        """LM columns before the text for an encoder of ``num_patches`` patch tokens."""
        return (1 if self.config.features == "cls" else num_patches) + self.config.prompt_tuning
