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
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402
from _recipes import print_table, run_recipe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODALITIES = ("image", "video", "audio", "point_cloud", "tabular", "tabular_wine", "graph")  # recipe names


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
            recipe = ROOT / "adapters" / "metatransformer" / f"{modality}.yaml"
            results[label] = run_recipe(recipe, common + extra, Path(tmp) / label.replace(" ", "_"))
            print(f"  {label}: {results[label]}", file=sys.stderr)
    print_table(results, "modality")
    write_json(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
