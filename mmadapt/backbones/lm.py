"""Frozen Hugging Face causal LMs (OPT, GPT-2, Llama-family, ...) with their decoder layers exposed.

Adapters that work inside the LM (eP-ALM injects tokens into chosen layers) need three things beyond
``forward``: the list of decoder layers (to hook), the input embedding (to build ``inputs_embeds``), and,
for models with *learned absolute* position embeddings, that embedding module (so tokens that must carry no
position, such as soft prompts, can have it removed). :class:`CausalLM` finds them for the architectures
below; a new family needs one entry in ``_LAYOUTS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from mmadapt.backbones.base import DTYPES, FrozenBackbone, freeze
from mmadapt.errors import ConfigError
from mmadapt.names import resolve_name
from mmadapt.registry import register


@dataclass(frozen=True)
class _Layout:
    layers: str  # attribute path of the decoder-layer ModuleList, from the *base* model
    positions: str | None  # learned absolute position embedding, or None (rotary / none)


_LAYOUTS: dict[str, _Layout] = {
    "opt": _Layout("decoder.layers", "decoder.embed_positions"),
    "gpt2": _Layout("h", "wpe"),
    "gpt_neo": _Layout("h", "wpe"),
    "llama": _Layout("layers", None),
    "mistral": _Layout("layers", None),
    "qwen2": _Layout("layers", None),
    "qwen3": _Layout("layers", None),
    "gemma": _Layout("layers", None),
    "phi3": _Layout("layers", None),
}


def _getattr_path(obj: object, path: str) -> nn.Module:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[return-value]


@register("backbones", "hf_causal_lm")
class CausalLM(FrozenBackbone):
    """A frozen causal LM and its tokenizer.

    Attributes: ``model`` (the HF ``*ForCausalLM``), ``tokenizer``, ``layers`` (decoder layers, in order),
    ``hidden_size``, ``num_layers``, ``position_embedding`` (module or None).
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase):
        super().__init__()
        model_type = model.config.model_type
        if model_type not in _LAYOUTS:
            raise ConfigError(
                f"model.lm: architecture {model_type!r} has no layer layout in mmadapt.backbones.lm "
                f"(supported: {', '.join(sorted(_LAYOUTS))})"
            )
        self.model = freeze(model)
        self.tokenizer = tokenizer
        layout = _LAYOUTS[model_type]
        base = model.base_model
        self.layers: nn.ModuleList = _getattr_path(base, layout.layers)  # type: ignore[assignment]
        self.position_embedding: nn.Module | None = (
            _getattr_path(base, layout.positions) if layout.positions else None
        )
        self.hidden_size: int = model.config.hidden_size
        self.num_layers: int = len(self.layers)
        if tokenizer.pad_token_id is None:  # GPT-2 & Llama ship without a pad token
            tokenizer.pad_token = tokenizer.eos_token

    @classmethod
    def from_pretrained(
        cls,
        name: str,
        *,
        dtype: str = "float32",
        attn_implementation: str = "sdpa",
        trust_remote_code: bool = False,
        revision: str | None = None,
    ) -> "CausalLM":
        """Load by Hugging Face id, local path or ``zoo:`` name (through ``AutoModelForCausalLM``)."""
        path = resolve_name(name)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=DTYPES[dtype],
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
            revision=revision,
        )
        return cls(model, tokenizer)

    # ------------------------------------------------------------------------------------------ parts
    @property
    def input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    @property
    def output_embeddings(self) -> nn.Module:
        return self.model.get_output_embeddings()

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def hidden_states(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past_key_values=None,
        use_cache: bool = False,
    ):
        """Run the decoder stack (no LM head) on ``inputs_embeds`` [B, L, D].

        ``attention_mask`` is a ready 4D additive mask [B, 1, L, K] (0 = attend, dtype-min = blocked), which
        transformers uses as is; ``position_ids`` [B, L]. Returns the base model's output (last_hidden_state,
        past_key_values).
        """
        return self.model.base_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
        )

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head on chosen hidden states [..., D] → [..., V]."""
        return self.output_embeddings(hidden)
