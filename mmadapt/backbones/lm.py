"""Frozen Hugging Face causal LMs — any ``*ForCausalLM`` — with their decoder layers exposed.

Adapters that work inside the LM (eP-ALM injects tokens into chosen layers) need three things beyond
``forward``: the list of decoder layers (to hook), the input embedding (to build ``inputs_embeds``), and,
for models with *learned absolute* position embeddings, that embedding module (so tokens that must carry no
position, such as soft prompts, can have it removed). :class:`CausalLM` finds them in the model itself:

- the input embedding: ``get_input_embeddings()``;
- the decoder layers: the ``nn.ModuleList`` of the base model (``model.base_model``) that holds
  ``num_hidden_layers`` modules (from the model's text config; ``n_layer`` etc. are its aliases);
- a learned absolute position embedding: an ``nn.Embedding`` of the base model other than the input
  embedding with at least ``max_position_embeddings`` rows (OPT's has an offset of 2); rotary and ALiBi models
  have none.

A model where these are not unique (no such layer list, or two) is refused with one line saying what was
found, and so is one whose base model cannot take a 4D attention mask and explicit positions (ALiBi models such
as BLOOM, state-space models such as Mamba). Attention runs as SDPA unless the architecture has no SDPA kernel, in which case it is loaded with the
eager implementation and a warning says so once.
"""

from __future__ import annotations

import copy
import inspect
import logging
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from mmadapt.backbones.base import DTYPES, FrozenBackbone, freeze
from mmadapt.errors import ConfigError
from mmadapt.names import resolve_name
from mmadapt.registry import register

log = logging.getLogger(__name__)
_WARNED_EAGER: set[str] = set()


def as_causal_lm(lm, tokenizer=None) -> "CausalLM":
    """A :class:`CausalLM` from one, from a ``(model, tokenizer)`` pair, or from a loaded model and ``tokenizer``
    (frozen in place)."""
    if isinstance(lm, CausalLM):
        return lm
    if isinstance(lm, tuple) and len(lm) == 2:
        lm, tokenizer = lm
    if not isinstance(lm, PreTrainedModel) or tokenizer is None:
        missing = "" if tokenizer is not None else " without a tokenizer"
        raise ConfigError(f"lm: expected a loaded *ForCausalLM with its tokenizer (lm=model, tokenizer=tok, or "
                          f"lm=(model, tok)), got {type(lm).__name__}{missing}")
    return CausalLM(lm, tokenizer)


def check_causal_lm_source(name: str, path: str, *, trust_remote_code: bool = False,
                           revision: str | None = None) -> None:
    """Refuse, from its ``config.json`` alone (before any weights load), a directory that holds no causal LM:
    no config at all, or a model type transformers has no ``*ForCausalLM`` for (a ViT given as the LM)."""
    local = Path(path)
    if local.is_dir() and not (local / "config.json").is_file():
        raise ConfigError(f"{name}: {path} holds no config.json, so no Hugging Face model")
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)
    remote = "AutoModelForCausalLM" in (getattr(config, "auto_map", None) or {})
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not remote:
        what = ", ".join(config.architectures or []) or f"model_type {config.model_type!r}"
        raise ConfigError(f"{name}: holds a {what}, not a causal LM (the LM must load with AutoModelForCausalLM)")


def check_tokenizer(name: str, tokenizer: PreTrainedTokenizerBase) -> None:
    """A tokenizer without an end-of-sequence token cannot end an answer (nor pad a batch without a pad token)."""
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"{name}: its tokenizer has no eos_token, so no answer could end; set eos_token (and "
                          f"pad_token) in its tokenizer_config.json or on the tokenizer")


def check_readable(model: PreTrainedModel) -> None:
    """mmadapt runs the base model on ``inputs_embeds`` with a 4D attention mask and explicit positions; an
    architecture whose base model takes no ``position_ids`` / ``attention_mask`` (ALiBi models such as BLOOM,
    state-space models such as Mamba) cannot be run that way."""
    params = inspect.signature(model.base_model.forward).parameters
    missing = [p for p in ("inputs_embeds", "attention_mask", "position_ids") if p not in params]
    if missing:
        raise ConfigError(f"model.lm: architecture {model.config.model_type!r} cannot be used: its base model takes no "
                          f"{' / '.join(missing)} (mmadapt runs the LM on input embeddings with a 4D attention mask "
                          "and explicit positions, which ALiBi and state-space models do not read)")


def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The base model's list of ``num_hidden_layers`` decoder layers."""
    n = model.config.get_text_config().num_hidden_layers
    found = [(name, mod) for name, mod in model.base_model.named_modules()
             if isinstance(mod, nn.ModuleList) and len(mod) == n]
    if len(found) != 1:
        kind = model.config.model_type
        what = ", ".join(name for name, _ in found) or "none"
        raise ConfigError(f"model.lm: cannot tell the decoder layers of architecture {kind!r}: expected one module "
                          f"list of num_hidden_layers={n} layers in its base model, found {what}")
    return found[0][1]


def learned_position_embedding(model: PreTrainedModel) -> nn.Embedding | None:
    """The base model's learned absolute position embedding, or None (rotary, ALiBi, no positions)."""
    cfg = model.config.get_text_config()
    max_positions = getattr(cfg, "max_position_embeddings", None)  # n_positions / n_ctx are aliases of it
    if not max_positions:
        return None
    words = model.get_input_embeddings()
    found = [mod for mod in model.base_model.modules()
             if isinstance(mod, nn.Embedding) and mod is not words and mod.num_embeddings >= max_positions]
    if len(found) > 1:
        raise ConfigError(f"model.lm: architecture {model.config.model_type!r} has {len(found)} embeddings that could "
                          "be its position embedding; expected at most one")
    return found[0] if found else None


@register("backbones", "hf_causal_lm")
class CausalLM(FrozenBackbone):
    """A frozen causal LM and its tokenizer.

    Attributes: ``model`` (the HF ``*ForCausalLM``), ``tokenizer``, ``layers`` (decoder layers, in order),
    ``hidden_size``, ``num_layers``, ``position_embedding`` (module or None).
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase):
        super().__init__()
        check_tokenizer(model.config.name_or_path or type(model).__name__, tokenizer)
        check_readable(model)
        self.layers: nn.ModuleList = decoder_layers(model)
        self.position_embedding: nn.Embedding | None = learned_position_embedding(model)
        self.model = freeze(model)
        self.tokenizer = tokenizer
        text_config = model.config.get_text_config()
        self.hidden_size: int = text_config.hidden_size
        self.num_layers: int = len(self.layers)
        # sliding-window attention: the window, and whether every layer slides (else the layer types are mixed)
        layer_types = list(getattr(text_config, "layer_types", None) or [])
        window = getattr(text_config, "sliding_window", None)
        sliding = [t == "sliding_attention" for t in layer_types] if layer_types else [window is not None]
        self.sliding_window: int | None = window if window is not None and any(sliding) else None
        self.all_layers_slide: bool = all(sliding)
        if tokenizer.pad_token_id is None:  # GPT-2 & Llama ship without a pad token: pad with eos, on a copy
            self.tokenizer = tokenizer = copy.deepcopy(tokenizer)  # (the caller's tokenizer is left as it was)
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
        check_causal_lm_source(name, path, trust_remote_code=trust_remote_code, revision=revision)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)
        check_tokenizer(name, tokenizer)
        kwargs = dict(dtype=DTYPES[dtype], trust_remote_code=trust_remote_code, revision=revision)
        try:
            model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=attn_implementation, **kwargs)
        except ValueError as exc:  # an architecture without an SDPA kernel
            if attn_implementation != "sdpa" or "scaled_dot_product_attention" not in str(exc):
                raise
            model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", **kwargs)
            warn_eager(model.config.model_type)
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
        transformers uses as is; its queries are the last L of the K columns. For a model with sliding-window
        layers the window is applied here (a key more than ``sliding_window - 1`` columns before its query is
        blocked, as transformers' own sliding mask does): to every layer when all slide, else through the
        per-layer-type mask mapping (``{"full_attention": ..., "sliding_attention": ...}``). ``position_ids``
        [B, L]. Returns the base model's output (last_hidden_state, past_key_values); a cache must come from
        :meth:`new_cache`.
        """
        return self.model.base_model(
            inputs_embeds=inputs_embeds,
            attention_mask=self._layer_masks(attention_mask),
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
        )

    def _layer_masks(self, mask: torch.Tensor):
        if self.sliding_window is None:
            return mask
        Q, K = mask.shape[-2:]
        q = torch.arange(K - Q, K, device=mask.device)[:, None]
        k = torch.arange(K, device=mask.device)[None, :]
        windowed = mask.masked_fill(q - k >= self.sliding_window, torch.finfo(mask.dtype).min)
        return windowed if self.all_layers_slide else {"full_attention": mask, "sliding_attention": windowed}

    def new_cache(self):
        """A KV cache for :meth:`hidden_states`. With sliding-window layers every layer keeps all its keys
        (the window is in the mask, whose key columns must match the cache's), otherwise the model's own."""
        from transformers import DynamicCache

        return DynamicCache() if self.sliding_window is not None else DynamicCache(config=self.model.config)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head on chosen hidden states [..., D] → [..., V]."""
        return self.output_embeddings(hidden)


def warn_eager(model_type: str) -> None:
    """Say once per architecture that it runs with eager attention (it has no SDPA kernel)."""
    if model_type not in _WARNED_EAGER:
        _WARNED_EAGER.add(model_type)
        log.warning("model.lm: %s has no SDPA attention in transformers; running it with eager attention",
                    model_type)
