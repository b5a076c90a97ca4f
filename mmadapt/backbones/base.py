"""What every frozen backbone shares: freezing, running a Hugging Face block under a key mask, and — for
transformer encoders that can read tokens of any modality — :class:`TokenEncoder`. Backbones load by id,
path or scheme name (``zoo:``, ``package:``) through :func:`mmadapt.names.resolve_name`."""

from __future__ import annotations

import abc
from collections.abc import Callable

import torch
from torch import nn

from mmadapt.errors import ConfigError

#: a per-block hook of :meth:`TokenEncoder.run_blocks`: (block index, external tokens [B, N, D]) → [B, N, D]
BlockHook = Callable[[int, torch.Tensor], torch.Tensor]
#: a per-block hook of a hierarchical encoder (``HFSwin.set_block_hook``), applied to every block's output:
#: (block index, stage, hidden [N, L, C]) → hidden
StageBlockHook = Callable[[int, int, torch.Tensor], torch.Tensor]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def loaded_name(model: nn.Module, role: str) -> str:
    """The ``name_or_path`` a loaded Hugging Face model was read from, to record it by (``role``: lm / vision)."""
    name = model.config.name_or_path
    if not name:
        raise ConfigError(f"{role}: the loaded {type(model).__name__} has no name_or_path (built from a config?); "
                          f"pass {role}_name=... so that the run's config.yaml and adapter_config.json can name it")
    return name


def freeze(module: nn.Module) -> nn.Module:
    """Frozen means frozen: no gradients, eval mode (dropout off). Returns ``module``."""
    module.requires_grad_(False)
    module.eval()
    return module


def run_hf_block(block: nn.Module, hidden: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """A Hugging Face encoder layer (ViT, CLIP, AST, BERT, ...) on ``hidden`` [B, L, D], attending only to the
    keys where ``key_mask`` [B, L] is True (an additive mask [B, 1, 1, L])."""
    additive = torch.zeros(key_mask.shape, dtype=hidden.dtype, device=hidden.device)
    additive.masked_fill_(~key_mask, torch.finfo(hidden.dtype).min)
    out = block(hidden, attention_mask=additive[:, None, None, :])
    return out[0] if isinstance(out, tuple) else out


class FrozenBackbone(nn.Module):
    """Base class: stays in eval mode whatever ``train()`` says (frozen parts never switch on dropout)."""

    def train(self, mode: bool = True) -> "FrozenBackbone":
        return super().train(False)


class HierarchicalEncoder(FrozenBackbone, abc.ABC):
    """A frozen multi-scale encoder (Swin): stage feature maps of widths ``hidden_sizes``, and one hook on every
    block's output (:data:`StageBlockHook`) through which dense adapters act."""

    hidden_sizes: tuple[int, ...]

    @abc.abstractmethod
    def set_block_hook(self, fn: StageBlockHook | None) -> None:
        """Apply ``fn`` to every block's output from now on (None: no hook)."""


class TokenEncoder(FrozenBackbone, abc.ABC):
    """A frozen transformer encoder used as a *shared* encoder for tokens of any modality (Meta-Transformer,
    Any2Point): :meth:`run_blocks` bypasses its own input embedding (patches, words) and runs its blocks on
    external tokens.

    Subclasses implement :attr:`blocks`, :meth:`_prefix_tokens` (the encoder's own leading tokens, e.g. [CLS]
    with its position embedding), :meth:`_run_block` and :attr:`final_norm`, optionally :meth:`_pre_blocks`,
    and :meth:`position_table` (the encoder's pretrained position embeddings of its content tokens, for
    Any2Point's virtual projection).
    """

    hidden_size: int
    num_layers: int
    identity: str
    final_norm: nn.Module

    @property
    def blocks(self) -> list[nn.Module]:
        raise NotImplementedError(f"{type(self).__name__} cannot run external tokens (run_blocks)")

    def _prefix_tokens(self) -> torch.Tensor:
        """The encoder's own leading tokens with their position embeddings, ``[P, D]`` ([CLS] first)."""
        raise NotImplementedError(f"{type(self).__name__} cannot run external tokens (run_blocks)")

    def _run_block(self, block: nn.Module, hidden: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """One block on ``hidden`` [B, L, D] with keys ``key_mask`` [B, L] (True = attend)."""
        raise NotImplementedError(f"{type(self).__name__} cannot run external tokens (run_blocks)")

    def _pre_blocks(self, hidden: torch.Tensor) -> torch.Tensor:
        """What the encoder does between its embeddings and its first block (CLIP: a LayerNorm)."""
        return hidden

    def position_table(self) -> torch.Tensor:
        """The pretrained position embeddings of the encoder's content tokens: ``[H, W, D]`` for a 2D patch
        grid (row-major, as the encoder lays out its patches), ``[L, D]`` for a 1D sequence."""
        raise NotImplementedError(f"{type(self).__name__} exposes no position table")

    def ffn_output(self, block: nn.Module) -> nn.Module:
        """The submodule of ``block`` whose output is the block's feed-forward branch, [B, L, D], just before
        it joins the residual stream (after any layer scale) — where Any2Point's parallel adapter reads and
        adds (a forward hook on it)."""
        raise NotImplementedError(f"{type(self).__name__} does not name its blocks' feed-forward output")

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def run_blocks(self, tokens: torch.Tensor, mask: torch.Tensor, before_block: BlockHook | None = None,
                   after_block: BlockHook | None = None, *, own_prefix: bool = True,
                   final_norm: nn.Module | None = None, batch_as_sequence: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens`` [B, N, D] (mask [B, N], True = real) → ``([CLS] + tokens)`` after every block and the
        final norm [B, 1+N, D], and the matching mask [B, 1+N]. Gradients flow to ``tokens``.

        The encoder's prefix tokens are prepended (all of them run; only [CLS] is returned), padded tokens are
        masked out as keys. ``before_block`` / ``after_block(i, x)`` rewrite the external tokens ``x`` [B, N, D]
        around block ``i`` (adapters; the prefix tokens are left alone).

        ``own_prefix=False``: nothing is prepended — ``tokens`` bring their own [CLS] at position 0 (e.g.
        Any2Point's trained one) and come back as they went in, [B, N, D]. ``final_norm``: a norm to apply
        instead of the encoder's own (e.g. a trained copy). ``batch_as_sequence=True`` hands every block the
        tokens as ``[L, B, D]``, so attention mixes the samples at each position instead of the positions of
        each sample (position-wise layers are unaffected): only to reproduce code that fed batch-first tensors
        to a sequence-first attention; it needs a batch without padding."""
        B, N, D = tokens.shape
        if D != self.hidden_size:
            raise ValueError(f"run_blocks: tokens have width {D}, the encoder expects {self.hidden_size}")
        if mask.shape != (B, N):
            raise ValueError(f"run_blocks: mask shape {tuple(mask.shape)} != tokens' [B, N] = {(B, N)}")
        if batch_as_sequence and not bool(mask.all()):
            raise ValueError("run_blocks: batch_as_sequence needs a batch without padding")
        prefix = self._prefix_tokens().to(self.dtype) if own_prefix else tokens.new_zeros(0, D).to(self.dtype)
        P = prefix.shape[0]
        hidden = self._pre_blocks(torch.cat([prefix.expand(B, P, D), tokens.to(self.dtype)], dim=1))
        keys = torch.cat([torch.ones(B, P, dtype=torch.bool, device=mask.device), mask.bool()], dim=1)
        for i, block in enumerate(self.blocks):
            if before_block is not None:
                hidden = torch.cat([hidden[:, :P], before_block(i, hidden[:, P:])], dim=1)
            if batch_as_sequence:
                hidden = self._run_block(block, hidden.transpose(0, 1), keys.transpose(0, 1)).transpose(0, 1)
            else:
                hidden = self._run_block(block, hidden, keys)
            if after_block is not None:
                hidden = torch.cat([hidden[:, :P], after_block(i, hidden[:, P:])], dim=1)
        norm = self.final_norm if final_norm is None else final_norm
        if not own_prefix:
            return norm(hidden), keys
        hidden = torch.cat([hidden[:, :1], hidden[:, P:]], dim=1)  # [CLS] + tokens
        return norm(hidden), torch.cat([keys[:, :1], keys[:, P:]], dim=1)
