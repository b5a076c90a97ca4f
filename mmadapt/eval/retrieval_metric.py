"""Retrieval metrics from a score matrix: Recall@K, median and mean rank, both directions.

``scores`` [n_texts, n_videos] (higher = better match) and ``truth`` [n_texts] (the video each text
describes). Text → video: the rank of the true video among all videos; video → text: the best rank among the
video's own texts. Ties count against the model (rank = how many candidates score at least as high as the true
one), so a constant scorer gets the worst rank, never a lucky R@1. Recalls are in percent.
"""

from __future__ import annotations

import torch

__all__ = ["chance_metrics", "retrieval_metrics"]


def _summary(ranks: torch.Tensor, prefix: str) -> dict[str, float]:
    ranks = ranks.float()
    out = {f"{prefix}R@{k}": round(100.0 * float((ranks <= k).float().mean()), 2) for k in (1, 5, 10)}
    out[f"{prefix}MdR"] = float(ranks.median())
    out[f"{prefix}MnR"] = round(float(ranks.mean()), 2)
    return out


def retrieval_metrics(scores: torch.Tensor, truth: list[int] | torch.Tensor) -> dict[str, float]:
    """``t2v_R@1/5/10``, ``t2v_MdR``, ``t2v_MnR`` and the same for ``v2t_``; ``n_texts``, ``n_videos``."""
    scores = torch.as_tensor(scores, dtype=torch.float64)
    truth = torch.as_tensor(truth, dtype=torch.long)
    if scores.ndim != 2 or truth.shape != (scores.shape[0],):
        raise ValueError(f"retrieval_metrics: scores must be [n_texts, n_videos] and truth [n_texts]; got "
                         f"{list(scores.shape)} and {list(truth.shape)}")
    if truth.numel() and (int(truth.min()) < 0 or int(truth.max()) >= scores.shape[1]):
        raise ValueError(f"retrieval_metrics: truth indices must lie in [0, {scores.shape[1]})")
    true_score = scores.gather(1, truth[:, None])  # [n_texts, 1]
    t2v = (scores >= true_score).sum(dim=1)
    # video -> text: for video j, rank every text by scores[:, j]; its best-ranked own text counts
    by_video = scores.t()  # [n_videos, n_texts]
    text_ranks = (by_video[:, None, :] >= by_video[:, :, None]).sum(dim=2)  # rank of text i for video j
    own = torch.zeros_like(by_video, dtype=torch.bool)
    own[truth, torch.arange(truth.numel())] = True
    described = own.any(dim=1)
    v2t = text_ranks.masked_fill(~own, scores.shape[0] + 1).min(dim=1).values[described]
    return {**_summary(t2v, "t2v_"), **_summary(v2t, "v2t_"), "n_texts": int(scores.shape[0]),
            "n_videos": int(scores.shape[1])}


def chance_metrics(n_videos: int) -> dict[str, float]:
    """Expected text → video scores of a random ranking of ``n_videos`` candidates (one true video)."""
    return {f"t2v_R@{k}": round(100.0 * min(k, n_videos) / n_videos, 2) for k in (1, 5, 10)} | {
        "t2v_MdR": (n_videos + 1) / 2, "t2v_MnR": (n_videos + 1) / 2}
