"""What a real LM buys: frozen SmolLM2-135M-Instruct vs the zoo's tiny OPT under five adapters, on a real VQA
set (easy-VQA), then on the synthetic scenes where the zoo LM stalls — one run.

    python benchmarks/real_lm.py [--lms smollm2 tiny-opt] [--methods epalm llava prompt_tuning lora solo]
                                 [--steps 200] [--batch 16] [--threads 2] [--scenes-methods epalm llava]
                                 [--quick] [--json out.json]

Frozen in every run: the LM (``package:smollm2-135m-instruct``, 30 layers × 576, or ``zoo:tiny-opt``, 6 × 128)
and ``zoo:tiny-vit`` (SOLO reads raw patches and has no encoder). Same data and budget for every method and LM:

- easy-VQA (``format: easy_vqa``, the pip package's 64 × 64 images): the first ``--train-questions`` (20,000)
  training questions, the first ``--eval-questions`` (600) test questions, scored with the official VQA scorer
  (per answer type yes/no / other, per question template);
- ``--steps`` of ``--batch`` (200 of 16), cosine LR after 30 warm-up steps, no weight decay, seed 0, each
  method's LR as tuned on the zoo models by ``benchmarks/peers.py`` (not re-tuned for SmolLM2);
- the methods: ``epalm`` (``adapters/epalm/demo.yaml``: normed [CLS] of the ViT's last 6 layers through one
  shared connector into the LM's last layers + a 10-token soft prompt), ``llava`` (all 64 patch tokens of the
  ViT's penultimate layer through LLaVA-1.5's two-layer GELU MLP), ``prompt_tuning`` (one projected [CLS]
  token + 10 peft virtual tokens), ``lora`` (one projected [CLS] token + peft LoRA r 8 on q / v), ``solo``
  (``adapters/solo/synthetic.yaml``: 16-px raw patches through one linear map, no encoder).

Then the synthetic scenes VQA (``$MMADAPT_HOME/data/scenes``: 3000 training / 300 held-out images, 1–3 objects)
with SmolLM2 and ``--scenes-methods``, same budget, reported overall and on the held-out images with 2–3
objects, where "colour of the named shape" needs a lookup conditioned on the question.

Speed: the frozen LM runs in bf16 (``model.lm.dtype=bfloat16``; the trained parts and AdamW stay fp32) when this
CPU computes bf16 natively (:func:`mmadapt.zoo.native_bf16`), otherwise fp32 (emulated bf16 is far slower).
The frozen-feature cache is not used: ``zoo:tiny-vit`` (1.2 M parameters) is a small fraction of a SmolLM2 step.
Each run trains in its own subprocess (``--threads`` torch threads), so its peak memory is its own. Reported per
run: accuracy (overall, per answer type, per question type), the median train-step time (from step 6 on),
the training's resident high-water mark, trainable parameters and share; plus the constant-answer and
question-type-prior baselines of each data set. ``--quick``: a smoke run (3 steps, 50 held-out questions).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import child_env, environment, fill_run_defaults, loadavg, run_json_child, write_json  # noqa: E402
from _recipes import scenes_vqa_overrides, train_vqa  # noqa: E402
from peers import DEFAULT_LR, METHODS as PEER_METHODS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LMS = {"smollm2": "package:smollm2-135m-instruct", "tiny-opt": "zoo:tiny-opt"}
#: id → (label, recipe, overrides): peers.py's four, and SOLO
METHODS = {**PEER_METHODS, "solo": ("SOLO", ROOT / "adapters" / "solo" / "synthetic.yaml", [])}
LR = {**DEFAULT_LR, "solo": 3e-3}


def easy_vqa_overrides(train_questions: int, eval_questions: int) -> list[str]:
    return [f"tasks.vqa.train={{format: easy_vqa, split: train, limit: {train_questions}}}",
            f"tasks.vqa.eval={{format: easy_vqa, split: test, limit: {eval_questions}}}"]


def objects_per_image(task) -> dict[int, int]:
    """image id → number of objects, from each held-out scene's "how many" answer."""
    words = {"one": 1, "two": 2, "three": 3}
    return {s.image_id: int(words.get(s.answers[0].lower(), s.answers[0]))
            for s in task.split("eval").samples if s.question_type == "how many"}


# ---------------------------------------------------------------------------------------------- one run
def _child(args) -> dict:
    """One (data, LM, method) in this fresh process: train, measure, score."""
    import torch

    import mmadapt
    from mmadapt.zoo import native_bf16

    torch.set_num_threads(args.threads)
    recipe, extra = METHODS[args.child][1:]
    data = args.data if args.child_data == "scenes" else Path(tempfile.gettempdir())  # easy-vqa: roots overridden
    overrides = [*scenes_vqa_overrides(data, args.steps, args.batch, LR[args.child]), *extra,
                 f"model.lm.name={LMS[args.child_lm]}", "train.log_every=1"]
    if args.child_data == "easy_vqa":
        overrides += easy_vqa_overrides(args.train_questions, args.eval_questions)
    elif args.eval_questions_scenes:
        overrides.append(f"eval.max_samples={args.eval_questions_scenes}")
    bf16 = args.child_lm != "tiny-opt" and native_bf16()
    if bf16:
        overrides.append("model.lm.dtype=bfloat16")
    result = train_vqa(recipe, overrides, args.out, token_samples=64, measure_memory=True, full_scores=True)
    scores = result.pop("scores")
    result.update(lm_dtype="bfloat16" if bf16 else "float32", per_answer_type=scores["perAnswerType"],
                  per_question_type=scores["perQuestionType"])
    if args.child_data == "scenes":  # accuracy on the held-out scenes with 2-3 objects
        cfg = mmadapt.load_recipe(recipe, [*overrides, f"output_dir={args.out}"])
        task = mmadapt.build_tasks(cfg)["vqa"]
        count = objects_per_image(task)
        image_of = {s.question_id: s.image_id for s in task.split("eval").samples}
        many = [v for q, v in scores["perQuestion"].items() if count.get(image_of[int(q)], 0) >= 2]
        result["vqa_2_3_objects"] = round(sum(many) / len(many), 2) if many else None
        result["n_2_3_objects"] = len(many)
        result["objects_histogram"] = dict(Counter(count.values()))
    return result


def run_one(data: str, lm: str, method: str, args, out: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", method, "--child-lm", lm, "--child-data", data,
           "--steps", str(args.steps), "--batch", str(args.batch), "--threads", str(args.threads),
           "--data", str(args.data), "--out", str(out), "--train-questions", str(args.train_questions),
           "--eval-questions", str(args.eval_questions),
           "--eval-questions-scenes", str(args.eval_questions_scenes or 0)]
    threads = str(args.threads)
    env = child_env(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    r = run_json_child(cmd, f"real_lm: {data} {lm} {method}", env, wall_key="process_s")
    r["lr"] = LR[method]
    extra = f", 2-3 objects {r['vqa_2_3_objects']:.2f}" if data == "scenes" else ""
    print(f"  {data} {lm:9s} {METHODS[method][0]:20s} VQA {r['vqa']:6.2f}{extra}, "
          f"{1000 * r['step_s_median']:.0f} ms/step, peak {r['train_peak_mib']:.0f} MiB, {r['process_s']:.0f} s",
          file=sys.stderr, flush=True)
    return r


# ----------------------------------------------------------------------------------------------- the run
def run(args: argparse.Namespace) -> dict:
    env = environment(threads=args.threads, date=time.strftime("%Y-%m-%d"))
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                if not k.startswith("child") and k != "out"}
    t0 = time.perf_counter()
    out: dict = {"settings": settings, "env": env, "easy_vqa": {}, "scenes": {}, "baselines": {}}
    with tempfile.TemporaryDirectory(prefix="mmadapt-real-lm-") as tmp:
        tmp = Path(tmp)
        for lm in args.lms:
            for method in args.methods:
                r = run_one("easy_vqa", lm, method, args, tmp / f"easy-{lm}-{method}")
                out["baselines"]["easy_vqa"] = r.pop("baselines")
                out["easy_vqa"][f"{lm}/{method}"] = r
        for method in args.scenes_methods:
            r = run_one("scenes", "smollm2", method, args, tmp / f"scenes-{method}")
            out["baselines"]["scenes"] = r.pop("baselines")
            out["scenes"][f"smollm2/{method}"] = r
    env["loadavg_end"] = loadavg()
    env["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def table(res: dict) -> str:
    lines = []
    for data, rows in (("easy_vqa", res["easy_vqa"]), ("scenes", res["scenes"])):
        if not rows:
            continue
        types = sorted({t for r in rows.values() for t in r["per_question_type"]})
        short = {t: t.replace("what is the ", "").replace("is there a ", "there ")[:9] for t in types}
        extra = f"{'2-3 obj':>8s}" if data == "scenes" else ""
        header = (f"{data:10s}{'LM':10s}{'method':20s}{'VQA %':>7s}{extra}{'yes/no':>7s}{'other':>7s}"
                  + "".join(f"{short[t]:>10s}" for t in types)
                  + f"{'step ms':>8s}{'peak MiB':>9s}{'trainable':>11s}{'share %':>8s}{'LM dtype':>9s}")
        lines += [header, "-" * len(header)]
        for key, r in rows.items():
            lm, method = key.split("/")
            two_three = f"{r['vqa_2_3_objects']:8.2f}" if data == "scenes" else ""
            pat = r["per_answer_type"]
            lines.append(f"{'':10s}{lm:10s}{METHODS[method][0]:20s}{r['vqa']:7.2f}{two_three}"
                         f"{pat.get('yes/no', float('nan')):7.2f}{pat.get('other', float('nan')):7.2f}"
                         + "".join(f"{r['per_question_type'].get(t, float('nan')):10.2f}" for t in types)
                         + f"{1000 * r['step_s_median']:8.0f}{r['train_peak_mib']:9.0f}{r['trainable']:11,d}"
                         f"{r['trainable_pct']:8.2f}{r['lm_dtype']:>9s}")
        base = res["baselines"][data]
        lines.append(f"{'':10s}baselines: constant answer {base['constant']:.2f}, question-type prior "
                     f"{base['question_type_prior']:.2f}")
    s, e = res["settings"], res["env"]
    lines.append(f"{s['steps']} steps of {s['batch']}; {e['threads']} thread(s), {e['cpu']}, load "
                 f"{e['loadavg_start']} → {e['loadavg_end']}, {e['wall_s']:.0f} s")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lms", nargs="*", default=list(LMS), choices=list(LMS))
    ap.add_argument("--methods", nargs="*", default=["epalm", "llava", "prompt_tuning", "lora", "solo"],
                    choices=list(METHODS))
    ap.add_argument("--scenes-methods", nargs="*", default=["epalm", "llava"], choices=list(METHODS))
    ap.add_argument("--steps", type=int, default=None, help="train.max_steps of every run (default 200; --quick: 3)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2, help="torch threads per training process")
    ap.add_argument("--train-questions", type=int, default=20000)
    ap.add_argument("--eval-questions", type=int, default=None, help="easy-VQA test questions (default 600)")
    ap.add_argument("--eval-questions-scenes", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, default=None, help="scenes root (default: $MMADAPT_HOME/data/scenes)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 steps, 50 held-out questions")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child", choices=list(METHODS), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-lm", choices=list(LMS), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-data", choices=["easy_vqa", "scenes"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    return fill_run_defaults(ap.parse_args(argv), {"steps": (3, 200), "eval_questions": (50, 600),
                                                    "eval_questions_scenes": (50, 0)})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        print(json.dumps(_child(args)))
        return 0
    res = run(args)
    print(table(res))
    write_json(res, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
