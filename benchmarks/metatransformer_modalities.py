"""Meta-Transformer on six modalities: one frozen zoo ViT, a trained tokenizer + head per modality.

    python benchmarks/metatransformer_modalities.py [--modalities image video ...] [--steps N] [--json out.json]

Runs each recipe of ``adapters/metatransformer/`` (synthetic data generated under ``data/`` on first use, the
wine table from scikit-learn's bundled copy, the zoo ViT built once and cached) and, for video, the same recipe with the frames of every clip shuffled
(``model.tokenizer.frame_order=shuffle``): the motion task needs the frame order, so that run must fall to
chance. Prints, per run: held-out accuracy and mean-class accuracy beside the chance and majority-class
baselines, trainable parameters (count and share of the whole model), and wall time (data + training +
evaluation, zoo build excluded).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODALITIES = ("image", "video", "audio", "point_cloud", "tabular", "tabular_wine", "graph")  # recipe names


def run(modality: str, overrides: list[str], out: Path) -> dict:
    import mmadapt

    cfg = mmadapt.load_recipe(ROOT / "adapters" / "metatransformer" / f"{modality}.yaml",
                              [*overrides, f"output_dir={out}"])
    t0 = time.perf_counter()
    tasks = mmadapt.build_tasks(cfg)
    model = mmadapt.build_model(cfg, tasks)
    trainable = sum(p.numel() for p in model.trainable_parameters())
    total = sum(p.numel() for p in model.parameters())
    result = mmadapt.train(cfg, model=model, evaluate_after=True, quiet=True)
    scores = result.scores["classification"]
    return {"accuracy": scores["accuracy"], "mean_class_accuracy": scores["mean_class_accuracy"],
            **scores["baselines"], "trainable": trainable, "trainable_pct": round(100 * trainable / total, 2),
            "wall_s": round(time.perf_counter() - t0, 1), "n_eval": scores["n_scored"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modalities", nargs="*", default=list(MODALITIES), choices=MODALITIES)
    ap.add_argument("--steps", type=int, default=None, help="train.max_steps for every run (default: the recipes')")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from mmadapt.zoo import resolve_pretrained

    resolve_pretrained("zoo:tiny-vit")  # build / verify the shared encoder once, outside the timings
    common = [f"train.max_steps={args.steps}"] if args.steps else []
    runs = [(m, m, []) for m in args.modalities]
    if "video" in args.modalities:
        runs.append(("video (frames shuffled)", "video", ["model.tokenizer.frame_order=shuffle"]))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, modality, extra in runs:
            results[label] = run(modality, common + extra, Path(tmp) / label.replace(" ", "_"))
            print(f"  {label}: {results[label]}", file=sys.stderr)
    header = f"{'modality':26s} {'acc %':>7s} {'mean-cls %':>10s} {'chance %':>8s} {'majority %':>10s} " \
             f"{'trainable':>10s} {'train %':>7s} {'wall s':>7s}"
    print(header)
    print("-" * len(header))
    for label, r in results.items():
        print(f"{label:26s} {r['accuracy']:7.2f} {r['mean_class_accuracy']:10.2f} {r['chance']:8.2f} "
              f"{r['majority_class']:10.2f} {r['trainable']:10,d} {r['trainable_pct']:7.2f} {r['wall_s']:7.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
