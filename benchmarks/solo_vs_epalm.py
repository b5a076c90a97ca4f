"""SOLO vs eP-ALM on the synthetic scenes VQA, the same frozen zoo:tiny-opt, one run.

    python benchmarks/solo_vs_epalm.py [--methods ...] [--steps N] [--json out.json]

Every method trains on the same data (the synthetic scenes, 3000 training / 300 held-out images as in
``adapters/epalm/demo.yaml``, VQA only: five questions per image), with the same steps, batch, learning
rate schedule and seed:

- ``solo``: ``adapters/solo/synthetic.yaml`` — no vision encoder; 16-px patches of the 64×64 image through
  one linear map into the frozen LM's input (patch embedding + 4 token embeddings trained); SOLO's defaults
  (the authors'): images resized to multiples of the patch (a no-op on the 64×64 scenes), the loss on the
  answer + EOS only, averaged over the batch's answer tokens;
- ``solo (before)``: the same with mmadapt's earlier SOLO defaults (zero padding, the question scored at 0.1,
  per-sample mean);
- ``solo + lora``: ``solo`` plus peft LoRA (r 8) on the LM's q_proj / v_proj;
- ``epalm``: ``adapters/epalm/demo.yaml`` with eP-ALM's defaults (the authors') in place of what the demo
  pins: the frozen ``zoo:tiny-vit``'s [CLS] tokens injected into the LM's last layers (shared connector +
  10-token soft prompt, MLP-reparameterised at the LM's input width from N(0, 1), trained), every question and
  answer token scored, summed per sample, × 0.1;
- ``epalm (before)``: ``adapters/epalm/demo.yaml`` as it is — mmadapt's earlier eP-ALM defaults, which the demo
  keeps (a plain prompt from N(0, 0.02²), the question at 0.1, per-sample mean). On the 6-layer tiny LM with
  6 tokens both injection schedules write one token per layer, so the schedule is the same in both.

Prints held-out VQA accuracy (official scorer; overall and per question family), trainable parameters and
their share of the whole model, the median train-step time (forward + backward + AdamW + batch loading, from
the trainer's per-step clock), the LM sequence length per sample (image / prefix tokens + text tokens, mean
over training batches), wall time, and the constant-answer and question-type-prior baselines.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402
from _recipes import FAMILIES, scenes_vqa_overrides, train_vqa  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: eP-ALM's defaults (the authors'), in place of the earlier ones that adapters/epalm/demo.yaml pins
EPALM_DEFAULTS = ["model.adapter.prompt_mlp_hidden=null", "model.adapter.prompt_init_std=1.0",
                  "model.adapter.loss=authors", "model.adapter.lm_loss_weight=0.1", "tasks.vqa.prefix_loss_weight=null"]
#: mmadapt's earlier SOLO defaults
SOLO_BEFORE = ["model.adapter.image_fit=pad", "model.adapter.loss=weighted", "tasks.vqa.prefix_loss_weight=0.1"]
SOLO, EPALM = ROOT / "adapters" / "solo" / "synthetic.yaml", ROOT / "adapters" / "epalm" / "demo.yaml"
METHODS = {
    "solo": (SOLO, []),
    "solo (before)": (SOLO, SOLO_BEFORE),
    "solo + lora": (SOLO, ["model.adapter.lora.r=8"]),
    "epalm": (EPALM, EPALM_DEFAULTS),
    "epalm (before)": (EPALM, []),
}


def run(method: str, common: list[str], out: Path) -> dict:
    recipe, extra = METHODS[method]
    return train_vqa(recipe, [*common, *extra], out)


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
    common = scenes_vqa_overrides(data, args.steps, args.batch, args.lr)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            folder = method.replace(" + ", "_").replace(" (", "_").rstrip(")")
            results[method] = run(method, common, Path(tmp) / folder)
            print(f"  {method}: {results[method]}", file=sys.stderr)
    families = list(FAMILIES.values())
    header = (f"{'method':16s}{'VQA %':>8s}" + "".join(f"{f:>8s}" for f in families)
              + f"{'trainable':>11s}{'share %':>9s}{'step ms':>9s}{'LM tokens':>11s}{'wall s':>8s}")
    print(header)
    print("-" * len(header))
    for method, r in results.items():
        print(f"{method:16s}{r['vqa']:8.2f}" + "".join(f"{r['families'].get(f, float('nan')):8.2f}" for f in families)
              + f"{r['trainable']:11,d}{r['trainable_pct']:9.2f}{1000 * r['step_s_median']:9.0f}"
              f"{r['lm_tokens_per_sample']:11.1f}{r['wall_s']:8.1f}")
    base = next(iter(results.values()))["baselines"]
    print(f"baselines: constant answer {base['constant']:.2f}, question-type prior {base['question_type_prior']:.2f} "
          f"({args.steps} steps of {args.batch}, lr {args.lr:g}, cosine after 30 warm-up steps)")
    write_json({"settings": vars(args) | {"data": str(data), "json": str(args.json)}, "results": results},
               args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
