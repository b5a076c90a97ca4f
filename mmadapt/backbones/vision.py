"""Frozen vision encoders: Hugging Face ViT, CLIP-vision, SigLIP-vision and DINOv2, open_clip ViTs.

All expose the same small interface, which is what the adapters need:

- ``preprocess(images: list[PIL.Image]) -> Tensor [B, 3, H, W]`` — the encoder's own preprocessing;
- ``n_prefix_tokens`` — how many tokens come before the patches in every layer's output: 1 for a [CLS]
  (ViT, CLIP, open_clip, DINOv2), 1 + the register tokens for DINOv2 with registers, 0 for SigLIP;
- ``layer_cls(pixel_values) -> Tensor [B, L, D]`` — one summary token after each of the ``L`` transformer
  blocks, passed through the encoder's final LayerNorm (as eP-ALM feeds them to its connector): the [CLS]
  token, or for SigLIP, which has none, the encoder's own attention-pooling head on the normed tokens of
  that layer (the mean of those tokens for a checkpoint without the head);
- ``layer_tokens(pixel_values) -> list[Tensor [B, P+N, D]]`` — every token after each block (no final norm);
- ``hidden_states(pixel_values, layer) -> Tensor [B, P+N, D]`` — every token (the ``P = n_prefix_tokens``
  prefix tokens first, then the N patches) of one layer, indexed like Hugging Face's ``output_hidden_states``
  tuple (0: the embeddings as the first block reads them, k: after block k, negative from the end: -1 the last
  block, -2 the penultimate — LLaVA's choice); no final norm; the blocks above ``layer`` are not run;
- ``hidden_size``, ``num_layers``, ``identity`` (a string naming weights + preprocessing, for caches);
- ``run_blocks(tokens [B, N, D], mask [B, N]) -> (hidden [B, 1+N, D], mask [B, 1+N])`` — the encoder as a
  *shared* transformer for tokens of any modality (Meta-Transformer): its own patch and position embeddings
  are bypassed, its prefix tokens ([CLS] plus its position-0 embedding; DINOv2's registers) are prepended,
  padded tokens are masked out as keys, every block runs, and the final LayerNorm is applied (see
  :class:`~mmadapt.backbones.base.TokenEncoder`; SigLIP has no [CLS] to prepend, so it refuses);
  ``position_table()`` — the patch position embeddings as a grid ``[H, W, D]`` (Any2Point's virtual
  projection reads them).
"""

from __future__ import annotations

import abc
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from mmadapt.backbones.base import DTYPES, TokenEncoder, freeze, loaded_name, run_hf_block
from mmadapt.errors import ConfigError
from mmadapt.names import resolve_name
from mmadapt.registry import register


class VisionEncoder(TokenEncoder, abc.ABC):
    """An image (or video / spectrogram) encoder: its own preprocessing and per-layer outputs, plus the
    shared-encoder interface of :class:`~mmadapt.backbones.base.TokenEncoder` where its blocks allow."""

    #: tokens before the patches in :meth:`layer_tokens` / :meth:`hidden_states` ([CLS], registers)
    n_prefix_tokens: int = 1

    @abc.abstractmethod
    def preprocess(self, images: list[Image.Image]) -> torch.Tensor: ...

    @abc.abstractmethod
    def layer_tokens(self, pixel_values: torch.Tensor) -> list[torch.Tensor]: ...

    @abc.abstractmethod
    def layer_cls(self, pixel_values: torch.Tensor) -> torch.Tensor: ...

    def hidden_states(self, pixel_values: torch.Tensor, layer: int) -> torch.Tensor:
        """Every token of layer ``layer`` (see the module docstring) → ``[B, P+N, D]``, the prefix tokens first."""
        raise ConfigError(f"{type(self).__name__} does not expose one layer's tokens (hidden_states); use an "
                          "image encoder (hf_vit, hf_clip_vision, hf_siglip_vision, hf_dinov2, open_clip)")

    def load(self, source):
        """One input file → what :meth:`preprocess` takes (images: an RGB ``PIL.Image``; video and audio
        encoders read clips and waveforms). Raises :class:`~mmadapt.errors.DataError` naming the file."""
        from mmadapt.io.image import load_image

        return source if isinstance(source, Image.Image) else load_image(source)


class _HFVisionEncoder(VisionEncoder):
    """Shared code of the transformers encoders (ViT, CLIP-, SigLIP-vision, DINOv2): same hidden-state
    conventions."""

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

    def hidden_states(self, pixel_values: torch.Tensor, layer: int) -> torch.Tensor:
        """``out.hidden_states[layer]`` of ``model(pixel_values, output_hidden_states=True)`` → [B, P+N, D],
        computed by running the embeddings and only the blocks up to ``layer`` (nothing above it, and no other
        layer's states kept)."""
        depth = absolute_layer(layer, self.num_layers)
        hidden = self._pre_blocks(self._embeddings(pixel_values.to(self.dtype)))
        for block in self.blocks[:depth]:
            out = block(hidden, None)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def _run_block(self, block: nn.Module, hidden: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        return run_hf_block(block, hidden, key_mask)

    def ffn_output(self, block: nn.Module) -> nn.Module:
        return block.mlp  # ViTLayer / CLIPEncoderLayer / SiglipEncoderLayer: hidden + mlp(norm(hidden))

    @property
    def _embeddings(self) -> nn.Module:
        return self.model.embeddings

    def patch_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``pixel_values`` [B, 3, S, S] → the encoder's own patch embeddings plus their position embeddings
        [B, N, D] (its prefix tokens left out: :meth:`run_blocks` prepends them) — e.g. video frames as tokens."""
        return self._embeddings(pixel_values)[:, self.n_prefix_tokens:]


@register("backbones", "hf_vit")
class HFViT(_HFVisionEncoder):
    """``transformers.ViTModel`` (and DeiT/DINO checkpoints in the ViT format)."""

    @classmethod
    def from_pretrained(cls, name: str, *, dtype: str = "float32", attn_implementation: str = "sdpa",
                        revision: str | None = None, random_init: bool = False, trust_remote_code: bool = False,
                        **_: object) -> "HFViT":
        """``random_init=True``: the same architecture with freshly initialised weights (a baseline)."""
        from transformers import AutoImageProcessor, ViTConfig, ViTModel

        path = resolve_name(name)
        hub = {"revision": revision, "trust_remote_code": trust_remote_code}
        if random_init:
            config = ViTConfig.from_pretrained(path, **hub)
            config._attn_implementation = attn_implementation
            model = ViTModel(config, add_pooling_layer=False).to(DTYPES[dtype])
        else:
            model = ViTModel.from_pretrained(path, add_pooling_layer=False, dtype=DTYPES[dtype],
                                             attn_implementation=attn_implementation, **hub)
        processor = AutoImageProcessor.from_pretrained(path, **hub)
        init = "random" if random_init else (revision or "main")
        return cls.wrap(model, processor, f"{name}@{init}")

    @classmethod
    def wrap(cls, model: nn.Module, processor, name: str) -> "HFViT":
        """An already loaded ``ViTModel`` (frozen in place) and its image processor."""
        return cls(model, processor, model.layernorm, identity=f"hf_vit:{name}")

    @property
    def blocks(self) -> list[nn.Module]:
        layers = self.model.layers if hasattr(self.model, "layers") else self.model.encoder.layer  # transformers 5 / 4
        return list(layers)

    def _prefix_tokens(self) -> torch.Tensor:
        emb = self.model.embeddings
        return emb.cls_token[0] + emb.position_embeddings[0, :1]

    def position_table(self) -> torch.Tensor:
        table = self.model.embeddings.position_embeddings[0, 1:]
        return _as_grid(table, self.model.config.image_size // self.model.config.patch_size)


class _HFVisionTower(_HFVisionEncoder):
    """The vision tower of a two-tower checkpoint (CLIP, SigLIP): ``<Family>VisionModel``, its tower nested as
    ``vision_model`` in transformers 4 and flattened in 5, ``post_layernorm`` as the final norm. A full
    two-tower checkpoint loads its vision tower."""

    #: the backbone kind (the prefix of :attr:`identity`)
    kind: str

    @staticmethod
    def _model_class() -> type:
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, name: str, *, dtype: str = "float32", attn_implementation: str = "sdpa",
                        revision: str | None = None, trust_remote_code: bool = False, **_: object) -> "_HFVisionTower":
        from transformers import AutoImageProcessor

        path = resolve_name(name)
        hub = {"revision": revision, "trust_remote_code": trust_remote_code}
        model = cls._model_class().from_pretrained(path, dtype=DTYPES[dtype], attn_implementation=attn_implementation,
                                                   **hub)
        processor = AutoImageProcessor.from_pretrained(path, **hub)
        return cls.wrap(model, processor, f"{name}@{revision or 'main'}")

    @classmethod
    def wrap(cls, model: nn.Module, processor, name: str) -> "_HFVisionTower":
        """An already loaded vision model (frozen in place) and its image processor."""
        tower = getattr(model, "vision_model", model)
        return cls(model, processor, tower.post_layernorm, identity=f"{cls.kind}:{name}")

    @property
    def _tower(self) -> nn.Module:
        return getattr(self.model, "vision_model", self.model)

    @property
    def _embeddings(self) -> nn.Module:
        return self._tower.embeddings

    @property
    def blocks(self) -> list[nn.Module]:
        tower = self._tower
        return list(tower.layers if hasattr(tower, "layers") else tower.encoder.layers)


@register("backbones", "hf_clip_vision")
class HFCLIPVision(_HFVisionTower):
    """The vision tower of a Hugging Face CLIP checkpoint (``CLIPVisionModel``)."""

    kind = "hf_clip_vision"

    @staticmethod
    def _model_class() -> type:
        from transformers import CLIPVisionModel

        return CLIPVisionModel

    def _prefix_tokens(self) -> torch.Tensor:
        emb = self._tower.embeddings
        return (emb.class_embedding + emb.position_embedding.weight[0])[None]

    def position_table(self) -> torch.Tensor:
        config = self._tower.config
        return _as_grid(self._tower.embeddings.position_embedding.weight[1:], config.image_size // config.patch_size)

    def _pre_blocks(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._tower.pre_layrnorm(hidden)


@register("backbones", "hf_siglip_vision")
class HFSigLIPVision(_HFVisionTower):
    """The vision tower of a SigLIP checkpoint (``SiglipVisionModel``).

    SigLIP has no [CLS] token: every token is a patch (``n_prefix_tokens = 0``), so the LLaVA projector reads
    all of them (as LLaVA-OneVision does with its SigLIP tower). Its image summary is its attention-pooling
    head (``pooler_output``): :meth:`layer_cls` applies that head to each layer's tokens after
    ``post_layernorm`` — for the last layer exactly SigLIP's own pooled output — or, for a checkpoint built
    without the head (``vision_use_head: false``), takes the mean of those normed tokens. Without a [CLS] to
    prepend it cannot serve as a shared encoder (:meth:`run_blocks`)."""

    kind = "hf_siglip_vision"
    n_prefix_tokens = 0

    @staticmethod
    def _model_class() -> type:
        from transformers import SiglipVisionModel

        return SiglipVisionModel

    def layer_cls(self, pixel_values: torch.Tensor) -> torch.Tensor:
        tower = self._tower
        summaries = []
        for hidden in self.layer_tokens(pixel_values):
            normed = tower.post_layernorm(hidden)
            summaries.append(tower.head(normed) if tower.use_head else normed.mean(dim=1))
        return torch.stack(summaries, dim=1)

    def _prefix_tokens(self) -> torch.Tensor:
        raise ConfigError("hf_siglip_vision has no [CLS] token to prepend, so it cannot run external tokens as a "
                          "shared encoder (run_blocks); use hf_vit, hf_clip_vision, hf_dinov2 or open_clip")

    def position_table(self) -> torch.Tensor:
        config = self._tower.config
        return _as_grid(self._embeddings.position_embedding.weight, config.image_size // config.patch_size)


#: the model types :class:`HFDINOv2` reads
DINOV2_TYPES = ("dinov2", "dinov2_with_registers")


@register("backbones", "hf_dinov2")
class HFDINOv2(_HFVisionEncoder):
    """``transformers.Dinov2Model`` and ``Dinov2WithRegistersModel``: [CLS], then the register tokens (if any),
    then the patches; layer scale on both residual branches; ``layernorm`` as the final norm. The position
    embeddings are interpolated to the input's patch grid by the model itself (DINOv2 is pretrained at 518 px
    and its processor crops 224); :meth:`position_table` is the pretrained grid."""

    def __init__(self, model: nn.Module, processor, final_norm: nn.Module, identity: str):
        super().__init__(model, processor, final_norm, identity)
        registers = model.config.num_register_tokens if model.config.model_type == "dinov2_with_registers" else 0
        self.n_prefix_tokens = 1 + registers

    @classmethod
    def from_pretrained(cls, name: str, *, dtype: str = "float32", attn_implementation: str = "sdpa",
                        revision: str | None = None, trust_remote_code: bool = False, **_: object) -> "HFDINOv2":
        from transformers import AutoConfig, AutoImageProcessor, AutoModel

        path = resolve_name(name)
        hub = {"revision": revision, "trust_remote_code": trust_remote_code}
        model_type = AutoConfig.from_pretrained(path, **hub).model_type
        if model_type not in DINOV2_TYPES:
            raise ConfigError(f"{name}: model_type {model_type!r} is not DINOv2 ({', '.join(DINOV2_TYPES)}); pick "
                              "the backbone kind that reads it")
        model = AutoModel.from_pretrained(path, dtype=DTYPES[dtype], attn_implementation=attn_implementation, **hub)
        processor = AutoImageProcessor.from_pretrained(path, **hub)
        return cls.wrap(model, processor, f"{name}@{revision or 'main'}")

    @classmethod
    def wrap(cls, model: nn.Module, processor, name: str) -> "HFDINOv2":
        """An already loaded ``Dinov2Model`` / ``Dinov2WithRegistersModel`` (frozen in place) and its processor."""
        return cls(model, processor, model.layernorm, identity=f"hf_dinov2:{name}")

    @property
    def blocks(self) -> list[nn.Module]:
        return list(self.model.encoder.layer)

    def ffn_output(self, block: nn.Module) -> nn.Module:
        return block.layer_scale2  # Dinov2Layer: hidden + layer_scale2(mlp(norm2(hidden)))

    def _prefix_tokens(self) -> torch.Tensor:
        emb = self.model.embeddings
        cls_token = emb.cls_token[0] + emb.position_embeddings[0, :1]
        return torch.cat([cls_token, emb.register_tokens[0]]) if self.n_prefix_tokens > 1 else cls_token

    def position_table(self) -> torch.Tensor:
        table = self.model.embeddings.position_embeddings[0, 1:]
        return _as_grid(table, round(table.shape[0] ** 0.5))


@register("backbones", "open_clip")
class OpenCLIPViT(VisionEncoder):
    """The visual tower of an open_clip model (``open_clip.create_model_and_transforms``).

    ``name`` is the open_clip architecture (e.g. ``ViT-B-16``) and ``pretrained`` its tag or a local
    checkpoint file (``pretrained=None``: random weights, for benchmarks); or ``name`` is a local directory in
    open_clip's own layout (``open_clip_config.json`` with ``model_cfg`` / ``preprocess_cfg``, and the weights,
    e.g. ``open_clip_model.safetensors``), read through open_clip's ``local-dir:`` schema.
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

        path = resolve_name(name)  # a missing local-looking path: one line here, not open_clip's traceback
        if Path(path).is_dir():
            if not (Path(path) / "open_clip_config.json").is_file():
                raise ConfigError(f"{name}: no open_clip_config.json in this directory (open_clip's local layout)")
            path = f"local-dir:{path}"
        model, _, transform = open_clip.create_model_and_transforms(path, pretrained=pretrained)
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

    def hidden_states(self, pixel_values: torch.Tensor, layer: int) -> torch.Tensor:
        """Layer ``layer``'s tokens → [B, 1+N, D]: 0 is ``ln_pre`` of the embeddings (what the first block reads,
        as Hugging Face CLIP's ``hidden_states[0]``), k ≥ 1 the output of block k (open_clip's
        ``forward_intermediates``, stopping there)."""
        depth = absolute_layer(layer, self.num_layers)
        if depth == 0:
            return self.visual._embeds(pixel_values)
        out = self.visual.forward_intermediates(pixel_values, indices=[depth - 1], stop_early=True,
                                                intermediates_only=True, output_fmt="NLC", output_extra_tokens=True)
        return torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]], dim=1)

    @property
    def blocks(self) -> list[nn.Module]:
        return list(self.visual.transformer.resblocks)

    @property
    def final_norm(self) -> nn.Module:
        return self.visual.ln_post

    def _prefix_tokens(self) -> torch.Tensor:
        return (self.visual.class_embedding + self.visual.positional_embedding[0])[None]

    def position_table(self) -> torch.Tensor:
        return _as_grid(self.visual.positional_embedding[1:], self.visual.grid_size[0], self.visual.grid_size[1])

    def _pre_blocks(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.visual.ln_pre(hidden)

    def ffn_output(self, block: nn.Module) -> nn.Module:
        return block.ls_2  # x + ls_2(mlp(ln_2(x))); ls_2 is an Identity without layer scale

    def _run_block(self, block: nn.Module, hidden: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        # nn.MultiheadAttention takes a float mask [B·heads, L, L]; padding is masked as keys only
        B, L = key_mask.shape
        heads = block.attn.num_heads
        additive = torch.zeros(B, 1, L, dtype=hidden.dtype, device=hidden.device)
        additive.masked_fill_(~key_mask[:, None, :], torch.finfo(hidden.dtype).min)
        return block(hidden, attn_mask=additive.expand(B, L, L).repeat_interleave(heads, dim=0))


def absolute_layer(layer: int, num_layers: int) -> int:
    """A layer index of the ``num_layers + 1`` hidden states (embeddings, then each block; negative counts from
    the end, -1 = the last block) → its index from 0. Raises ``ValueError`` outside ``[-(L+1), L]``."""
    if not -(num_layers + 1) <= layer <= num_layers:
        raise ValueError(f"layer {layer} is outside the encoder's hidden states [-{num_layers + 1}, {num_layers}] "
                         f"(0: embeddings, 1..{num_layers}: after each block, -1: the last block)")
    return layer % (num_layers + 1)


def _as_grid(table: torch.Tensor, rows: int, cols: int | None = None) -> torch.Tensor:
    """Position embeddings of the patches ``[rows · cols, D]`` (row-major) → ``[rows, cols, D]``."""
    cols = rows if cols is None else cols
    if table.shape[0] != rows * cols:
        raise ValueError(f"position table: {table.shape[0]} rows, expected a {rows} × {cols} patch grid")
    return table.reshape(rows, cols, table.shape[-1])


#: the ``model_type`` of a loaded Hugging Face vision model → the backbone kind that can wrap it
WRAPPABLE_VISION = {"vit": "hf_vit", "clip_vision_model": "hf_clip_vision", "siglip_vision_model": "hf_siglip_vision",
                    "dinov2": "hf_dinov2", "dinov2_with_registers": "hf_dinov2"}


def wrap_vision_encoder(model: nn.Module, processor, name: str) -> tuple[str, VisionEncoder]:
    """(kind, encoder) for an already loaded Hugging Face vision model and its processor."""
    from mmadapt import registry

    model_type = getattr(model.config, "model_type", None) if isinstance(model, nn.Module) else None
    if model_type not in WRAPPABLE_VISION:
        raise ConfigError(f"vision: cannot wrap a loaded {type(model).__name__} (model_type {model_type!r}); "
                          f"loaded encoders of types {', '.join(WRAPPABLE_VISION)} can be wrapped, others load by name")
    kind = WRAPPABLE_VISION[model_type]
    return kind, registry.get("backbones", kind).wrap(model, processor, f"{name}@loaded")


def as_vision_encoder(vision, processor=None, name: str | None = None) -> tuple[str, VisionEncoder]:
    """(kind, encoder) from a :class:`VisionEncoder`, a ``(model, processor)`` pair, or a loaded model and its
    ``processor`` (frozen in place; recorded as ``name`` or its ``name_or_path``)."""
    if isinstance(vision, VisionEncoder):
        return vision.identity.split(":", 1)[0], vision
    if isinstance(vision, tuple) and len(vision) == 2:
        vision, processor = vision
    if processor is None:
        raise ConfigError(f"vision: a loaded {type(vision).__name__} needs its image processor (processor=...)")
    return wrap_vision_encoder(vision, processor, name or loaded_name(vision, "vision"))


def load_vision_encoder(kind: str, name: str, **kwargs) -> VisionEncoder:
    from mmadapt import registry

    return registry.get("backbones", kind).from_pretrained(name, **kwargs)
