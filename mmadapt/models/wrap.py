"""Bring your own model: :func:`wrap` turns Hugging Face objects already loaded in Python into a trainable
:class:`~mmadapt.models.perceptual_lm.PerceptualLM` — the analogue of peft's ``get_peft_model``::

    lm = AutoModelForCausalLM.from_pretrained(...); tok = AutoTokenizer.from_pretrained(...)
    vit = ViTModel.from_pretrained(..., add_pooling_layer=False); proc = AutoImageProcessor.from_pretrained(...)
    model = mmadapt.wrap(lm, {"name": "epalm", "n_injected": 6}, tokenizer=tok, vision=vit, processor=proc)
    mmadapt.train(cfg, model=model)             # config.yaml records these backbones and this adapter
    model.save_pretrained("adapter")
    again = PerceptualLM.from_pretrained("adapter", lm=(lm, tok), vision=(vit, proc))   # or by their names

The LM and the encoder are frozen in place (``requires_grad`` off, eval mode), as peft freezes its base model;
a tokenizer without a pad token is copied before eos becomes its pad token. The assembly's config names the
backbones by their ``name_or_path`` (or ``lm_name`` / ``vision_name``), so a run's ``config.yaml`` and the
adapter's ``adapter_config.json`` say what was trained. Wrapping an LM a second time replaces the earlier
wrap's hooks and LoRA layers instead of stacking them (the earlier assembly must not be used afterwards).
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import torch
from torch import nn

from mmadapt.adapters.lora import remove_lora
from mmadapt.backbones.base import DTYPES, loaded_name
from mmadapt.backbones.lm import as_causal_lm
from mmadapt.backbones.vision import as_vision_encoder
from mmadapt.config import ModelConfig, build_typed, to_plain
from mmadapt.models.perceptual_lm import PerceptualLM

log = logging.getLogger(__name__)

#: each wrapped Hugging Face LM → the assembly that holds it (one at a time: a new wrap replaces it)
_WRAPPED: "weakref.WeakKeyDictionary[nn.Module, PerceptualLM]" = weakref.WeakKeyDictionary()


def _dtype_name(dtype: torch.dtype) -> str:
    return next(k for k, v in DTYPES.items() if v == dtype)


def wrap(lm: Any, adapter: Any, *, tokenizer: Any = None, vision: Any = None, processor: Any = None,
         lm_name: str | None = None, vision_name: str | None = None, seed: int = 0) -> PerceptualLM:
    """A trainable perceptual LM around loaded backbones: ``lm`` (a ``*ForCausalLM`` with ``tokenizer``, a
    ``(model, tokenizer)`` pair or a :class:`CausalLM`), ``vision`` (a ``ViTModel`` / ``CLIPVisionModel`` /
    ``SiglipVisionModel`` / ``Dinov2Model`` with ``processor``, a pair, or a :class:`VisionEncoder`; not needed by SOLO) and ``adapter`` (its config: a
    mapping such as ``{"name": "epalm"}`` or an adapter config object). The trained parts are initialised
    under ``torch.manual_seed(seed)``."""
    frozen_lm = as_causal_lm(lm, tokenizer)
    adapter_raw = adapter if isinstance(adapter, dict) else to_plain(adapter)
    raw: dict[str, Any] = {"assembly": "perceptual_lm", "adapter": adapter_raw,
                           "lm": {"name": lm_name or loaded_name(frozen_lm.model, "lm"), "kind": "hf_causal_lm",
                                  "dtype": _dtype_name(frozen_lm.dtype)}}
    encoder = None
    if vision is not None:
        kind, encoder = as_vision_encoder(vision, processor, vision_name)
        name = vision_name or (encoder.identity.split(":", 1)[1].rsplit("@", 1)[0])
        raw["vision"] = {"name": name, "kind": kind, "dtype": _dtype_name(encoder.dtype)}
    config: ModelConfig = build_typed(ModelConfig, raw, "model")
    previous = _WRAPPED.get(frozen_lm.model)
    if previous is not None:  # one adapter per LM: the earlier wrap's hooks and LoRA layers go first
        previous.adapter.detach()
        remove_lora(frozen_lm.model)
        log.warning("mmadapt.wrap: this LM was wrapped before; the earlier assembly's hooks and LoRA layers are "
                    "removed (do not use it any more)")
    torch.manual_seed(seed)
    model = PerceptualLM.from_config(config, lm=frozen_lm, vision=encoder)
    _WRAPPED[frozen_lm.model] = model
    return model
