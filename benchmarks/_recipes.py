"""Shared by the accuracy benchmarks: train one recipe with overrides, score it, print a results table."""

from __future__ import annotations

import time
from pathlib import Path


def train_recipe(recipe: Path, overrides: list[str], out: Path) -> tuple[dict, dict]:
    """Train ``recipe`` (+ ``overrides``) into ``out`` and evaluate it: (the scores of every task, and the
    trainable parameters — count and share of the whole model — with the wall time)."""
    import mmadapt

    cfg = mmadapt.load_recipe(recipe, [*overrides, f"output_dir={out}"])
    t0 = time.perf_counter()
    tasks = mmadapt.build_tasks(cfg)
    model = mmadapt.build_model(cfg, tasks)
    trainable = sum(p.numel() for p in model.trainable_parameters())
    total = sum(p.numel() for p in model.parameters())
    result = mmadapt.train(cfg, model=model, evaluate_after=True, quiet=True)
    return result.scores, {"trainable": trainable, "total": total, "trainable_pct": round(100 * trainable / total, 2),
                           "wall_s": round(time.perf_counter() - t0, 1)}


def run_recipe(recipe: Path, overrides: list[str], out: Path) -> dict:
    """:func:`train_recipe` of a classification recipe: held-out accuracy and mean-class accuracy, the chance /
    majority baselines, trainable parameters, wall time."""
    all_scores, info = train_recipe(recipe, overrides, out)
    scores = all_scores["classification"]
    return {"accuracy": scores["accuracy"], "mean_class_accuracy": scores["mean_class_accuracy"],
            **scores["baselines"], **info, "n_eval": scores["n_scored"]}


def print_table(results: dict[str, dict], first_column: str, width: int = 26) -> None:
    header = (f"{first_column:{width}s} {'acc %':>7s} {'mean-cls %':>10s} {'chance %':>8s} {'majority %':>10s} "
              f"{'trainable':>10s} {'train %':>7s} {'wall s':>7s}")
    print(header)
    print("-" * len(header))
    for label, r in results.items():
        print(f"{label:{width}s} {r['accuracy']:7.2f} {r['mean_class_accuracy']:10.2f} {r['chance']:8.2f} "
              f"{r['majority_class']:10.2f} {r['trainable']:10,d} {r['trainable_pct']:7.2f} {r['wall_s']:7.1f}")
