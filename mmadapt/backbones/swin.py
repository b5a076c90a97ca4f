"""A frozen hierarchical vision backbone: Hugging Face Swin Transformer (``transformers.SwinModel``).

Polyhistor-style multi-task dense prediction puts an adapter in every Swin block and decodes the four stage
feature maps. :class:`HFSwin` exposes exactly that, without adapters touching transformers internals:

- ``preprocess(images: list[PIL.Image]) -> Tensor [B, 3, H, W]`` — the checkpoint's own image processor
  (resized to its size); ``load(path) -> PIL.Image`` (RGB, via :func:`mmadapt.io.image.load_image`);
- ``forward(pixel_values [B, 3, H, W]) -> list[Tensor [B, C_s, H_s, W_s]]`` — the four (``len(depths)``) stage
  maps, taken *before* each stage's patch merging: strides ``patch_size · 2**s`` (4 / 8 / 16 / 32 for patch
  4), widths ``hidden_sizes[s] = embed_dim · 2**s`` (``s`` = 0 .. S-1, the stage index of :meth:`blocks`).
  Stages 0 .. S-2 are the raw residual stream after the stage's last block (a ``SwinModel`` has no norm
  there; ``SwinBackbone``'s per-stage norms are new, untrained weights); the last stage has gone through the
  model's final ``layernorm`` (the only channel LayerNorm a ``SwinModel`` has at a stage output: it is exactly
  ``last_hidden_state`` reshaped to a map);
- ``blocks() -> [(stage, SwinLayer), ...]`` in forward order; ``set_block_hook(fn)`` rewrites every block's
  output ``fn(index, stage, hidden [B, L, C]) -> [B, L, C]`` (``L = H_s · W_s`` tokens, row-major), after the
  block's residuals and before the next block / the patch merging. Stage maps are read after the hook.

Input sizes: height and width must be multiples of ``patch_size · 2**(S-1)`` (so every stage map is an exact
downsampling of the input, with no patch-embedding or patch-merging padding) and give a last-stage map of at
least ``window_size`` on each side (Hugging Face Swin cannot run a window larger than its feature map: its
relative position bias is sized for ``window_size``). Other sizes raise :class:`~mmadapt.errors.ConfigError`
naming the shape. Stage maps that are not a multiple of ``window_size`` (e.g. 512² input with window 7) are
padded to whole windows inside each block, as the original Swin does; a stage map exactly ``window_size``
wide uses one window and no shift (Hugging Face's rule, which matches how the 224² checkpoints were trained).
Hugging Face's blocks keep such a shrunken window / dropped shift for later calls; :meth:`HFSwin.forward`
restores the built values first, so its outputs depend on the input alone, never on earlier input sizes.
"""

from __future__ import annotations

import torch
from PIL import Image
from torch import nn

from mmadapt.backbones.base import DTYPES, HierarchicalEncoder, StageBlockHook, freeze
from mmadapt.errors import ConfigError
from mmadapt.names import resolve_name
from mmadapt.registry import register

__all__ = ["HFSwin"]


#: ImageNet statistics: what Swin checkpoints use, the default when a checkpoint ships no image processor
_IMAGENET_MEAN = [0.485, 0.456, 0.406]
_IMAGENET_STD = [0.229, 0.224, 0.225]


def _pair(value) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, (list, tuple)) else (int(value), int(value))


def _default_processor(image_size: tuple[int, int]):
    from transformers import ViTImageProcessor

    return ViTImageProcessor(do_resize=True, size={"height": image_size[0], "width": image_size[1]}, resample=3,
                             do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                             image_mean=_IMAGENET_MEAN, image_std=_IMAGENET_STD)


@register("backbones", "hf_swin")
class HFSwin(HierarchicalEncoder):
    """``transformers.SwinModel`` (any size; Hub id, local path or ``zoo:`` name) as a frozen multi-scale
    backbone with a hook on every block. See the module docstring for the exact outputs."""

    def __init__(self, model: nn.Module, image_processor, identity: str):
        super().__init__()
        self.model = freeze(model)
        self.image_processor = image_processor
        config = model.config
        self.identity = identity
        self.depths: list[int] = [int(d) for d in config.depths]
        self.hidden_sizes: list[int] = [int(config.embed_dim * 2**s) for s in range(len(self.depths))]
        self.patch_size = _pair(config.patch_size)
        self.image_size = _pair(config.image_size)
        self.window_size = int(config.window_size)
        #: input pixels per stage-map cell, per stage (4 / 8 / 16 / 32 for patch 4; the height's for a
        #: non-square patch)
        self.strides: list[int] = [self.patch_size[0] * 2**s for s in range(len(self.depths))]
        self._block_hook: StageBlockHook | None = None
        self._handles = []
        self._layers: list[tuple[int, nn.Module]] = []
        #: (window_size, shift_size) each block is built with; HF clamps and keeps them per input size
        self._windows: list[tuple[int, int]] = []
        for stage, stage_module in enumerate(model.encoder.layers):
            for i, block in enumerate(stage_module.blocks):
                self._layers.append((stage, block))
                self._windows.append((self.window_size, 0 if i % 2 == 0 else self.window_size // 2))
        if [len(s.blocks) for s in model.encoder.layers] != self.depths:
            raise ConfigError(f"hf_swin {identity}: the model's stages have "
                              f"{[len(s.blocks) for s in model.encoder.layers]} blocks, its config says {self.depths}")
        for index, (stage, block) in enumerate(self._layers):
            self._handles.append(block.register_forward_hook(self._make_hook(index, stage)))

    @classmethod
    def from_pretrained(cls, name: str, *, dtype: str = "float32", attn_implementation: str = "sdpa",
                        revision: str | None = None, random_init: bool = False, trust_remote_code: bool = False,
                        **_: object) -> "HFSwin":
        """``name``: a Hub id (e.g. ``microsoft/swin-tiny-patch4-window7-224``), a local directory or a ``zoo:``
        name. ``random_init=True``: the same architecture with freshly initialised weights (a baseline; seed
        torch first for reproducible weights). A checkpoint without an image processor gets ImageNet mean /
        std and a resize to the config's ``image_size``."""
        from transformers import AutoImageProcessor, SwinConfig, SwinModel

        if dtype not in DTYPES:
            raise ConfigError(f"hf_swin: dtype {dtype!r}; expected one of {sorted(DTYPES)}")
        path = resolve_name(name)
        hub = {"revision": revision, "trust_remote_code": trust_remote_code}
        if random_init:
            config = SwinConfig.from_pretrained(path, **hub)
            config._attn_implementation = attn_implementation
            model = SwinModel(config, add_pooling_layer=False).to(DTYPES[dtype])
        else:
            model = SwinModel.from_pretrained(path, add_pooling_layer=False, dtype=DTYPES[dtype],
                                              attn_implementation=attn_implementation, **hub)
        try:
            processor = AutoImageProcessor.from_pretrained(path, **hub)
        except (OSError, ValueError):  # no preprocessor_config.json with the checkpoint
            processor = _default_processor(_pair(model.config.image_size))
        init = "random" if random_init else (revision or "main")
        return cls(model, processor, identity=f"hf_swin:{name}@{init}")

    # -- inputs -------------------------------------------------------------------------------------------------

    @property
    def processor(self):
        """The image processor (same object as :attr:`image_processor`; the name the other encoders use)."""
        return self.image_processor

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def load(self, source) -> Image.Image:
        """An image file → RGB ``PIL.Image`` (a ``PIL.Image`` passes through). Raises
        :class:`~mmadapt.errors.DataError` naming the file."""
        from mmadapt.io.image import load_image

        return source if isinstance(source, Image.Image) else load_image(source)

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        """``B`` images → ``[B, 3, H, W]`` by the checkpoint's image processor (resized to its size), in the
        backbone's dtype."""
        if isinstance(images, Image.Image):
            images = [images]
        return self.image_processor(images=list(images), return_tensors="pt")["pixel_values"].to(self.dtype)

    def check_input(self, shape) -> tuple[int, int]:
        """Raise :class:`~mmadapt.errors.ConfigError` unless ``shape`` is ``[B, C, H, W]`` with a size the
        backbone runs exactly (see the module docstring); return ``(H, W)``."""
        shape = tuple(int(s) for s in shape)
        channels = int(self.model.config.num_channels)
        if len(shape) != 4 or shape[1] != channels:
            raise ConfigError(f"{self.identity}: pixel_values of shape {list(shape)}, expected "
                              f"[B, {channels}, H, W]")
        merge = 2 ** (len(self.depths) - 1)
        units = (self.patch_size[0] * merge, self.patch_size[1] * merge)
        height, width = shape[2:]
        if any(n % u or n < u * self.window_size for n, u in zip((height, width), units)):
            patch = self.patch_size[0] if self.patch_size[0] == self.patch_size[1] else self.patch_size
            raise ConfigError(
                f"{self.identity}: pixel_values of shape {list(shape)}: height and width must be multiples "
                f"of {units[0] if units[0] == units[1] else units} (patch_size {patch} × 2**{len(self.depths) - 1} "
                f"patch mergings) giving a last-stage map of at least window_size {self.window_size} "
                f"(≥ {units[0] * self.window_size} pixels); the checkpoint's size is "
                f"{self.image_size[0]}×{self.image_size[1]}")
        return height, width

    # -- blocks and hooks ---------------------------------------------------------------------------------------

    def blocks(self) -> list[tuple[int, nn.Module]]:
        """Every Swin block (``SwinLayer``) in forward order with its stage index: ``[(stage, block), ...]``;
        a block's position in this list is the ``index`` a block hook receives."""
        return list(self._layers)

    @property
    def num_blocks(self) -> int:
        return len(self._layers)

    def set_block_hook(self, fn: StageBlockHook | None) -> None:
        """Apply ``fn(index, stage, hidden [B, L, C]) -> [B, L, C]`` to every block's output from now on
        (``None`` removes it). ``L = H_s · W_s`` tokens in row-major order; gradients flow through ``fn``."""
        if fn is not None and not callable(fn):
            raise TypeError(f"hf_swin.set_block_hook: expected a callable or None, got {type(fn).__name__}")
        self._block_hook = fn

    def _make_hook(self, index: int, stage: int):
        def hook(module: nn.Module, args, output):
            fn = self._block_hook
            if fn is None:
                return None
            # transformers 5's SwinLayer returns (hidden_states, attn_weights); older ones a 1- or 2-tuple
            hidden = output[0] if isinstance(output, tuple) else output
            if not isinstance(hidden, torch.Tensor):
                raise TypeError(f"hf_swin: block {index} returned {type(output).__name__}; cannot apply the hook")
            new = fn(index, stage, hidden)
            if not isinstance(new, torch.Tensor) or new.shape != hidden.shape:
                got = list(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
                raise ValueError(f"hf_swin: block hook at block {index} (stage {stage}) returned {got}, "
                                 f"expected the block's shape {list(hidden.shape)}")
            return (new, *output[1:]) if isinstance(output, tuple) else new

        return hook

    def _reset_windows(self) -> None:
        """Hugging Face's ``SwinLayer`` shrinks its window / drops its shift for a small feature map *and keeps
        that* for later calls, so outputs would depend on the sizes seen before; restore the built values so
        each call depends on its own input size only."""
        for (_, block), (window, shift) in zip(self._layers, self._windows):
            block.window_size, block.shift_size = window, shift

    # -- features -----------------------------------------------------------------------------------------------

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """``[B, 3, H, W]`` → the stage maps ``[B, hidden_sizes[s], H / strides[s], W / strides[s]]`` for every
        stage ``s``, before its patch merging; the last one through the model's final LayerNorm."""
        height, width = self.check_input(pixel_values.shape)
        self._reset_windows()
        interpolate = self.model.embeddings.position_embeddings is not None and (height, width) != self.image_size
        out = self.model(pixel_values=pixel_values.to(self.dtype), output_hidden_states=True,
                         output_hidden_states_before_downsampling=True, interpolate_pos_encoding=interpolate)
        # reshaped_hidden_states: (patch embeddings, stage 1 .. stage S), each [B, C, H_s, W_s], pre-merging
        maps = list(out.reshaped_hidden_states[1:])
        if len(maps) != len(self.depths):
            raise RuntimeError(f"hf_swin: transformers returned {len(maps)} stage maps, expected {len(self.depths)}")
        B, C, h, w = maps[-1].shape
        # last_hidden_state = layernorm(last stage tokens) [B, h·w, C], row-major like the maps
        maps[-1] = out.last_hidden_state.transpose(1, 2).reshape(B, C, h, w)
        return maps
