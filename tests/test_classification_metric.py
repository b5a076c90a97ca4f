"""Classification / regression metrics (mmadapt.eval.classification_metric), pinned against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from mmadapt.eval.classification_metric import classification_scores, regression_scores


def test_accuracy_mean_class_accuracy_and_per_class_by_hand():
    # labels: a a a b c; predictions right on 2 of 3 a's, the b, not the c
    scores = classification_scores(torch.tensor([0, 0, 1, 1, 0]), torch.tensor([0, 0, 0, 1, 2]), ["a", "b", "c", "d"])
    assert scores["accuracy"] == 60.0  # 3 of 5
    assert scores["per_class"] == {"a": 66.67, "b": 100.0, "c": 0.0}  # d has no sample: left out
    assert scores["mean_class_accuracy"] == pytest.approx((200 / 3 + 100 + 0) / 3, abs=0.01)


def test_regression_mse_mae_r2_by_hand():
    target = torch.tensor([1.0, 2.0, 3.0, 4.0])
    scores = regression_scores(torch.tensor([[1.5], [2.0], [2.0], [4.0]]), target)
    # errors 0.5, 0, -1, 0 → MSE 1.25 / 4, MAE 1.5 / 4; target variance 1.25 → R² = 1 - 0.3125 / 1.25
    assert scores == {"mse": 0.3125, "mae": 0.375, "r2": 0.75}
    assert math.isnan(regression_scores(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 3.0]))["r2"])
