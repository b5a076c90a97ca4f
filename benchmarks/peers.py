"""Peers: eP-ALM vs peft prompt tuning vs peft LoRA vs a LLaVA-style projector — the same frozen zoo models, the
same data, the same budget, one run.

    python benchmarks/peers.py [--methods epalm prompt_tuning lora llava] [--steps 400] [--batch 32] [--threads 1]
                               [--lr LR] [--quick] [--tune] [--json out.json]

Frozen: ``zoo:tiny-opt`` (LM) and ``zoo:tiny-vit`` (vision) in every method. Data: the synthetic scenes VQA as in
``adapters/epalm/demo.yaml`` (3000 training / 300 held-out images of ``$MMADAPT_HOME/data/scenes``, five
questions each; captioning off). Budget: ``--steps`` of ``--batch`` (400 of 32), cosine LR after 30 warm-up steps,
no weight decay, seed 0, one LR per method for every trained tensor (soft / virtual tokens included):

- ``epalm``: ``adapters/epalm/demo.yaml`` — the ViT's normed [CLS] of its last 6 layers through one shared
  connector, injected into the LM's last layers, + a 10-token soft prompt;
- ``prompt_tuning`` (peft prompt tuning): ``adapters/llava/synthetic.yaml`` with ``features: cls``,
  ``projector: linear`` — the image enters as one projected [CLS] token (PromptFuse-style) — + 10 peft virtual
  tokens (``prompt_tuning: 10``, ``prompt_init: sample_vocab``);
- ``lora`` (peft LoRA): ``features: cls``, ``projector: linear`` + LoRA r 8 (alpha 16) on the LM's q_proj /
  v_proj;
- ``llava`` (LLaVA-1.5-style projector): ``features: patches`` (all 64 patch tokens), ``projector: mlp2x_gelu``.

The LLaVA-recipe methods read the ViT's penultimate layer (``feature_layer: -2``). Every method trains in its own
subprocess (``--threads`` torch threads, ``OMP_NUM_THREADS`` likewise), so that its peak memory is its own.
Reported per method: held-out VQA accuracy after the budget (official scorer; overall and per question family),
the median train-step time (the trainer's clock from step 6 on: batch loading, forward, backward, AdamW), the
training's resident high-water mark (``VmHWM`` of that process after resetting it via ``/proc/self/clear_refs``
once the model is built; and its rise above the built model), trainable parameters and their share of the whole
model, the LM input length per sample (image / prefix tokens + prompt + answer + EOS, mean of 512 training
samples) and the LR; plus the constant-answer and question-type-prior baselines.

LRs (``DEFAULT_LR``) were chosen once per method by ``--tune``: the same budget at each LR of ``--tune-lrs``,
scored on a tuning set of 300 *other* scenes (seed 1, written to a temporary folder) — never on the held-out set.
``--quick`` is a smoke run (5 steps, 100 held-out questions). ``run(args)`` does the work and returns the results
as a dict (``parse_args(argv)`` builds ``args``); ``main()`` prints the table and writes ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import child_env, environment, fill_run_defaults, loadavg, run_json_child, write_json  # noqa: E402
from _recipes import FAMILIES, scenes_vqa_overrides, train_vqa  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EPALM = ROOT / "adapters" / "epalm" / "demo.yaml"
LLAVA = ROOT / "adapters" / "llava" / "synthetic.yaml"
CLS_LINEAR = ["model.adapter.features=cls", "model.adapter.projector=linear"]
#: id → (label, recipe, overrides)
METHODS = {
    "epalm": ("eP-ALM", EPALM, []),
    "prompt_tuning": ("peft prompt tuning", LLAVA, [*CLS_LINEAR, "model.adapter.prompt_tuning=10",
                                                    "model.adapter.prompt_init=sample_vocab"]),
    "lora": ("peft LoRA", LLAVA, [*CLS_LINEAR, "model.adapter.lora.r=8", "model.adapter.lora.alpha=16"]),
    "llava": ("LLaVA projector", LLAVA, ["model.adapter.features=patches", "model.adapter.projector=mlp2x_gelu"]),
}
#: the LR of each method, tuned once with --tune (400 steps of 32, LRs 1e-3 3e-3 1e-2 3e-2, and 3e-4 for LoRA
#: whose best was the grid's lowest; tuning-set VQA in benchmarks/README.md)
DEFAULT_LR = {"epalm": 1e-2, "prompt_tuning": 3e-3, "lora": 1e-3, "llava": 1e-2}
TUNE_LRS = [1e-3, 3e-3, 1e-2, 3e-2]
TUNE_SEED = 1


# --------------------------------------------------------------------------------------------- one method
def _child(args) -> dict:
    """One method, one LR, in this (fresh) process: train, measure, score."""
    import torch

    torch.set_num_threads(args.threads)
    recipe, extra = METHODS[args.child][1:]
    overrides = [*scenes_vqa_overrides(args.data, args.steps, args.batch, args.child_lr), *extra]
    if args.eval_samples:
        overrides.append(f"eval.max_samples={args.eval_samples}")
    if args.tune_root is not None:  # held-out scenes of another seed, for choosing the LR
        overrides += [f"tasks.vqa.eval.root={args.tune_root}", f"tasks.vqa.eval.seed={TUNE_SEED}"]
    return train_vqa(recipe, overrides, args.out, token_samples=args.token_samples, measure_memory=True)


def run_method(method: str, lr: float, args, out: Path, tune_root: Path | None = None) -> dict:
    """:func:`_child` in a subprocess (``--threads`` threads) → its results."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", method, "--child-lr", repr(lr),
           "--steps", str(args.steps), "--batch", str(args.batch), "--threads", str(args.threads),
           "--data", str(args.data), "--out", str(out), "--token-samples", str(args.token_samples),
           "--eval-samples", str(args.eval_samples or 0)]
    if tune_root is not None:
        cmd += ["--tune-root", str(tune_root)]
    threads = str(args.threads)
    env = child_env(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    result = run_json_child(cmd, f"peers: {method} at lr {lr:g}", env, wall_key="process_s")
    result["lr"] = lr
    print(f"  {METHODS[method][0]} (lr {lr:g}): VQA {result['vqa']:.2f}, {1000 * result['step_s_median']:.0f} ms/step, "
          f"peak {result['train_peak_mib']:.0f} MiB, {result['process_s']:.0f} s", file=sys.stderr, flush=True)
    return result


# ----------------------------------------------------------------------------------------------- the run
def run(args: argparse.Namespace) -> dict:
    """Every method of ``args.methods`` (or, with ``args.tune``, every method × LR of ``args.tune_lrs`` on the
    tuning set) → ``{"settings", "env", "results" (by method id), "methods" (a flat list: id, name, accuracy,
    step_ms, peak_mib, trainable, lm_tokens, lr), "baselines"}`` (tuning: ``"tuning"`` {method: {lr: VQA}} and
    ``"best_lr"`` instead of ``results`` / ``methods``)."""

    env = environment(threads=args.threads, date=time.strftime("%Y-%m-%d"))
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                if not k.startswith("child") and k not in ("out", "tune_root")}
    t0 = time.perf_counter()
    out: dict = {"settings": settings, "env": env}
    with tempfile.TemporaryDirectory(prefix="mmadapt-peers-") as tmp:
        tmp = Path(tmp)
        if args.tune:
            grid = {m: {} for m in args.methods}
            for method in args.methods:
                for lr in args.tune_lrs:
                    r = run_method(method, lr, args, tmp / f"{method}-{lr:g}", tune_root=tmp / "tune-scenes")
                    grid[method][f"{lr:g}"] = {"vqa": r["vqa"], "final_loss": r["final_loss"]}
            out["tuning"] = grid
            out["best_lr"] = {m: float(max(g, key=lambda lr: g[lr]["vqa"])) for m, g in grid.items()}
            out["baselines"] = r["baselines"]
        else:
            results = {m: run_method(m, args.lr if args.lr is not None else DEFAULT_LR[m], args, tmp / m)
                       for m in args.methods}
            out["baselines"] = next(iter(results.values())).pop("baselines")
            for r in results.values():
                r.pop("baselines", None)
            out["results"] = results
            out["methods"] = [{"id": m, "name": METHODS[m][0], "accuracy": r["vqa"],
                               "step_ms": round(1000 * r["step_s_median"], 1), "peak_mib": r["train_peak_mib"],
                               "trainable": r["trainable"], "lm_tokens": r["lm_tokens_per_sample"], "lr": r["lr"]}
                              for m, r in results.items()]  # a flat summary (python -m benchmarks reads it)
    env["loadavg_end"] = loadavg()
    env["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def table(res: dict) -> str:
    """The results of :func:`run` as a text table."""
    lines = []
    base = res["baselines"]
    s, e = res["settings"], res["env"]
    if "tuning" in res:
        lrs = list(next(iter(res["tuning"].values())))
        lines.append(f"{'method (tuning set VQA %)':28s}" + "".join(f"{'lr ' + lr:>10s}" for lr in lrs)
                     + f"{'best':>8s}")
        for m, g in res["tuning"].items():
            lines.append(f"{METHODS[m][0]:28s}" + "".join(f"{g[lr]['vqa']:10.2f}" for lr in lrs)
                         + f"{res['best_lr'][m]:8g}")
    else:
        families = list(FAMILIES.values())
        header = (f"{'method':20s}{'VQA %':>7s}" + "".join(f"{f:>7s}" for f in families)
                  + f"{'step ms':>8s}{'peak MiB':>9s}{'Δ MiB':>7s}{'trainable':>10s}{'share %':>8s}"
                  f"{'LM tok':>7s}{'lr':>7s}{'wall s':>7s}")
        lines += [header, "-" * len(header)]
        for m, r in res["results"].items():
            lines.append(f"{METHODS[m][0]:20s}{r['vqa']:7.2f}"
                         + "".join(f"{r['families'].get(f, float('nan')):7.2f}" for f in families)
                         + f"{1000 * r['step_s_median']:8.0f}{r['train_peak_mib']:9.0f}"
                         f"{r['train_peak_delta_mib']:7.0f}"
                         f"{r['trainable']:10,d}{r['trainable_pct']:8.2f}{r['lm_tokens_per_sample']:7.1f}"
                         f"{r['lr']:7g}{r['wall_s']:7.1f}")
    lines.append(f"baselines: constant answer {base['constant']:.2f}, question-type prior "
                 f"{base['question_type_prior']:.2f} ({s['steps']} steps of {s['batch']}, cosine after 30 warm-up "
                 "steps; "
                 f"{e['threads']} thread(s), {e['cpu']}, load {e['loadavg_start']} → {e['loadavg_end']}, "
                 f"{e['wall_s']:.0f} s)")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--steps", type=int, default=None, help="train.max_steps of every run (default 400; --quick: 5)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=None, help="one LR for every method (default: each its tuned LR)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    ap.add_argument("--data", type=Path, default=None, help="scenes root (default: $MMADAPT_HOME/data/scenes)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 5 steps, 100 held-out questions")
    ap.add_argument("--tune", action="store_true", help="choose each method's LR on a tuning set (see docstring)")
    ap.add_argument("--tune-lrs", type=float, nargs="*", default=TUNE_LRS)
    ap.add_argument("--json", type=Path, default=None)
    # what the parent passes to each method's subprocess
    ap.add_argument("--child", choices=list(METHODS), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-lr", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tune-root", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--token-samples", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--eval-samples", type=int, default=None, help=argparse.SUPPRESS)
    return fill_run_defaults(ap.parse_args(argv), {"steps": (5, 400), "token_samples": (64, 512),
                                                    "eval_samples": (100, 0)})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:  # one method in this process: its results as the last line of stdout
        print(json.dumps(_child(args)))
        return 0
    res = run(args)
    print(table(res))
    write_json(res, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
