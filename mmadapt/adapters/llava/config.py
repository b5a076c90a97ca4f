"""Configuration of the LLaVA-style projector (Liu et al., 2023; LLaVA-1.5: Liu et al., 2024). Defaults follow
LLaVA-1.5: every patch token of the frozen encoder's penultimate layer through a two-layer GELU MLP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mmadapt.adapters.lora import LoRAConfig
from mmadapt.errors import ConfigError


@dataclass
class LLaVAProjectorConfig:
    """Frozen vision encoder tokens → trained projector → positioned input tokens of the frozen LM, before the text.

    - ``feature_layer``: which of the encoder's hidden states is read, indexed like Hugging Face's
      ``output_hidden_states`` (0: the embeddings, k: after block k; negative from the end: -1 the last block,
      -2 the penultimate, LLaVA's ``mm_vision_select_layer``). No final norm is applied (as LLaVA).
    - ``features``: ``patches`` — all patch tokens, the encoder's prefix tokens ([CLS], DINOv2's registers)
      left out (LLaVA's ``patch``: an image is N LM tokens, e.g. 576 for CLIP ViT-L/14-336; SigLIP has no
      prefix, so all its tokens); ``cls`` — the [CLS] token only (one LM token per image; not for SigLIP).
    - ``projector``: ``linear`` (LLaVA-1: one ``Linear(D_enc, D_lm)``) or ``mlp2x_gelu`` (LLaVA-1.5:
      ``Linear(D_enc, D_lm) → GELU → Linear(D_lm, D_lm)``); ``D_lm`` is the LM's input-embedding width.
    - ``prompt_tuning``: n > 0 adds n trainable virtual tokens, peft's own prompt-tuning embedding
      (``peft.tuners.prompt_tuning.PromptEmbedding``), placed between the image tokens and the text; they
      train at ``train.prompt_lr`` (as eP-ALM's soft prompt). 0 (default): none.
    - ``prompt_init``: peft's ``prompt_tuning_init``: ``random`` (peft's default: N(0, 1) per value, far larger
      than typical word embeddings), ``sample_vocab`` (embeddings of random vocabulary tokens) or ``text``
      (the embeddings of ``prompt_init_text``'s tokens, repeated or cut to n).
    - ``lora``: peft LoRA on the frozen LM (``{r: 8, alpha: 16, target_modules: null}``; null targets: the
      attention's query / value projections), inserted exactly as SOLO does; ``null`` (default): the LM is
      untouched. Its ``name`` key is not used.
    """

    name: str = "llava_projector"
    feature_layer: int = -2
    features: Literal["patches", "cls"] = "patches"
    projector: Literal["linear", "mlp2x_gelu"] = "mlp2x_gelu"
    prompt_tuning: int = 0
    prompt_init: Literal["random", "sample_vocab", "text"] = "random"
    prompt_init_text: str | None = None
    lora: LoRAConfig | None = None

    def validate(self) -> None:
        if self.prompt_tuning < 0:
            raise ConfigError(f"prompt_tuning: expected the number of virtual tokens (>= 0), "
                              f"got {self.prompt_tuning}")
        if self.prompt_init == "text" and not self.prompt_init_text:
            raise ConfigError("prompt_init_text: required with prompt_init: text (the text whose token embeddings "
                              "start the virtual tokens)")
        if self.prompt_init_text is not None and self.prompt_init != "text":
            raise ConfigError(f"prompt_init_text: only used with prompt_init: text, got prompt_init: "
                              f"{self.prompt_init}")
        if self.lora is not None:
            try:
                self.lora.validate()
            except ConfigError as exc:
                raise ConfigError(f"lora.{exc}") from None
