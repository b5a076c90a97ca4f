"""SOLO: raw image patches in the input sequence of one (frozen, optionally LoRA-adapted) causal LM.

No vision encoder. The LM input of a sample is::

    <vision> p(0,0) … p(0,c-1) <vrow_sep> p(1,0) … p(1,c-1) … <vrow_sep> p(r-1,0) … p(r-1,c-1) </vision> text

- every patch column is ``<vpatch>``'s embedding + ``patch_embed(flattened patch)`` (one bias-free linear
  ``3·p·p → D``); there is no 2D position embedding: the patches take the LM's own 1D positions, in order;
- ``<vrow_sep>`` sits *between* rows, not after the last one, as in the authors' code (a separator is
  emitted when a new row starts), so an image of ``r × c`` patches is ``2 + r·c + (r - 1)`` tokens;
- ``<vision>``, ``</vision>``, ``<vrow_sep>``, ``<vpatch>`` are added to the LM's tokenizer as special
  tokens (decoding skips them); their embeddings are this adapter's (trained): ids from the first added one
  on are looked up in the adapter's table, the frozen LM's embedding matrix is neither resized nor trained;
- images of different sizes in one batch: each sample's span is left-padded to the longest; the padding is
  masked as an attention key and takes no position (see :class:`~mmadapt.adapters.base.InputPrefix`).

The loss covers the text only (``PerceptualLM`` scores text tokens; the image span is never a target); by
default (``loss: authors``) only the answer and EOS, averaged over the batch's scored tokens, as the authors'
SFT data marks the image and prompt tokens -100 (``src/data/instruction_tuning.py``).
Trained: the patch embedding and the four token embeddings, plus peft LoRA A / B inside the LM when
``config.lora`` is set (inserted at construction with :func:`~mmadapt.adapters.lora.inject_lora`; they start
as the identity, B = 0).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mmadapt.adapters.base import InputPrefix, PerceptualAdapter, TextLoss
from mmadapt.adapters.lora import inject_lora
from mmadapt.adapters.solo.config import SOLOConfig
from mmadapt.adapters.solo.patches import NativeResolutionProcessor, PatchBatch, patch_grid
from mmadapt.backbones.lm import CausalLM
from mmadapt.errors import ConfigError
from mmadapt.registry import register

#: the added tokens, in the order of the adapter's embedding table
SPECIAL_TOKENS = ("<vision>", "</vision>", "<vrow_sep>", "<vpatch>")
VISION_START, VISION_END, ROW_SEP, PATCH = range(len(SPECIAL_TOKENS))
PADDING = -1


def n_image_tokens(rows: int, cols: int) -> int:
    """Tokens of one image of ``rows × cols`` patches: ``<vision>``, the patches, ``rows - 1`` separators,
    ``</vision>``."""
    return 2 + rows * cols + (rows - 1)


def visual_layout(grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each image's tokens go: ``grid`` [B, 2] (rows, cols) → ``kind`` [B, K] (index into
    :data:`SPECIAL_TOKENS`, :data:`PADDING` for left padding) and ``patch_index`` [B, K] (the patch a
    ``<vpatch>`` column embeds, row-major; -1 elsewhere). K = the longest span of the batch."""
    spans = []
    for rows, cols in grid.tolist():
        kind, index = [VISION_START], [-1]
        for r in range(rows):
            if r:
                kind.append(ROW_SEP)
                index.append(-1)
            kind += [PATCH] * cols
            index += range(r * cols, (r + 1) * cols)
        kind.append(VISION_END)
        index.append(-1)
        spans.append((kind, index))
    width = max(len(kind) for kind, _ in spans)
    kinds = torch.full((len(spans), width), PADDING, dtype=torch.long)
    indices = torch.full((len(spans), width), -1, dtype=torch.long)
    for b, (kind, index) in enumerate(spans):
        kinds[b, width - len(kind):] = torch.tensor(kind)
        indices[b, width - len(index):] = torch.tensor(index)
    return kinds, indices


def add_special_tokens(tokenizer) -> int:
    """Add :data:`SPECIAL_TOKENS` to ``tokenizer`` (kept if already there) → the id of the first; the four
    ids are consecutive."""
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)},
                                 replace_extra_special_tokens=False)
    ids = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    if ids != list(range(ids[0], ids[0] + len(SPECIAL_TOKENS))):
        raise ConfigError(f"model.lm: the tokenizer gave SOLO's tokens {SPECIAL_TOKENS} non-consecutive ids {ids}")
    return ids[0]


@register("adapters", "solo")
class SOLO(PerceptualAdapter):
    """The trained part of SOLO: ``patch_embed`` (``3·p·p → D``, no bias), ``special`` (the four added
    tokens' embeddings [4, D]) and, with ``config.lora``, the LoRA layers inside ``lm`` (``lora``)."""

    config_class = SOLOConfig
    uses_vision_encoder = False

    def __init__(self, config: SOLOConfig, lm: CausalLM, vision=None):
        super().__init__()
        self.config = config
        self.processor = NativeResolutionProcessor(config)
        self.text_loss = (TextLoss(prefix_weight=0.0, reduction="token_mean") if config.loss == "authors"
                          else TextLoss(prefix_weight=0.1, reduction="sample_mean"))
        _check_positions(config, lm)
        self.first_special_id = add_special_tokens(lm.tokenizer)
        frozen = lm.input_embeddings.weight.detach().float()  # [V, D]
        dim = frozen.shape[1]
        self.special = nn.Embedding(len(SPECIAL_TOKENS), dim)
        self.patch_embed = nn.Linear(3 * config.patch_size ** 2, dim, bias=False)
        with torch.no_grad():  # the added tokens look like typical words: the table's mean ± its per-dim spread
            self.special.weight.copy_(frozen.mean(0) + torch.randn(len(SPECIAL_TOKENS), dim) * frozen.std(0))
            target_norm = config.patch_init_scale * frozen.norm(dim=1).mean()
            self.patch_embed.weight.normal_(0.0, float(target_norm) / math.sqrt(dim * self.patch_embed.in_features))
        self.lora = inject_lora(config.lora, lm.model, "model.adapter.lora") if config.lora is not None else None

    # ------------------------------------------------------------------------------ PerceptualLM contract
    def perceive(self, vision, pixel_values: PatchBatch) -> PatchBatch:
        """SOLO reads the patches themselves: ``pixel_values`` is the processor's :class:`PatchBatch`."""
        if not isinstance(pixel_values, PatchBatch):
            got = type(pixel_values).__name__
            if hasattr(pixel_values, "shape"):
                got += f" of shape {list(pixel_values.shape)}"
            raise TypeError(f"SOLO reads a PatchBatch (model.vision.preprocess of a SOLO model), got {got}")
        return pixel_values.to(device=self.patch_embed.weight.device, dtype=self.patch_embed.weight.dtype)

    def input_prefix(self, perception: PatchBatch | None, batch_size: int, dtype: torch.dtype,
                     device: torch.device) -> InputPrefix:
        """The image spans [B, K, D], left-padded, with positions (see the module docstring)."""
        if perception is None:
            raise ValueError("SOLO: the image span needs the batch's patches (perception is None)")
        if len(perception) != batch_size:
            raise ValueError(f"SOLO: {len(perception)} images for {batch_size} texts")
        kind, index = (t.to(device) for t in visual_layout(perception.grid))
        valid = kind != PADDING
        embeds = self.special(kind.clamp(min=0))  # [B, K, D]
        patches = self.patch_embed(perception.patches)  # [B, N, D]
        picked = patches.gather(1, index.clamp(min=0)[..., None].expand(-1, -1, patches.shape[-1]))
        embeds = embeds + picked * (index >= 0)[..., None]
        embeds = embeds * valid[..., None]
        return InputPrefix(embeds.to(dtype), valid.long(), positioned=True)

    def embed_tokens(self, lm: CausalLM, ids: torch.Tensor) -> torch.Tensor:
        """Text ids [B, T] → [B, T, D]: SOLO's added tokens from its own table, the rest from the frozen LM."""
        offset = ids - self.first_special_id
        ours = (offset >= 0) & (offset < len(SPECIAL_TOKENS))
        if not bool(ours.any()):
            return lm.input_embeddings(ids)
        frozen = lm.input_embeddings(ids.masked_fill(ours, lm.tokenizer.pad_token_id))
        added = self.special(offset.clamp(0, len(SPECIAL_TOKENS) - 1)).to(frozen.dtype)
        return torch.where(ours[..., None], added, frozen)

    def n_tokens(self, width: int, height: int) -> int:
        """LM tokens of one ``width × height`` image (after the resize / downscale of ``image_fit``)."""
        return n_image_tokens(*patch_grid(*self.processor.size(width, height), self.config.patch_size))


def _check_positions(config: SOLOConfig, lm: CausalLM) -> None:
    """The longest image span (a ``max_side`` square) must fit in the LM's positions."""
    limit = getattr(lm.model.config, "max_position_embeddings", None)
    side = math.ceil(config.max_side / config.patch_size)
    longest = n_image_tokens(side, side)
    if limit is not None and longest >= limit:
        raise ConfigError(
            f"model.adapter.max_side: a {config.max_side}-pixel square image is {longest} tokens at patch_size "
            f"{config.patch_size}, and the LM has {limit} positions; lower max_side or raise patch_size")
