"""Streaming metrics of dense prediction (PASCAL-Context multi-task conventions): semantic segmentation and
human parts (mIoU), saliency (max F-measure, mIoU), surface normals (angular error), and the multi-task
Δm of Maninis et al. (2019) that summarises them against a baseline.

Every meter takes CPU (or any-device) torch tensors batch by batch with ``update(pred, target)`` and returns
plain floats from ``compute()``; ``reset()`` starts over. Target conventions are those of
:func:`mmadapt.data.formats.pascal_context.load_dense_labels`: class maps int ``[B, H, W]`` with 255 = ignore,
saliency ``{0, 1}`` (255 ignored), normals ``[B, H, W, 3]`` unit vectors with ``(0, 0, 0)`` = invalid.

* :class:`SegmentationMeter`: a confusion matrix accumulated with ``bincount``; mIoU over the classes that
  occur in the target or the prediction (of the pixels scored), pixel accuracy, per-class IoU.
* :class:`SaliencyMeter`: per image and threshold ``t`` (pixels with ``p >= t`` are salient) precision and
  recall; both averaged over images, then ``F_β(t) = (1 + β²) P R / (β² P + R)`` with β² = 0.3; ``maxF`` is
  its maximum over the thresholds. A 0 / 0 precision (nothing predicted) or recall (nothing salient) counts
  as 1: an image with no salient pixel predicted empty scores F = 1. Also the dataset-level two-class mIoU
  of the map binarised at 0.5 (``p >= 0.5``).
* :class:`NormalsMeter`: the angle between the normalised prediction and the target over valid pixels, in
  degrees; mean, RMSE and the "within t°" shares are exact; the median comes from a histogram of
  1/1000° bins (off by less than 0.001°), so memory does not grow with the data.

All results are percentages except the angles (degrees). ``compute()`` on a meter that has seen no scored
pixel raises ``RuntimeError`` naming the meter; mismatched shapes raise ``ValueError`` naming both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from mmadapt.errors import ConfigError

__all__ = ["SegmentationMeter", "SaliencyMeter", "NormalsMeter", "multitask_delta"]


def _shape(t: torch.Tensor) -> str:
    return f"[{', '.join(str(s) for s in t.shape)}]"


class SegmentationMeter:
    """Confusion-matrix mIoU of class maps.

    ``update(pred, target)``: ``pred`` int class indices ``[B, H, W]`` or scores / logits ``[B, C, H, W]``
    (``C = n_classes``, argmax taken); ``target`` int ``[B, H, W]``, ``ignore_index`` pixels skipped.
    ``compute()`` → ``{"mIoU", "pixel_acc", "per_class_iou"}`` in percent; ``per_class_iou[c]`` is ``None``
    for a class absent from both prediction and target (of the scored pixels), and such classes do not
    enter the mean.
    """

    def __init__(self, n_classes: int, ignore_index: int = 255) -> None:
        if n_classes < 1:
            raise ConfigError(f"SegmentationMeter: n_classes must be >= 1, got {n_classes}")
        if 0 <= ignore_index < n_classes:
            raise ConfigError(f"SegmentationMeter: ignore_index {ignore_index} is a class index (n_classes "
                              f"{n_classes})")
        self.n_classes = n_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        """Forget every update."""
        self.confusion = torch.zeros(self.n_classes, self.n_classes, dtype=torch.int64)  # [target, pred]

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` ``[B, H, W]`` (indices) or ``[B, C, H, W]`` (scores), ``target`` ``[B, H, W]``."""
        name = type(self).__name__
        if target.dim() != 3:
            raise ValueError(f"{name}: target must be [B, H, W], got {_shape(target)}")
        if pred.dim() == 4:
            if pred.shape[0] != target.shape[0] or pred.shape[2:] != target.shape[1:]:
                raise ValueError(f"{name}: pred {_shape(pred)} does not match target {_shape(target)} "
                                 f"(expected [B, C, H, W] with target [B, H, W])")
            if pred.shape[1] != self.n_classes:
                raise ValueError(f"{name}: pred {_shape(pred)} has {pred.shape[1]} channels, expected "
                                 f"n_classes = {self.n_classes}")
            pred = pred.argmax(dim=1)
        elif pred.shape != target.shape:
            raise ValueError(f"{name}: pred {_shape(pred)} does not match target {_shape(target)}")
        if pred.is_floating_point():
            raise ValueError(f"{name}: pred {_shape(pred)} holds floats; pass class indices [B, H, W] or "
                             f"scores [B, C, H, W]")
        pred, target = pred.detach().cpu().long().flatten(), target.detach().cpu().long().flatten()
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        self._check_range(target, "target")
        self._check_range(pred, "pred")
        n = self.n_classes
        self.confusion += torch.bincount(target * n + pred, minlength=n * n).reshape(n, n)

    def merge(self, other: "SegmentationMeter") -> None:
        """Add another meter's updates (e.g. another rank's batches): the same as having seen them here."""
        self.confusion += other.confusion

    def _check_range(self, values: torch.Tensor, what: str) -> None:
        if values.numel() and (values.min() < 0 or values.max() >= self.n_classes):
            bad = values[(values < 0) | (values >= self.n_classes)][0]
            raise ValueError(f"{type(self).__name__}: {what} holds class {int(bad)}, outside [0, "
                             f"{self.n_classes}) and not ignore_index {self.ignore_index}")

    def compute(self) -> dict:
        """``{"mIoU": %, "pixel_acc": %, "per_class_iou": [% or None] * n_classes}``."""
        total = int(self.confusion.sum())
        if total == 0:
            raise RuntimeError(f"{type(self).__name__}.compute: no scored pixels (no update, or every target "
                               f"pixel was ignore_index {self.ignore_index})")
        confusion = self.confusion.double()
        tp = confusion.diag()
        union = confusion.sum(0) + confusion.sum(1) - tp
        present = union > 0
        iou = torch.where(present, tp / union.clamp(min=1), torch.zeros_like(tp)) * 100
        return {
            "mIoU": float(iou[present].mean()),
            "pixel_acc": float(tp.sum() / total * 100),
            "per_class_iou": [float(v) if p else None for v, p in zip(iou.tolist(), present.tolist())],
        }


class SaliencyMeter:
    """Max F-measure (β² = 0.3) over thresholds and the mIoU at 0.5 of saliency probabilities.

    ``update(pred, target)``: ``pred`` probabilities in [0, 1], ``[B, H, W]`` (or ``[B, 1, H, W]``);
    ``target`` ``[B, H, W]`` in {0, 1}, 255 ignored. ``compute()`` → ``{"maxF", "maxF_threshold", "mIoU"}``
    (percent, except the threshold). Images whose pixels are all ignored are skipped.
    """

    def __init__(self, thresholds: Sequence[float] | None = None, beta2: float = 0.3, ignore_index: int = 255
                 ) -> None:
        values = torch.linspace(0.01, 0.99, 99, dtype=torch.float64) if thresholds is None else \
            torch.as_tensor(list(thresholds), dtype=torch.float64)
        if values.dim() != 1 or values.numel() == 0:
            raise ConfigError("SaliencyMeter: thresholds must be a non-empty list of numbers")
        if (values < 0).any() or (values > 1).any() or (values.numel() > 1 and (values.diff() <= 0).any()):
            raise ConfigError(f"SaliencyMeter: thresholds must increase strictly within [0, 1], got "
                              f"{values.tolist()}")
        if beta2 <= 0:
            raise ConfigError(f"SaliencyMeter: beta2 must be > 0, got {beta2}")
        self.thresholds = values
        self.beta2 = float(beta2)
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        """Forget every update."""
        self._rows: list[tuple[torch.Tensor, torch.Tensor]] = []  # (precision, recall) per scored image, in order
        self._iou = SegmentationMeter(2, ignore_index=self.ignore_index)

    def merge(self, other: "SaliencyMeter") -> None:
        """Add another meter's images after this one's: bit-identical to having updated this meter with them."""
        self._rows.extend(other._rows)
        self._iou.merge(other._iou)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of probability maps ``[B, H, W]`` and {0, 1} targets ``[B, H, W]``."""
        name = type(self).__name__
        if pred.dim() == 4 and pred.shape[1] == 1:
            pred = pred[:, 0]
        if target.dim() != 3 or pred.shape != target.shape:
            raise ValueError(f"{name}: pred {_shape(pred)} does not match target {_shape(target)} "
                             f"(expected both [B, H, W])")
        pred = pred.detach().cpu().double()
        target = target.detach().cpu().long()
        if not torch.isfinite(pred).all() or (pred < 0).any() or (pred > 1).any():
            raise ValueError(f"{name}: pred must hold probabilities in [0, 1] (apply a sigmoid to logits), got "
                             f"values in [{float(pred.min())}, {float(pred.max())}]")
        valid = target != self.ignore_index
        if ((target[valid] != 0) & (target[valid] != 1)).any():
            raise ValueError(f"{name}: target must hold 0, 1 or {self.ignore_index}")
        self._iou.update((pred >= 0.5).long(), target)
        n_thresholds = self.thresholds.numel()
        # bucket b = number of thresholds <= p: the pixel is salient at threshold k exactly when b > k
        buckets = torch.bucketize(pred, self.thresholds, right=True)  # [B, H, W] in 0..T
        for b in range(pred.shape[0]):
            keep = valid[b]
            if not keep.any():
                continue
            bucket, positive = buckets[b][keep], target[b][keep] == 1
            hist_pos = torch.bincount(bucket[positive], minlength=n_thresholds + 1).double()
            hist_all = torch.bincount(bucket, minlength=n_thresholds + 1).double()
            # predicted salient at threshold k: sum over buckets > k (reverse cumulative sum, shifted by one)
            tp = hist_pos.flip(0).cumsum(0).flip(0)[1:]
            predicted = hist_all.flip(0).cumsum(0).flip(0)[1:]
            actual = float(positive.sum())
            precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.ones_like(tp))
            recall = tp / actual if actual > 0 else torch.ones_like(tp)
            self._rows.append((precision, recall))

    def compute(self) -> dict[str, float]:
        """``{"maxF": %, "maxF_threshold": t, "mIoU": %}``."""
        if not self._rows:
            raise RuntimeError(f"{type(self).__name__}.compute: no scored image (no update, or every target "
                               f"pixel was ignore_index {self.ignore_index})")
        n = self.thresholds.numel()
        precision_sum, recall_sum = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
        for p, r in self._rows:  # summed image by image, in order
            precision_sum += p
            recall_sum += r
        precision, recall = precision_sum / len(self._rows), recall_sum / len(self._rows)
        denominator = self.beta2 * precision + recall
        f = torch.where(denominator > 0, (1 + self.beta2) * precision * recall / denominator.clamp(min=1e-300),
                        torch.zeros_like(precision))
        best = int(f.argmax())
        return {"maxF": float(f[best] * 100), "maxF_threshold": float(self.thresholds[best]),
                "mIoU": self._iou.compute()["mIoU"]}


class NormalsMeter:
    """Angular error (degrees) of predicted surface normals over the valid target pixels.

    ``update(pred, target)``: ``target`` ``[B, H, W, 3]`` unit vectors, zero (norm < 0.5) = invalid;
    ``pred`` either channels-last ``[B, H, W, 3]`` (the target's shape; this reading wins when both fit) or
    channels-first ``[B, 3, H, W]`` (a decoder's raw output); it is normalised here (a zero prediction
    scores 90°). ``compute()`` → ``{"mean", "median", "rmse"}`` in degrees and ``{"within_11.25",
    "within_22.5", "within_30"}`` in percent of the valid pixels.
    """

    WITHIN: tuple[float, ...] = (11.25, 22.5, 30.0)
    _BINS_PER_DEGREE = 1000

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every update."""
        self._count = 0
        self._sum = 0.0
        self._sum_sq = 0.0
        self._within = [0] * len(self.WITHIN)
        self._hist = torch.zeros(180 * self._BINS_PER_DEGREE, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` ``[B, H, W, 3]`` or ``[B, 3, H, W]``, ``target`` ``[B, H, W, 3]``."""
        name = type(self).__name__
        if target.dim() != 4 or target.shape[-1] != 3:
            raise ValueError(f"{name}: target must be [B, H, W, 3], got {_shape(target)}")
        if pred.shape != target.shape:
            b, h, w, _ = target.shape
            if pred.shape != (b, 3, h, w):
                raise ValueError(f"{name}: pred {_shape(pred)} does not match target {_shape(target)} "
                                 f"(expected pred [B, H, W, 3] or [B, 3, H, W])")
            pred = pred.permute(0, 2, 3, 1)
        pred = pred.detach().cpu().double().reshape(-1, 3)
        target = target.detach().cpu().double().reshape(-1, 3)
        if not torch.isfinite(pred).all():
            raise ValueError(f"{name}: pred holds non-finite values")
        target_norm = target.norm(dim=1)
        valid = torch.isfinite(target).all(dim=1) & (target_norm >= 0.5)
        pred, target = pred[valid], target[valid] / target_norm[valid, None]
        if not len(pred):
            return
        pred = pred / pred.norm(dim=1, keepdim=True).clamp(min=1e-12)
        # atan2(|a x b|, a . b): accurate for small and large angles alike (acos is not near 0 and 180)
        angle = torch.rad2deg(torch.atan2(torch.linalg.cross(pred, target).norm(dim=1), (pred * target).sum(1)))
        self._count += len(angle)
        self._sum += float(angle.sum())
        self._sum_sq += float((angle * angle).sum())
        for i, limit in enumerate(self.WITHIN):
            self._within[i] += int((angle < limit).sum())
        bins = (angle * self._BINS_PER_DEGREE).long().clamp(0, len(self._hist) - 1)
        self._hist += torch.bincount(bins, minlength=len(self._hist))

    def merge(self, other: "NormalsMeter") -> None:
        """Add another meter's batches after this one's (each batch's sum was added once, so merging batch
        meters in order adds the same floats in the same order as one meter updated batch by batch)."""
        self._count += other._count
        self._sum += other._sum
        self._sum_sq += other._sum_sq
        self._within = [a + b for a, b in zip(self._within, other._within)]
        self._hist += other._hist

    def compute(self) -> dict[str, float]:
        """``{"mean", "median", "rmse"}`` (degrees), ``{"within_11.25", "within_22.5", "within_30"}`` (%)."""
        if self._count == 0:
            raise RuntimeError(f"{type(self).__name__}.compute: no valid pixels (no update, or every target "
                               f"normal was the zero vector)")
        out = {"mean": self._sum / self._count, "median": self._median(),
               "rmse": math.sqrt(self._sum_sq / self._count)}
        for limit, n in zip(self.WITHIN, self._within):
            out[f"within_{limit:g}"] = n / self._count * 100
        return out

    def _median(self) -> float:
        """The 50% quantile of the histogram, linearly interpolated inside its bin."""
        cumulative = self._hist.cumsum(0).double()
        half = self._count / 2
        k = int(torch.searchsorted(cumulative, torch.tensor([half], dtype=torch.float64))[0])
        k = min(k, len(self._hist) - 1)  # first bin whose cumulative count reaches half
        below = int(cumulative[k - 1]) if k > 0 else 0
        inside = int(self._hist[k])
        fraction = (half - below) / inside if inside else 0.0
        return (k + fraction) / self._BINS_PER_DEGREE


def multitask_delta(scores: Mapping[str, float], baseline: Mapping[str, float], lower_is_better: set[str]
                    ) -> float:
    """Δm of Maninis et al. (2019), percent: ``mean_i (-1)^{l_i} (M_i - M_b,i) / M_b,i * 100`` over the
    metrics of ``baseline``, with ``l_i = 1`` for the metrics in ``lower_is_better`` (e.g. normals' mean
    angular error). Positive means better than the baseline.

    Raises:
        ValueError: a baseline metric missing from ``scores``, a ``lower_is_better`` name that is not a
            baseline metric, a zero or non-finite baseline value, or an empty baseline.
    """
    if not baseline:
        raise ValueError("multitask_delta: the baseline has no metrics")
    missing = sorted(set(baseline) - set(scores))
    if missing:
        raise ValueError(f"multitask_delta: scores lack the baseline metric(s) {missing}")
    unknown = sorted(set(lower_is_better) - set(baseline))
    if unknown:
        raise ValueError(f"multitask_delta: lower_is_better names {unknown}, not baseline metrics "
                         f"{sorted(baseline)}")
    total = 0.0
    for key, base in baseline.items():
        if not math.isfinite(base) or base == 0:
            raise ValueError(f"multitask_delta: baseline {key!r} is {base}; Δm divides by it")
        sign = -1.0 if key in lower_is_better else 1.0
        total += sign * (float(scores[key]) - base) / base
    return total / len(baseline) * 100
