"""All-in-One token rolling: the roll / unroll functions and the sequence layout."""

from __future__ import annotations

import pytest
import torch

from mmadapt.adapters.token_rolling import RollLayout, roll_sequence, roll_tokens, unroll_sequence, unroll_tokens


# --------------------------------------------------------------------------------------- pure functions
@pytest.mark.parametrize("T,N,nf,nb", [(2, 4, 1, 1), (3, 5, 2, 1), (4, 16, 2, 2), (8, 196, 24, 24), (5, 6, 0, 3),
                                       (3, 6, 6, 0), (4, 6, 3, 3), (1, 4, 1, 1)])
def test_unroll_is_the_exact_inverse_of_roll(T, N, nf, nb):
    x = torch.randn(2, T, N, 3, generator=torch.Generator().manual_seed(T * 100 + N))
    assert torch.equal(unroll_tokens(roll_tokens(x, nf, nb), nf, nb), x)
    assert torch.equal(roll_tokens(unroll_tokens(x, nf, nb), nf, nb), x)
    rolled = roll_tokens(x, nf, nb)
    assert torch.equal(rolled[:, :, nf:N - nb], x[:, :, nf:N - nb])  # the middle tokens stay
    if T > 1 and nf + nb:
        assert not torch.equal(rolled, x)


def test_where_each_token_goes_by_hand():
    T, N = 3, 4
    x = (10 * torch.arange(T)[:, None] + torch.arange(N)[None]).float().view(1, T, N, 1)  # value 10·frame + token
    out = roll_tokens(x, 1, 1)[0, :, :, 0]
    expected = torch.tensor([[20., 1., 2., 13.],   # frame 0: frame 2's first token, frame 1's last
                             [0., 11., 12., 23.],  # frame 1: frame 0's first, frame 2's last
                             [10., 21., 22., 3.]])  # frame 2: frame 1's first, frame 0's last
    assert torch.equal(out, expected)
    # first token of frame 0 → frame 1; of frame 2 → frame 0; last token of frame 0 → frame 2
    assert out[1, 0] == 0 and out[0, 0] == 20 and out[2, 3] == 3
    assert torch.equal(unroll_tokens(roll_tokens(x, 1, 1), 1, 1), x)


def test_one_frame_is_the_identity_and_bad_amounts_are_refused():
    x = torch.randn(2, 1, 5, 3)
    assert torch.equal(roll_tokens(x, 2, 2), x) and torch.equal(unroll_tokens(x, 2, 2), x)
    with pytest.raises(ValueError, match="n_forward must be >= 0"):
        roll_tokens(torch.randn(1, 2, 4, 1), -1, 0)
    with pytest.raises(ValueError, match=r"n_forward \+ n_backward = 3 \+ 2 > 4"):
        roll_tokens(torch.randn(1, 2, 4, 1), 3, 2)
    with pytest.raises(ValueError, match=r"\[B, T, N, D\]"):
        roll_tokens(torch.randn(2, 4, 1), 1, 1)


# --------------------------------------------------------------------------------------- sequences
def test_roll_sequence_never_moves_cls_or_text_and_matches_roll_tokens():
    P, T, N, S = 1, 3, 4, 2  # [CLS], 3 frames of 4 tokens, 2 text tokens
    layout = RollLayout.contiguous(P, T, N, S)
    assert layout.frame_index.tolist() == [-1] + [0] * 4 + [1] * 4 + [2] * 4 + [-1, -1]
    h = torch.randn(2, P + T * N + S, 5)
    out = roll_sequence(h, layout, 1, 1)
    assert torch.equal(out[:, :P], h[:, :P]) and torch.equal(out[:, P + T * N:], h[:, P + T * N:])
    visual = h[:, P:P + T * N].reshape(2, T, N, 5)
    assert torch.equal(out[:, P:P + T * N], roll_tokens(visual, 1, 1).reshape(2, T * N, 5))
    assert torch.equal(unroll_sequence(out, layout, 1, 1), h)


def test_layout_from_a_time_index_in_any_order():
    """Frames interleaved with each other and with other tokens (each frame's tokens keep their order),
    frames labelled by arbitrary increasing time values: rolling the scattered sequence is rolling the
    frame-major one, scattered the same way."""
    T, N, extra = 4, 3, 3
    g = torch.Generator().manual_seed(0)
    contiguous = RollLayout.contiguous(0, T, N, extra)
    labels = contiguous.frame_index[torch.randperm(T * N + extra, generator=g)]  # a random arrangement
    shuffle = torch.empty_like(labels)  # scattered[:, j] = h[:, shuffle[j]], order kept within a label
    shuffle[torch.argsort(labels, stable=True)] = torch.argsort(contiguous.frame_index, stable=True)
    assert not torch.equal(shuffle, torch.arange(T * N + extra))
    time = torch.where(labels >= 0, 5 * labels + 7, -1)
    layout = RollLayout.from_time_index(time)
    assert (layout.n_frames, layout.tokens_per_frame) == (T, N)
    h = torch.randn(2, T * N + extra, 4, generator=g)
    assert torch.equal(roll_sequence(h[:, shuffle], layout, 1, 1), roll_sequence(h, contiguous, 1, 1)[:, shuffle])
    assert torch.equal(unroll_sequence(roll_sequence(h, layout, 1, 2), layout, 1, 2), h)
    with pytest.raises(ValueError, match=r"have \[3, 2, 3\]"):
        RollLayout.from_time_index(torch.tensor([0, 0, 0, 1, 1, 2, 2, 2]))
    with pytest.raises(ValueError, match="L = 15"):
        roll_sequence(torch.randn(1, 14, 4), layout, 1, 1)


# --------------------------------------------------------------------------------------- config
