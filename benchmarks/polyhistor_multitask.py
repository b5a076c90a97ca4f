"""Polyhistor vs its baselines on the synthetic multi-task scenes, all on the same frozen zoo Swin, one run.

    python benchmarks/polyhistor_multitask.py [--methods ...] [--steps N] [--json out.json]

Every method trains ``adapters/polyhistor/synthetic.yaml`` (four tasks at once: semantic segmentation,
object parts, saliency, surface normals) with only ``model.adapter`` changed:

- ``polyhistor`` / ``polyhistor_lite``: hypernetwork-generated per-task adapters (Lite: one template and
  Layer-wise Scaling Kernels);
- ``per-task adapters``: one plain bottleneck set per task (the reference the paper compares against);
- ``shared adapter``: one bottleneck set for all tasks;
- ``lora``: peft LoRA (r 8) on the Swin attention's query / value, shared;
- ``decoders only``: the frozen encoder's features as they are.

Prints per task the held-out score (mIoU %, saliency maxF %, normals mean angular error in degrees, lower is
better), the score as a share of the per-task adapters' (for normals: their error / this error), the
multi-task Δm against the per-task adapters (Maninis et al.: mean relative gain, %), the adapter's trainable
parameters (decoders excluded; they are the same for every method) and wall time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "adapters" / "polyhistor" / "synthetic.yaml"
METHODS = {
    "polyhistor": "{name: polyhistor}",
    "polyhistor_lite": "{name: polyhistor_lite}",
    "per-task adapters": "{name: bottleneck, per_task: true}",
    "shared adapter": "{name: bottleneck, per_task: false}",
    "lora": "{name: lora, r: 8, alpha: 16}",
    "decoders only": "null",
}
REFERENCE = "per-task adapters"
HEADLINE = {"semseg": "mIoU", "parts": "mIoU", "saliency": "maxF", "normals": "mean"}
LOWER_IS_BETTER = {"normals"}


def run(method: str, adapter: str, steps: int | None, out: Path) -> dict:
    import mmadapt

    overrides = [f"model.adapter={adapter}", f"output_dir={out}"] + ([f"train.max_steps={steps}"] if steps else [])
    cfg = mmadapt.load_recipe(RECIPE, overrides)
    t0 = time.perf_counter()
    tasks = mmadapt.build_tasks(cfg)
    model = mmadapt.build_model(cfg, tasks)
    trainable = sum(p.numel() for p in model.trainable_parameters())
    decoders = sum(p.numel() for p in model.decoders.parameters())
    result = mmadapt.train(cfg, model=model, evaluate_after=True, quiet=True)
    scores = result.scores["dense"]
    return {"scores": {t: scores[t][m] for t, m in HEADLINE.items() if t in scores},
            "baselines": scores["baselines"], "adapter_params": trainable - decoders, "decoder_params": decoders,
            "wall_s": round(time.perf_counter() - t0, 1)}


def main() -> int:
    from mmadapt.eval.dense_metric import multitask_delta

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--steps", type=int, default=None, help="train.max_steps for every run (default: the recipe's)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    methods = [REFERENCE] + [m for m in args.methods if m != REFERENCE]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in methods:
            results[method] = run(method, METHODS[method], args.steps, Path(tmp) / method.replace(" ", "_"))
            print(f"  {method}: {results[method]}", file=sys.stderr)
    ref = results[REFERENCE]
    tasks = list(ref["scores"])
    for r in results.values():
        r["delta_m"] = round(multitask_delta(r["scores"], ref["scores"], LOWER_IS_BETTER), 2)
        r["share_of_reference"] = {
            t: round(100 * (ref["scores"][t] / r["scores"][t] if t in LOWER_IS_BETTER else r["scores"][t] / ref["scores"][t]), 1)
            for t in tasks}
        r["params_share_of_reference"] = round(100 * r["adapter_params"] / ref["adapter_params"], 1) \
            if ref["adapter_params"] else None
    cols = "".join(f"{t + ' (' + HEADLINE[t] + ')':>18s}" for t in tasks)
    header = f"{'method':20s}{cols}{'Δm %':>8s}{'adapter params':>16s}{'vs per-task':>12s}{'wall s':>8s}"
    print(header)
    print("-" * len(header))
    for method, r in results.items():
        cells = "".join(f"{r['scores'][t]:10.2f} ({r['share_of_reference'][t]:5.1f}%)" for t in tasks)
        share = f"{r['params_share_of_reference']:11.1f}%" if r["params_share_of_reference"] is not None else f"{'-':>12s}"
        print(f"{method:20s}{cells}{r['delta_m']:8.2f}{r['adapter_params']:16,d}{share}{r['wall_s']:8.1f}")
    base = ref["baselines"]
    print(f"{'constant predictors':20s}" + "".join(f"{base[t]:18.2f}" for t in tasks))
    print(f"decoders: {ref['decoder_params']:,d} trainable parameters in every method; (x%) = share of the per-task "
          "adapters' score (normals: their error / this error)")
    write_json(results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
