"""The contract every adapter keeps: a typed config, its own parameters, named LR groups; and the contract of
the adapters that feed a frozen LM (:class:`PerceptualAdapter`, used by ``PerceptualLM``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn


class Adapter(nn.Module):
    """Base class of the trained parts.

    Subclasses set ``config_class`` (a dataclass with a ``name`` field, validated from the recipe) and may
    override :meth:`param_groups` to give some parameters their own learning rate (e.g. eP-ALM's prompt).
    """

    config_class: ClassVar[type]
    #: the assemblies this adapter fits (checked when the recipe is read); one constructor shape per family:
    #: ``perceptual_lm`` — ``cls(config, lm, vision)`` (``vision`` None for an adapter that reads pixels
    #: itself); ``adapted_encoder`` / ``all_in_one`` — ``cls(config, encoder)``; ``dense_multitask`` —
    #: ``cls(config, encoder, task_names)``
    assemblies: ClassVar[tuple[str, ...]] = ()

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by group name; the trainer maps names to learning rates."""
        return {"default": [p for p in self.parameters() if p.requires_grad]}


@dataclass
class InputPrefix:
    """The columns a perceptual adapter puts before the text in the LM's input sequence.

    - ``embeds`` [B, K, D]: their input embeddings (padding columns: zeros);
    - ``valid`` [B, K]: 1 for a real column, 0 for padding (left padding, so that a sample's last column is
      its last real token); padding is masked out as an attention key;
    - ``positioned``: True — the real columns take positions 0, 1, ... and the text continues after them
      (SOLO's image tokens); False — they carry no position and the text starts at position 0 (eP-ALM's
      perceptual slot and soft prompt, whose position embedding the adapter removes).
    """

    embeds: torch.Tensor
    valid: torch.Tensor
    positioned: bool


@dataclass(frozen=True)
class TextLoss:
    """How ``PerceptualLM`` turns a batch's per-token cross-entropies into its training loss (declared by the
    adapter, so that each method's default is its authors').

    - ``prefix_weight``: the loss weight of the prefix (prompt / question) tokens when the task sets none
      (``tasks.<t>.prefix_loss_weight`` unset); target tokens and EOS weigh 1; padding and the first text
      token (nothing predicts it) 0;
    - ``reduction``: ``sample_mean`` — each sample's weighted mean over its tokens, then the mean over the
      batch; ``sample_sum`` — each sample's weighted sum, then the mean over the batch (eP-ALM's
      ``loss.sum() / batch_size``); ``token_mean`` — the weighted sum over the batch divided by the batch's
      total weight (Hugging Face's mean over the labelled tokens; SOLO);
    - ``scale``: the whole loss is multiplied by it (eP-ALM's ``lm_loss_weight``).
    """

    prefix_weight: float = 0.0
    reduction: Literal["sample_mean", "sample_sum", "token_mean"] = "sample_mean"
    scale: float = 1.0


class PerceptualAdapter(Adapter):
    """An adapter that lets a frozen causal LM read perception (``PerceptualLM``). Per LM call:

    1. :meth:`perceive` turns the batch's ``pixel_values`` (whatever the image side's ``preprocess``
       returned) into the adapter's perception (eP-ALM: perceptual tokens from the frozen encoder's [CLS]
       states; SOLO: the raw patches);
    2. :meth:`input_prefix` gives the columns before the text (:class:`InputPrefix`);
    3. :meth:`active` arms whatever hooks the adapter installed in :meth:`attach` for that call.

    ``PerceptualLM`` builds it as ``cls(config, lm, vision)``. ``uses_vision_encoder`` False means the adapter
    reads pixels itself: no vision encoder is loaded (``vision`` is None) and its ``processor`` (``load`` /
    ``preprocess`` / ``eval``) stands where an encoder would be.
    """

    assemblies: ClassVar[tuple[str, ...]] = ("perceptual_lm",)
    uses_vision_encoder: ClassVar[bool] = True
    #: the training loss's form (:class:`TextLoss`); by default only the target (+ EOS) is scored
    text_loss: TextLoss = TextLoss()
    #: True: the first prefix column attends to every real column, later text included (eP-ALM's leaky mask);
    #: its state then changes as text is appended, a KV cache would be stale, and generation recomputes
    prefix_attends_future: bool = False
    #: True: the frozen LM runs in train mode while the model trains (its dropout active; weights stay frozen)
    lm_dropout: bool = False
    #: the name of what :meth:`encoder_features` returns, for the feature cache (``train.feature_cache``);
    #: None: this adapter's perception is not a function of frozen encoder features alone (not cacheable)
    feature_kind: ClassVar[str | None] = None

    def perceive(self, vision, pixel_values) -> Any:
        """Perception from the batch's ``pixel_values``; by default the trained part applied to the frozen
        encoder's features (:meth:`perceive_features` ∘ :meth:`encoder_features`)."""
        return self.perceive_features(self.encoder_features(vision, pixel_values))

    def encoder_features(self, vision, pixel_values) -> torch.Tensor:
        """What the adapter reads from the frozen encoder, [B, ...], computed without a graph (cacheable when
        :attr:`feature_kind` is set)."""
        raise NotImplementedError(f"{type(self).__name__} reads no frozen encoder features")

    def perceive_features(self, features: torch.Tensor) -> Any:
        """The trained part on :meth:`encoder_features` (or on the same rows read from a feature cache)."""
        raise NotImplementedError(f"{type(self).__name__} reads no frozen encoder features")

    def input_prefix(self, perception: Any, batch_size: int, dtype: torch.dtype, device: torch.device) -> InputPrefix:
        raise NotImplementedError

    def attach(self, lm) -> None:
        """Install hooks on the frozen LM (called once by the assembly); none by default."""

    def detach(self) -> None:
        """Remove what :meth:`attach` installed."""

    @contextlib.contextmanager
    def active(self, perception: Any, prefill: bool) -> Iterator[None]:
        """Arm the hooks for one LM call (prefill, or one KV-cache decoding step); nothing by default."""
        yield

    def embed_tokens(self, lm, ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings of text ids [B, T] → [B, T, D] (adapters that add tokens map theirs here)."""
        return lm.input_embeddings(ids)
