"""Classification and regression metrics from predictions and labels (what ``tasks.classification`` scores
its ``eval/<key>_predictions.jsonl`` with)."""

from __future__ import annotations

import math

import torch

__all__ = ["classification_scores", "regression_scores"]


def classification_scores(pred: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """Predicted class indices ``pred`` [N] against ``labels`` [N] → accuracy and mean-class accuracy in percent
    (the mean over the classes present in ``labels``) and the accuracy per class name."""
    per_class = {}
    for k, name in enumerate(classes):
        sel = labels == k
        if sel.any():
            per_class[name] = round(100.0 * (pred[sel] == k).float().mean().item(), 2)
    acc = 100.0 * (pred == labels).float().mean().item() if len(labels) else float("nan")
    mean_class = sum(per_class.values()) / len(per_class) if per_class else float("nan")
    return {"accuracy": round(acc, 2), "mean_class_accuracy": round(mean_class, 2), "per_class": per_class}


def regression_scores(pred: torch.Tensor, target: torch.Tensor) -> dict:
    """Predictions [N] (or [N, 1]) against ``target`` [N] → MSE, MAE and R² (1 − MSE / variance of the
    target; NaN for a constant target)."""
    pred = pred.view(len(target), -1)[:, 0]
    err = pred - target
    var = (target - target.mean()).square().mean().item() if len(target) else float("nan")
    mse = err.square().mean().item()
    return {"mse": round(mse, 6), "mae": round(err.abs().mean().item(), 6),
            "r2": round(1 - mse / var, 4) if var and not math.isnan(var) else float("nan")}
