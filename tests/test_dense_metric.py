"""Dense prediction metrics against values computed by hand: segmentation mIoU with ignore pixels, saliency
max F-measure, normals angular error, multi-task Δm; streaming, edge cases and errors."""

from __future__ import annotations

import math

import pytest
import torch

from mmadapt.eval.dense_metric import NormalsMeter, SaliencyMeter, SegmentationMeter, multitask_delta

# 2x3, one ignored pixel. Valid pixels (target, pred): (0,0) (1,1) | (1,0) (1,1) (0,1)
TARGET = torch.tensor([[[0, 1, 255], [1, 1, 0]]])
PRED = torch.tensor([[[0, 1, 1], [0, 1, 1]]])


def test_segmentation_hand_computed():
    meter = SegmentationMeter(3)
    meter.update(PRED, TARGET)
    out = meter.compute()
    # class 0: tp 1, fp 1, fn 1 → 1/3; class 1: tp 2, fp 1, fn 1 → 2/4; class 2 absent → not averaged
    assert out["mIoU"] == pytest.approx((1 / 3 + 1 / 2) / 2 * 100)
    assert out["pixel_acc"] == pytest.approx(3 / 5 * 100)
    assert out["per_class_iou"][0] == pytest.approx(100 / 3)
    assert out["per_class_iou"][1] == pytest.approx(50.0)
    assert out["per_class_iou"][2] is None


def test_segmentation_streams_and_takes_logits():
    meter = SegmentationMeter(3)
    meter.update(PRED, TARGET)
    meter.update(TARGET.clamp(max=2), TARGET)  # a second, perfect batch (ignore stays ignored)
    # class 0: tp 1+2, fp 1, fn 1 → 3/5; class 1: tp 2+3, fp 1, fn 1 → 5/7
    assert meter.compute()["mIoU"] == pytest.approx((3 / 5 + 5 / 7) / 2 * 100)
    logits = torch.nn.functional.one_hot(PRED, 3).permute(0, 3, 1, 2).float() * 5
    again = SegmentationMeter(3)
    again.update(logits, TARGET)
    assert again.compute()["mIoU"] == pytest.approx((1 / 3 + 1 / 2) / 2 * 100)
    meter.reset()
    with pytest.raises(RuntimeError, match="SegmentationMeter"):
        meter.compute()


def test_segmentation_perfect_and_errors():
    target = torch.randint(0, 4, (2, 5, 7))
    meter = SegmentationMeter(4)
    meter.update(target.clone(), target)
    out = meter.compute()
    assert out["mIoU"] == 100.0 and out["pixel_acc"] == 100.0
    with pytest.raises(ValueError, match=r"pred \[2, 5, 6\] does not match target \[2, 5, 7\]"):
        meter.update(target[..., :6], target)
    with pytest.raises(ValueError, match="3 channels, expected n_classes = 4"):
        meter.update(torch.zeros(2, 3, 5, 7), target)
    with pytest.raises(ValueError, match="target holds class 7"):
        meter.update(target, torch.full_like(target, 7))
    empty = SegmentationMeter(4)
    empty.update(target, torch.full_like(target, 255))
    with pytest.raises(RuntimeError, match="SegmentationMeter.compute: no scored pixels"):
        empty.compute()


def test_saliency_maxf_hand_computed():
    meter = SaliencyMeter(thresholds=[0.2, 0.5, 0.8])
    target = torch.tensor([[[1, 0], [1, 0]], [[0, 0], [0, 1]]])
    pred = torch.tensor([[[0.9, 0.6], [0.3, 0.1]], [[0.1, 0.1], [0.1, 0.85]]])
    meter.update(pred, target)
    out = meter.compute()
    # image 1: t=.2 P 2/3 R 1; t=.5 P 1/2 R 1/2; t=.8 P 1 R 1/2. image 2: P = R = 1 at every threshold.
    # mean over images: t=.2 P 5/6 R 1; t=.5 P 3/4 R 3/4; t=.8 P 1 R 3/4 → F = 1.3 P R / (0.3 P + R)
    f = [1.3 * p * r / (0.3 * p + r) for p, r in ((5 / 6, 1.0), (0.75, 0.75), (1.0, 0.75))]
    assert out["maxF"] == pytest.approx(max(f) * 100) and out["maxF"] == pytest.approx(0.975 / 1.05 * 100)
    assert out["maxF_threshold"] == pytest.approx(0.8)
    # mIoU at 0.5 over all pixels: salient tp 2, fp 1, fn 1 → 1/2; background tp 4, fp 1, fn 1 → 4/6
    assert out["mIoU"] == pytest.approx((1 / 2 + 4 / 6) / 2 * 100)


def test_saliency_perfect_ignore_and_errors():
    target = torch.zeros(3, 8, 8, dtype=torch.long)
    target[:, 2:5, 3:6] = 1
    target[2] = 0  # an image with nothing salient, predicted empty: F = 1
    target[0, 0, 0] = 255
    pred = target.clamp(max=1).float()
    pred[0, 0, 0] = 0.7  # ignored pixel: would be a false positive
    meter = SaliencyMeter()
    assert len(meter.thresholds) == 99
    meter.update(pred, target)
    out = meter.compute()
    assert out["maxF"] == pytest.approx(100.0) and out["mIoU"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        meter.update(pred * 3 - 1, target)
    with pytest.raises(ValueError, match=r"pred \[3, 8, 7\] does not match target \[3, 8, 8\]"):
        meter.update(pred[..., :7], target)
    with pytest.raises(RuntimeError, match="SaliencyMeter"):
        SaliencyMeter().compute()


def normals_target():
    target = torch.zeros(2, 3, 4, 3)
    target[..., 2] = 1.0
    return target


def test_normals_angles():
    target = normals_target()
    same = NormalsMeter()
    same.update(target * 2.5, target)  # prediction normalised
    out = same.compute()
    assert out["mean"] == pytest.approx(0.0, abs=1e-6) and out["rmse"] == pytest.approx(0.0, abs=1e-6)
    assert out["median"] == pytest.approx(0.0, abs=1e-3)
    assert out["within_11.25"] == out["within_22.5"] == out["within_30"] == 100.0

    opposite = NormalsMeter()
    opposite.update(-target, target)
    assert opposite.compute()["mean"] == pytest.approx(180.0)
    assert opposite.compute()["within_30"] == 0.0

    rotated = NormalsMeter()
    pred = torch.zeros_like(target)
    pred[..., 0] = 1.0  # z → x: 90°
    rotated.update(pred.permute(0, 3, 1, 2), target)  # channels-first prediction
    out = rotated.compute()
    assert out["mean"] == pytest.approx(90.0) and out["median"] == pytest.approx(90.0, abs=1e-3)
    assert out["rmse"] == pytest.approx(90.0)


def test_normals_invalid_skipped_and_mixed_stats():
    target = normals_target()
    target[0, 0, :2] = 0.0  # two invalid pixels, predicted badly: must not count
    pred = target.clone()
    pred[0, 0, :2] = torch.tensor([0.0, 0.0, -1.0])
    angle = math.radians(20.0)
    pred[1, 0, 0] = torch.tensor([math.sin(angle), 0.0, math.cos(angle)])  # 20° off
    pred[1, 0, 1] = torch.tensor([0.0, 1.0, 0.0])  # 90° off
    meter = NormalsMeter()
    meter.update(pred, target)
    out = meter.compute()
    n = 2 * 3 * 4 - 2
    assert out["mean"] == pytest.approx((20 + 90) / n, rel=1e-6)
    assert out["rmse"] == pytest.approx(math.sqrt((20**2 + 90**2) / n), rel=1e-6)
    assert out["median"] == pytest.approx(0.0, abs=1e-3)
    assert out["within_11.25"] == pytest.approx((n - 2) / n * 100)
    assert out["within_22.5"] == pytest.approx((n - 1) / n * 100)
    with pytest.raises(ValueError, match=r"pred \[2, 3, 4\] does not match target \[2, 3, 4, 3\]"):
        meter.update(pred[..., 0], target)
    empty = NormalsMeter()
    empty.update(pred, torch.zeros_like(target))
    with pytest.raises(RuntimeError, match="NormalsMeter.compute: no valid pixels"):
        empty.compute()


def test_multitask_delta_signs():
    baseline = {"semseg": 50.0, "normals": 20.0}
    lower = {"normals"}
    assert multitask_delta(baseline, baseline, lower) == 0.0
    # mIoU +10% (better), angular error -10% (better) → +10
    assert multitask_delta({"semseg": 55.0, "normals": 18.0}, baseline, lower) == pytest.approx(10.0)
    # both worse by 10% → -10
    assert multitask_delta({"semseg": 45.0, "normals": 22.0}, baseline, lower) == pytest.approx(-10.0)
    # mixed: +20% and worse by 10% → +5
    assert multitask_delta({"semseg": 60.0, "normals": 22.0}, baseline, lower) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="lack the baseline metric"):
        multitask_delta({"semseg": 1.0}, baseline, lower)
    with pytest.raises(ValueError, match="lower_is_better names"):
        multitask_delta(baseline, baseline, {"depth"})
    with pytest.raises(ValueError, match="divides"):
        multitask_delta(baseline, {"semseg": 0.0}, set())
