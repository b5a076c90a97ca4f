"""SOLO vs eP-ALM on the synthetic scenes VQA, the same frozen zoo:tiny-opt, one run.

    python benchmarks/solo_vs_epalm.py [--methods ...] [--steps N] [--json out.json]

Every method trains on the same data (the synthetic scenes, 3000 training / 300 held-out images as in
``adapters/epalm/demo.yaml``, VQA only: five questions per image), with the same steps, batch, learning
rate schedule and seed:

- ``solo``: ``adapters/solo/synthetic.yaml`` — no vision encoder; 16-px patches of the 64×64 image through
  one linear map into the frozen LM's input (patch embedding + 4 token embeddings trained);
- ``solo + lora``: the same plus peft LoRA (r 8) on the LM's q_proj / v_proj;
- ``epalm``: ``adapters/epalm/demo.yaml`` — the frozen ``zoo:tiny-vit``'s [CLS] tokens injected into the
  LM's last layers (shared connector + 10-token soft prompt trained).

Prints held-out VQA accuracy (official scorer; overall and per question family), trainable parameters and
their share of the whole model, the median train-step time (forward + backward + AdamW + batch loading, from
the trainer's per-step clock), the LM sequence length per sample (image / prefix tokens + text tokens, mean
over training batches), wall time, and the constant-answer and question-type-prior baselines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = {
    "solo": (ROOT / "adapters" / "solo" / "synthetic.yaml", []),
    "solo + lora": (ROOT / "adapters" / "solo" / "synthetic.yaml", ["model.adapter.lora.r=8"]),
    "epalm": (ROOT / "adapters" / "epalm" / "demo.yaml", []),
}
FAMILIES = {"what color is the": "color", "what shape is the": "shape", "how many": "count", "is the": "side",
            "is there a": "yes/no"}


def lm_tokens_per_sample(model, examples) -> float:
    """Mean number of real LM input tokens (prefix / image span + prompt + answer + EOS) per sample."""
    import torch

    lengths = []
    with torch.no_grad():
        for start in range(0, len(examples), 64):
            inputs, _ = model.collate_train(examples[start:start + 64])
            text = model.tokenize(inputs["prefix"], inputs["target"], inputs["prefix_loss_weight"])
            perception = model._perception(inputs["pixel_values"].to(model.device))
            _, _, _, valid = model._prefill_inputs(text, perception)
            lengths += valid.sum(dim=1).tolist()
    return statistics.mean(lengths)


def run(method: str, common: list[str], out: Path) -> dict:
    import mmadapt
    from mmadapt.api import training_examples

    recipe, extra = METHODS[method]
    cfg = mmadapt.load_recipe(recipe, [*common, *extra, f"output_dir={out}"])
    t0 = time.perf_counter()
    tasks = mmadapt.build_tasks(cfg)
    model = mmadapt.build_model(cfg, tasks)
    trainable = sum(p.numel() for p in model.trainable_parameters())
    total = sum(p.numel() for p in model.parameters())
    examples = training_examples(cfg, tasks)
    tokens = lm_tokens_per_sample(model, examples[:512])
    result = mmadapt.train(cfg, model=model, quiet=True)
    clock = [0.0] + [r["time"] for r in result.records]
    steps = [b - a for a, b in zip(clock, clock[1:])][5:]  # the first steps warm up allocators
    scores = mmadapt.evaluate(model, cfg, tasks=tasks, quiet=True)["vqa"]
    return {"vqa": scores["overall"],
            "families": {FAMILIES[q]: v for q, v in scores["perQuestionType"].items() if q in FAMILIES},
            "trainable": trainable, "total": total, "trainable_pct": round(100 * trainable / total, 2),
            "step_s_median": round(statistics.median(steps), 4), "lm_tokens_per_sample": round(tokens, 1),
            "final_loss": round(statistics.mean(r["loss"] for r in result.records[-20:]), 4),
            "wall_s": round(time.perf_counter() - t0, 1), "baselines": tasks["vqa"].baselines(out)}


def main() -> int:
    from mmadapt.zoo.cache import cache_root

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--steps", type=int, default=1000, help="train.max_steps of every run (the demo's 1000)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3, help="the eP-ALM demo's LR, for every trained tensor")
    ap.add_argument("--data", type=Path, default=None, help="scenes root (default: $MMADAPT_HOME/data/scenes)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    data = args.data or cache_root() / "data" / "scenes"
    common = ["tasks.caption=null", f"train.max_steps={args.steps}", f"train.batch_size={args.batch}",
              f"train.lr={args.lr}", f"train.prompt_lr={args.lr}", "train.warmup_steps=30", "train.weight_decay=0.0",
              "train.seed=0", "eval.batch_size=100",
              *[f"tasks.vqa.{split}.root={data}" for split in ("train", "eval")]]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            results[method] = run(method, common, Path(tmp) / method.replace(" + ", "_"))
            print(f"  {method}: {results[method]}", file=sys.stderr)
    families = list(FAMILIES.values())
    header = (f"{'method':14s}{'VQA %':>8s}" + "".join(f"{f:>8s}" for f in families)
              + f"{'trainable':>11s}{'share %':>9s}{'step ms':>9s}{'LM tokens':>11s}{'wall s':>8s}")
    print(header)
    print("-" * len(header))
    for method, r in results.items():
        print(f"{method:14s}{r['vqa']:8.2f}" + "".join(f"{r['families'].get(f, float('nan')):8.2f}" for f in families)
              + f"{r['trainable']:11,d}{r['trainable_pct']:9.2f}{1000 * r['step_s_median']:9.0f}"
              f"{r['lm_tokens_per_sample']:11.1f}{r['wall_s']:8.1f}")
    base = next(iter(results.values()))["baselines"]
    print(f"baselines: constant answer {base['constant']:.2f}, question-type prior {base['question_type_prior']:.2f} "
          f"({args.steps} steps of {args.batch}, lr {args.lr:g}, cosine after 30 warm-up steps)")
    if args.json:
        args.json.write_text(json.dumps({"settings": vars(args) | {"data": str(data), "json": str(args.json)},
                                         "results": results}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
