"""Frozen vision encoders: Hugging Face ViT and CLIP-vision, open_clip ViTs.

All expose the same small interface, which is what the adapters need:

- ``preprocess(images: list[PIL.Image]) -> Tensor [B, 3, H, W]`` — the encoder's own preprocessing;
- ``layer_cls(pixel_values) -> Tensor [B, L, D]`` — the [CLS] token after each of the ``L`` transformer
  blocks, passed through the encoder's final LayerNorm (as eP-ALM feeds them to its connector);
- ``layer_tokens(pixel_values) -> list[Tensor [B, N, D]]`` — every token after each block (no final norm);
- ``hidden_size``, ``num_layers``, ``identity`` (a string naming weights + preprocessing, for caches).
"""

from __future__ import annotations

import abc

import torch
from PIL import Image
from torch import nn

from mmadapt.backbones.base import DTYPES, FrozenBackbone, freeze, resolve_name
from mmadapt.registry import register


class VisionEncoder(FrozenBackbone, abc.ABC):
    hidden_size: int
    num_layers: int
    identity: str

    @abc.abstractmethod
    def preprocess(self, images: list[Image.Image]) -> torch.Tensor: ...

    @abc.abstractmethod
    def layer_tokens(self, pixel_values: torch.Tensor) -> list[torch.Tensor]: ...

    @abc.abstractmethod
    def layer_cls(self, pixel_values: torch.Tensor) -> torch.Tensor: ...

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype


class _HFVisionEncoder(VisionEncoder):
    """Shared code of the transformers encoders (ViT, CLIP-vision): same hidden-state conventions."""

    def __init__(self, model: nn.Module, processor, final_norm: nn.Module, identity: str):
        super().__init__()
        self.model = freeze(model)
        self.processor = processor
        self.final_norm = final_norm
        self.hidden_size = model.config.hidden_size
        self.num_layers = model.config.num_hidden_layers
        self.identity = identity

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        return self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.dtype)

    def layer_tokens(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        out = self.model(pixel_values=pixel_values, output_hidden_states=True)
        return list(out.hidden_states[1:])  # drop the embedding output: one entry per block

    def layer_cls(self, pixel_values: torch.Tensor) -> torch.Tensor:
        cls = torch.stack([h[:, 0] for h in self.layer_tokens(pixel_values)], dim=1)
        return self.final_norm(cls)


@register("backbones", "hf_vit")
class HFViT(_HFVisionEncoder):
    """``transformers.ViTModel`` (and DeiT/DINO checkpoints in the ViT format)."""

    @classmethod
    def from_pretrained(cls, name: str, *, dtype: str = "float32", attn_implementation: str = "sdpa",
                        revision: str | None = None, **_: object) -> "HFViT":
        from transformers import AutoImageProcessor, ViTModel

        path = resolve_name(name)
        model = ViTModel.from_pretrained(path, add_pooling_layer=False, dtype=DTYPES[dtype],
                                         attn_implementation=attn_implementation, revision=revision)
        processor = AutoImageProcessor.from_pretrained(path, revision=revision)
        return cls(model, processor, model.layernorm, identity=f"hf_vit:{name}@{revision or 'main'}")


@register("backbones", "hf_clip_vision")
class HFCLIPVision(_HFVisionEncoder):
    """The vision tower of a Hugging Face CLIP checkpoint (``CLIPVisionModel``)."""

    @classmethod
    def from_pretrained(cls, name: str, *, dtype: str = "float32", attn_implementation: str = "sdpa",
                        revision: str | None = None, **_: object) -> "HFCLIPVision":
        from transformers import AutoImageProcessor, CLIPVisionModel

        path = resolve_name(name)
        model = CLIPVisionModel.from_pretrained(path, dtype=DTYPES[dtype],
                                                attn_implementation=attn_implementation, revision=revision)
        processor = AutoImageProcessor.from_pretrained(path, revision=revision)
        tower = getattr(model, "vision_model", model)  # transformers 5 flattened CLIPVisionModel
        return cls(model, processor, tower.post_layernorm,
                   identity=f"hf_clip_vision:{name}@{revision or 'main'}")


@register("backbones", "open_clip")
class OpenCLIPViT(VisionEncoder):
    """The visual tower of an open_clip model (``open_clip.create_model_and_transforms``).

    ``name`` is the open_clip architecture (e.g. ``ViT-B-16``) and ``pretrained`` its tag or a local
    checkpoint file; ``pretrained=None`` builds random weights (benchmarks, tests).
    """

    def __init__(self, visual: nn.Module, transform, identity: str):
        super().__init__()
        self.visual = freeze(visual)
        self.transform = transform
        self.hidden_size = visual.transformer.width
        self.num_layers = len(visual.transformer.resblocks)
        self.identity = identity

    @classmethod
    def from_pretrained(cls, name: str, *, pretrained: str | None = None, dtype: str = "float32",
                        **_: object) -> "OpenCLIPViT":
        import open_clip

        model, _, transform = open_clip.create_model_and_transforms(name, pretrained=pretrained)
        visual = model.visual.to(DTYPES[dtype])
        return cls(visual, transform, identity=f"open_clip:{name}:{pretrained}")

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([self.transform(img) for img in images]).to(self.dtype)

    def _intermediates(self, pixel_values: torch.Tensor, normalize: bool) -> dict:
        return self.visual.forward_intermediates(
            pixel_values, indices=None, normalize_intermediates=normalize, intermediates_only=True,
            output_fmt="NLC", output_extra_tokens=True,
        )

    def layer_tokens(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        out = self._intermediates(pixel_values, normalize=False)
        return [torch.cat([p, x], dim=1) for p, x in zip(out["image_intermediates_prefix"],
                                                          out["image_intermediates"])]

    def layer_cls(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self._intermediates(pixel_values, normalize=True)  # ln_post on every layer's tokens
        return torch.cat(out["image_intermediates_prefix"], dim=1)


def load_vision_encoder(kind: str, name: str, **kwargs) -> VisionEncoder:
    from mmadapt import registry

    return registry.get("backbones", kind).from_pretrained(name, **kwargs)
