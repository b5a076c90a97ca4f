"""All-in-One's temporal token rolling (Wang et al., CVPR 2023): a parameter-free temporal adapter.

Before a block, a fraction of every frame's visual tokens is shifted circularly along time: the first
``n_forward`` tokens of each frame go one frame forward (frame ``t``'s to ``t + 1``, the last frame's to frame
0), the last ``n_backward`` tokens one frame back (frame 0's to the last frame), the rest stay. Non-visual
tokens ([CLS], text) never move. As in the authors' code the rolled tokens *stay rolled*: every selected
block rolls the sequence it receives and nothing ever unrolls, so after ``k`` rolling blocks a token has moved
``k`` frames (mod ``T``) — :func:`unroll_tokens` / :func:`unroll_sequence` exist for tests and analysis.
Default amounts as the authors' (``AllInOne/modules/temporal_roll.py``, ``n_div = 8`` over a frame's
``[CLS]`` + patches): ``n = (tokens_per_frame + 1) // 8`` each way — 24 of 196 patches (ViT-B/16 at 224 px),
8 of 64; ``fraction`` sets a share instead, ``n = round(fraction · tokens_per_frame)``.

When: the authors roll only when a text and a video share the sequence (``infer`` of
``AllInOne/modules/allinone_module.py``: video-only and text-only passes never roll) — the default here;
``roll_video_only: true`` also rolls video-only inputs (video classification without a text).

Pieces:

- :func:`roll_tokens` / :func:`unroll_tokens` on ``[B, T, N, D]`` (T frames of N tokens);
- :class:`RollLayout` + :func:`roll_sequence` / :func:`unroll_sequence` on a mixed ``[B, L, D]`` sequence
  where only some positions are visual tokens of frames (a layout from a time index such as the video
  tokenizer's ``coords[..., 0]``, frame or tubelet index; padded positions count as non-visual);
- :class:`TokenRolling` (registered adapter ``token_rolling``, :class:`TokenRollingConfig`): zero parameters;
  it gives :class:`~mmadapt.models.all_in_one.AllInOne` a hook that rolls the frames' tokens before each
  selected block of the frozen encoder.

Attention: transformer blocks are permutation-equivariant over tokens once positions are added. Under joint
attention over a whole clip (every token attends to all tokens), rolling is only a re-ordering of the output
tokens; All-in-One attends *per frame* (frames in the batch dimension), and rolling lets a frame see some of
its neighbours' tokens. So rolling belongs inside an assembly whose attention is restricted to a frame, not
in :class:`~mmadapt.models.adapted_encoder.AdaptedEncoder`'s joint attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmadapt.adapters.base import Adapter
from mmadapt.errors import ConfigError
from mmadapt.registry import register


__all__ = ["RollLayout", "TokenRolling", "TokenRollingConfig", "roll_sequence", "roll_tokens", "unroll_sequence",
           "unroll_tokens"]

#: the authors' divisor: ``(1 + N) // 8`` of a frame's [CLS] + ``N`` patch tokens roll each way (24 of 196)
AUTHORS_DIVISOR = 8


# ------------------------------------------------------------------------------------------- [B, T, N, D]
def _check_amounts(n_forward: int, n_backward: int, tokens_per_frame: int) -> None:
    for key, n in (("n_forward", n_forward), ("n_backward", n_backward)):
        if isinstance(n, bool) or not isinstance(n, int):
            raise ValueError(f"token rolling: {key} must be an int, got {n!r}")
        if n < 0:
            raise ValueError(f"token rolling: {key} must be >= 0, got {n}")
    if n_forward + n_backward > tokens_per_frame:
        raise ValueError(f"token rolling: n_forward + n_backward = {n_forward} + {n_backward} > "
                         f"{tokens_per_frame} tokens per frame")


def _shift(x: torch.Tensor, n_forward: int, n_backward: int, step: int) -> torch.Tensor:
    if x.ndim != 4:
        raise ValueError(f"token rolling: expected tokens [B, T, N, D], got {list(x.shape)}")
    N = x.shape[2]
    _check_amounts(n_forward, n_backward, N)
    parts = []
    if n_forward:
        parts.append(torch.roll(x[:, :, :n_forward], shifts=step, dims=1))
    if n_forward + n_backward < N:
        parts.append(x[:, :, n_forward:N - n_backward])
    if n_backward:
        parts.append(torch.roll(x[:, :, N - n_backward:], shifts=-step, dims=1))
    return torch.cat(parts, dim=2) if len(parts) > 1 else (parts[0] if parts else x)


def roll_tokens(x: torch.Tensor, n_forward: int, n_backward: int) -> torch.Tensor:
    """Roll ``x`` [B, T, N, D] along time → [B, T, N, D].

    ``out[:, t, k] = x[:, t - 1, k]`` for the first ``n_forward`` tokens ``k`` (one frame forward),
    ``out[:, t, k] = x[:, t + 1, k]`` for the last ``n_backward`` (one frame back), frame indices mod ``T``;
    the middle tokens are unchanged. With ``T = 1`` (or 0) there is no neighbour: the identity.
    Raises ``ValueError`` for a negative amount or ``n_forward + n_backward > N``."""
    return _shift(x, n_forward, n_backward, 1)


def unroll_tokens(x: torch.Tensor, n_forward: int, n_backward: int) -> torch.Tensor:
    """The exact inverse of :func:`roll_tokens` (same arguments)."""
    return _shift(x, n_forward, n_backward, -1)


# ----------------------------------------------------------------------------------------- [B, L, D]
@dataclass(frozen=True, eq=False)
class RollLayout:
    """Where the frames' visual tokens sit in a sequence of length ``L``.

    - ``frame_index`` [L] (long): the frame of each position, ``-1`` for a non-visual token ([CLS], text,
      padding), which never moves;
    - ``n_frames``, ``tokens_per_frame``: every frame ``0 .. n_frames - 1`` has exactly ``tokens_per_frame``
      positions; the ``k``-th of them in sequence order is token ``k`` of that frame.
    """

    frame_index: torch.Tensor
    n_frames: int
    tokens_per_frame: int

    def __post_init__(self) -> None:
        fi = self.frame_index
        if fi.ndim != 1 or fi.dtype != torch.long:
            raise ValueError(f"RollLayout: frame_index must be a 1-D long tensor, got {fi.dtype} {list(fi.shape)}")
        if self.n_frames < 0 or self.tokens_per_frame < 0:
            raise ValueError(f"RollLayout: n_frames and tokens_per_frame must be >= 0, got {self.n_frames}, "
                             f"{self.tokens_per_frame}")
        if fi.numel() and (int(fi.min()) < -1 or int(fi.max()) >= self.n_frames):
            raise ValueError(f"RollLayout: frame_index values must lie in [-1, {self.n_frames}), got "
                             f"[{int(fi.min())}, {int(fi.max())}]")
        counts = torch.bincount(fi[fi >= 0], minlength=self.n_frames)
        bad = (counts != self.tokens_per_frame).nonzero().flatten()
        if bad.numel():
            f = int(bad[0])
            raise ValueError(f"RollLayout: frame {f} has {int(counts[f])} tokens, expected {self.tokens_per_frame} "
                             f"in every frame (frame sizes: {counts.tolist()})")

    @classmethod
    def from_time_index(cls, time_index: torch.Tensor, visual: torch.Tensor | None = None) -> "RollLayout":
        """From a time index per position, ``time_index`` [L] (e.g. the video tokenizer's ``coords[..., 0]``):
        positions sharing a value form one frame, frames ordered by value; negative values and positions where
        ``visual`` [L] (bool) is False are non-visual. Raises ``ValueError`` if the frames differ in size."""
        if time_index.ndim != 1:
            raise ValueError(f"RollLayout.from_time_index: time_index must be [L], got {list(time_index.shape)}")
        if time_index.is_floating_point():
            raise ValueError(f"RollLayout.from_time_index: time_index must be integer, got {time_index.dtype}")
        keep = time_index >= 0
        if visual is not None:
            if visual.shape != time_index.shape:
                raise ValueError(f"RollLayout.from_time_index: visual {list(visual.shape)} != time_index "
                                 f"{list(time_index.shape)}")
            keep = keep & visual.bool()
        frames, inverse = torch.unique(time_index[keep], sorted=True, return_inverse=True)
        frame_index = torch.full(time_index.shape, -1, dtype=torch.long, device=time_index.device)
        frame_index[keep] = inverse
        counts = torch.bincount(inverse, minlength=frames.numel())
        if counts.numel() and bool((counts != counts[0]).any()):
            raise ValueError(f"RollLayout.from_time_index: every frame needs the same number of tokens; frames "
                             f"(time values {frames.tolist()}) have {counts.tolist()}")
        return cls(frame_index, frames.numel(), int(counts[0]) if counts.numel() else 0)

    @classmethod
    def contiguous(cls, prefix: int, n_frames: int, tokens_per_frame: int, suffix: int = 0,
                   device: torch.device | str | None = None) -> "RollLayout":
        """``prefix`` non-visual tokens, then ``n_frames × tokens_per_frame`` visual tokens frame-major, then
        ``suffix`` non-visual tokens (e.g. text)."""
        for key, n in (("prefix", prefix), ("n_frames", n_frames), ("tokens_per_frame", tokens_per_frame),
                       ("suffix", suffix)):
            if n < 0:
                raise ValueError(f"RollLayout.contiguous: {key} must be >= 0, got {n}")
        visual = torch.arange(n_frames, device=device).repeat_interleave(tokens_per_frame)
        pad = lambda n: torch.full((n,), -1, dtype=torch.long, device=device)  # noqa: E731
        return cls(torch.cat([pad(prefix), visual, pad(suffix)]), n_frames, tokens_per_frame)

    def __len__(self) -> int:
        return self.frame_index.numel()

    @property
    def positions(self) -> torch.Tensor:
        """[n_frames, tokens_per_frame] (long): the sequence position of token ``k`` of frame ``t``."""
        fi = self.frame_index
        visual = (fi >= 0).nonzero().flatten()
        order = torch.argsort(fi[visual], stable=True)
        return visual[order].view(self.n_frames, self.tokens_per_frame)

    def permutation(self, n_forward: int, n_backward: int, inverse: bool = False) -> torch.Tensor:
        """[L] (long) gather index: ``roll_sequence(h) == h[:, perm]``; non-visual positions map to themselves."""
        pos = self.positions
        shift = unroll_tokens if inverse else roll_tokens
        source = shift(pos[None, :, :, None], n_forward, n_backward)[0, :, :, 0]
        perm = torch.arange(len(self), device=pos.device)
        perm[pos.flatten()] = source.flatten()
        return perm


def _sequence(hidden: torch.Tensor, layout: RollLayout, n_forward: int, n_backward: int, inverse: bool):
    if hidden.ndim != 3 or hidden.shape[1] != len(layout):
        raise ValueError(f"token rolling: hidden {list(hidden.shape)} must be [B, L, D] with L = {len(layout)} "
                         "(the layout's length)")
    perm = layout.permutation(n_forward, n_backward, inverse).to(hidden.device)
    return hidden.index_select(1, perm)


def roll_sequence(hidden: torch.Tensor, layout: RollLayout, n_forward: int, n_backward: int) -> torch.Tensor:
    """:func:`roll_tokens` on the visual tokens of ``hidden`` [B, L, D] placed by ``layout``; the
    non-visual positions are copied unchanged (bit-identical). Differentiable (a gather)."""
    return _sequence(hidden, layout, n_forward, n_backward, inverse=False)


def unroll_sequence(hidden: torch.Tensor, layout: RollLayout, n_forward: int, n_backward: int) -> torch.Tensor:
    """The exact inverse of :func:`roll_sequence` (same arguments)."""
    return _sequence(hidden, layout, n_forward, n_backward, inverse=True)


# ----------------------------------------------------------------------------------------- the adapter
@dataclass
class TokenRollingConfig:
    """How much rolls, and where.

    - ``fraction``: share of each frame's visual tokens rolled one frame forward, and the same share one frame
      back; None (default) is the authors' count, ``(tokens_per_frame + 1) // 8`` (24 of 196, 8 of 64);
      ``n_forward`` / ``n_backward`` set the counts directly instead.
    - ``roll_video_only``: also roll when the sequence holds no text (video-only classification). The
      authors roll only video–text sequences (the default, False): a video-only input then has no temporal
      path at all.
    - ``blocks``: indices of the encoder blocks before which to roll (default: every block, as the authors).
    """

    name: str = "token_rolling"
    fraction: float | None = None
    n_forward: int | None = None
    n_backward: int | None = None
    roll_video_only: bool = False
    blocks: list[int] | None = None

    def validate(self) -> None:
        if self.fraction is not None and not 0 <= self.fraction <= 0.5:
            raise ConfigError(f"fraction: expected a share in [0, 0.5] per direction, got {self.fraction}")
        for key in ("n_forward", "n_backward"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise ConfigError(f"{key}: expected >= 0, got {value}")
        if self.blocks is not None and any(b < 0 for b in self.blocks):
            raise ConfigError(f"blocks: expected block indices >= 0, got {self.blocks}")

    def amounts(self, tokens_per_frame: int) -> tuple[int, int]:
        """``(n_forward, n_backward)`` for frames of ``tokens_per_frame`` visual tokens."""
        if self.fraction is None:
            n = (tokens_per_frame + 1) // AUTHORS_DIVISOR
        else:
            n = round(self.fraction * tokens_per_frame)
        fwd = self.n_forward if self.n_forward is not None else n
        bwd = self.n_backward if self.n_backward is not None else n
        if fwd + bwd > tokens_per_frame:
            raise ConfigError(f"model.adapter: n_forward + n_backward = {fwd} + {bwd} > {tokens_per_frame} "
                              "visual tokens per frame")
        return fwd, bwd


@register("adapters", "token_rolling")
class TokenRolling(Adapter):
    """All-in-One's temporal module: no parameters, one hook.

    Inside :class:`~mmadapt.models.all_in_one.AllInOne` the frozen encoder attends *per frame*: the batch
    dimension holds ``B · T`` sequences ``[text][frame t's N patch tokens]`` (the encoder's [CLS] in front).
    :meth:`block_hook` returns the ``before_block`` function of
    :meth:`~mmadapt.backbones.base.TokenEncoder.run_blocks`: before every selected block it views the
    visual part as ``[B, T, N, D]`` and rolls it (:func:`roll_tokens`); text and [CLS] are left alone.
    """

    config_class = TokenRollingConfig
    assemblies = ("all_in_one",)

    def __init__(self, config: TokenRollingConfig, encoder=None):
        super().__init__()
        self.config = config
        n_blocks = getattr(encoder, "num_layers", None)
        if n_blocks is not None and config.blocks is not None and max(config.blocks, default=-1) >= n_blocks:
            raise ConfigError(f"model.adapter.blocks: {config.blocks} names a block >= the encoder's {n_blocks}")

    def attach(self, encoder) -> None:
        """Nothing is inserted into the encoder; :meth:`block_hook` is called per batch."""
        if not hasattr(encoder, "run_blocks"):
            raise ConfigError("model.adapter: token_rolling needs an encoder with run_blocks (hf_vit, ...)")

    def block_hooks(self, tokens):
        """Joint attention over a whole clip (:class:`~mmadapt.models.AdaptedEncoder`) makes rolling a mere
        re-ordering of the outputs (attention is permutation-equivariant), so it is refused there."""
        raise ConfigError("model.adapter: token_rolling needs per-frame attention: use model.assembly: all_in_one "
                          "(under adapted_encoder's joint attention over the clip, rolling only reorders outputs)")

    def block_hook(self, n_frames: int, n_text: int, tokens_per_frame: int):
        """``before_block(i, x)`` for :meth:`run_blocks`: ``x`` [B·T, n_text + N, D] → same shape with the
        ``N`` visual tokens rolled along the ``T`` frames of each clip (None when nothing would move: one frame,
        or no text without ``roll_video_only``)."""
        if n_frames < 2 or (n_text == 0 and not self.config.roll_video_only):
            return None
        fwd, bwd = self.config.amounts(tokens_per_frame)
        if fwd + bwd == 0:
            return None
        chosen = None if self.config.blocks is None else set(self.config.blocks)

        def before_block(i: int, x: torch.Tensor) -> torch.Tensor:
            if chosen is not None and i not in chosen:
                return x
            BT, L, D = x.shape
            visual = x[:, n_text:].reshape(BT // n_frames, n_frames, tokens_per_frame, D)
            rolled = roll_tokens(visual, fwd, bwd).reshape(BT, tokens_per_frame, D)
            return torch.cat([x[:, :n_text], rolled], dim=1)

        return before_block

