"""Shared by the accuracy benchmarks: train one recipe with overrides, score it, print a results table; for the
perceptual-LM VQA benchmarks (solo_vs_epalm.py, peers.py), :func:`train_vqa` with step times, LM sequence
lengths, per-question-family accuracy, the baselines and, optionally, the training's peak memory."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from _common import mib, proc_status, reset_peak, step_seconds

#: question families of the synthetic scenes VQA (the scorer's question types → short names)
FAMILIES = {"what color is the": "color", "what shape is the": "shape", "how many": "count", "is the": "side",
            "is there a": "yes/no"}


def train_recipe(recipe: Path, overrides: list[str], out: Path) -> tuple[dict, dict]:
    """Train ``recipe`` (+ ``overrides``) into ``out`` and evaluate it: (the scores of every task, and the
    trainable parameters — count and share of the whole model — with the wall time)."""
    import mmadapt

    t0 = time.perf_counter()
    cfg, tasks, model, params = build_recipe(recipe, overrides, out)
    result = mmadapt.train(cfg, model=model, evaluate_after=True, quiet=True)
    return result.scores, {**params, "wall_s": round(time.perf_counter() - t0, 1)}


def build_recipe(recipe: Path, overrides: list[str], out: Path) -> tuple:
    """``recipe`` (+ ``overrides``, output to ``out``) → (config, tasks, model, its trainable parameters: count,
    total and share in %)."""
    import mmadapt

    cfg = mmadapt.load_recipe(recipe, [*overrides, f"output_dir={out}"])
    tasks = mmadapt.build_tasks(cfg)
    model = mmadapt.build_model(cfg, tasks)
    trainable = sum(p.numel() for p in model.trainable_parameters())
    total = sum(p.numel() for p in model.parameters())
    return cfg, tasks, model, {"trainable": trainable, "total": total,
                               "trainable_pct": round(100 * trainable / total, 2)}


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


def scenes_vqa_overrides(data: Path, steps: int, batch: int, lr: float, seed: int = 0) -> list[str]:
    """The overrides every scenes-VQA benchmark run shares: VQA only (captioning off), ``steps`` of ``batch``, one
    ``lr`` for every trained tensor (soft prompts included), cosine after 30 warm-up steps, no weight decay, the
    scenes under ``data`` for training and held-out evaluation."""
    return ["tasks.caption=null", f"train.max_steps={steps}", f"train.batch_size={batch}", f"train.lr={lr}",
            f"train.prompt_lr={lr}", "train.warmup_steps=30", "train.weight_decay=0.0", f"train.seed={seed}",
            "eval.batch_size=100", *[f"tasks.vqa.{split}.root={data}" for split in ("train", "eval")]]


def lm_tokens_per_sample(model, examples) -> float:
    """Mean number of real LM input tokens (prefix / image span + prompt + answer + EOS) per sample."""
    import torch

    lengths = []
    with torch.no_grad():
        for start in range(0, len(examples), 64):
            inputs, _ = model.collate_train(examples[start:start + 64])
            text = model.tokenize(inputs["prefix"], inputs["target"], inputs["prefix_loss_weight"])
            perception = model.perceive(inputs["pixel_values"].to(model.device))
            _, _, _, valid = model.prefill_inputs(text, perception)
            lengths += valid.sum(dim=1).tolist()
    return statistics.mean(lengths)


def train_vqa(recipe: Path, overrides: list[str], out: Path, token_samples: int = 512,
              measure_memory: bool = False, full_scores: bool = False) -> dict:
    """Train a perceptual-LM ``recipe`` (+ ``overrides``) into ``out``, then score its ``vqa`` task.

    Returns held-out VQA accuracy (overall and per question family), trainable parameters (count and share of
    the whole model), the median train-step time (the trainer's clock from step 6 on: batch loading, forward,
    backward, AdamW), the mean LM input length of ``token_samples`` training samples, the mean loss of the last
    20 steps, wall time and the constant-answer / question-type-prior baselines. ``measure_memory``: also the
    training's resident high-water mark (``VmHWM`` after resetting it once the model is built and DeepSpeed
    imported; run one training per process, or the peaks of several mix) and its rise above the built model.
    ``full_scores``: also the scorer's whole output under ``"scores"``.
    """
    import mmadapt
    from mmadapt.api import training_examples

    t0 = time.perf_counter()
    cfg, tasks, model, params = build_recipe(recipe, overrides, out)
    tokens = lm_tokens_per_sample(model, training_examples(cfg, tasks)[:token_samples])
    memory = {}
    if measure_memory:
        import deepspeed  # noqa: F401  (imported before the reset: its modules are not training memory)

        built = proc_status()["VmRSS"]
        memory["hwm_reset"] = reset_peak()
    result = mmadapt.train(cfg, model=model, quiet=True)
    if measure_memory:
        peak = proc_status()["VmHWM"]
        memory.update(model_rss_mib=round(mib(built), 1), train_peak_mib=round(mib(peak), 1),
                      train_peak_delta_mib=round(mib(peak - built), 1))
    steps = step_seconds(result.records)
    steps = steps[5:] or steps  # the first steps warm up allocators
    scores = mmadapt.evaluate(model, cfg, tasks=tasks, quiet=True)["vqa"]
    return {"vqa": scores["overall"],
            "families": {FAMILIES[q]: v for q, v in scores["perQuestionType"].items() if q in FAMILIES},
            "n_eval": len(scores["perQuestion"]),
            **params, "step_s_median": round(statistics.median(steps), 4), "lm_tokens_per_sample": round(tokens, 1),
            "final_loss": round(statistics.mean(r["loss"] for r in result.records[-20:]), 4),
            **memory, "wall_s": round(time.perf_counter() - t0, 1), "baselines": tasks["vqa"].baselines(out),
            **({"scores": scores} if full_scores else {})}
