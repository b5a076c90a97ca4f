"""VQA evaluation throughput, one process vs two (torchrun), same model, same questions, same scores.

    python benchmarks/distributed_eval.py [--images 24] [--questions 96] [--batch 8] [--json out.json]

What runs (nothing downloaded; random weights — speed does not depend on them): OPT-125m + ViT-B/16 from
configs with an eP-ALM adapter (``benchmarks/epalm_step.py``'s ``build_model``), greedy generation of up to 3
tokens per question, on the first ``--questions`` questions of ``--images`` synthetic scenes at 224 px, scored
by the official VQA scorer through ``mmadapt.evaluate``. Each configuration is a fresh process (or two, under
``torch.distributed.run``): one process with 1 torch thread, one process with 2 threads (every core of this
machine), two processes with 1 thread each. Each child times ``mmadapt.evaluate`` alone (model building
excluded; the slowest rank counts) and reports the scores.

Reported: questions per second of each, the two-process throughput over the one-process one (target ≥ 1.7×;
against both one-process settings), and whether the scores are identical (they must be).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
for path in (ROOT, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from _common import child_env, cpu_name, loadavg, run_json_child, write_json  # noqa: E402


def _config(data: Path, out: Path, questions: int, batch: int):
    """The scenes' VQA v2 files, read as ``vqa_v2`` (the 224-px images as written, never regenerated)."""
    from mmadapt.config import Config

    dataset = {"format": "vqa_v2", "questions": str(data / "val_questions.json"),
               "annotations": str(data / "val_annotations.json"), "image_root": str(data / "images" / "val"),
               "image_template": "{image_id:012d}.png"}
    return Config.from_dict({
        "model": {"lm": {"name": "bench:opt-125m-random"}, "vision": {"name": "bench:vit-b16-random", "kind": "hf_vit"},
                  "adapter": {"name": "epalm"}},
        "tasks": {"vqa": {"eval": dataset, "max_new_tokens": 3}},
        "eval": {"batch_size": batch, "max_samples": questions}, "output_dir": str(out)})


def child(args) -> None:
    """One evaluation (a rank of it under torchrun); prints its JSON as the last stdout line of rank 0."""
    import torch
    import torch.distributed as dist

    import mmadapt
    from epalm_step import build_model

    torch.set_num_threads(args.threads)
    cfg = _config(args.data, args.out, args.questions, args.batch)
    model = build_model(0)
    mmadapt.build_tasks(cfg)["vqa"].split("eval")  # read before the clock
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from mmadapt.training.distributed import init_distributed

        init_distributed()
        dist.barrier()
    t0 = time.perf_counter()
    scores = mmadapt.evaluate(model, cfg, out_dir=args.out, quiet=True)
    seconds = time.perf_counter() - t0
    if dist.is_initialized():
        box = [None] * dist.get_world_size()
        dist.all_gather_object(box, seconds)
        seconds = max(box)  # the slowest rank
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(json.dumps({"seconds": seconds, "overall": scores["vqa"]["overall"],
                          "perQuestion": scores["vqa"]["perQuestion"]}), flush=True)
    sys.stdout.flush()
    os._exit(0)  # DeepSpeed's gloo groups sometimes abort at interpreter exit


def run(args) -> dict:
    from mmadapt.data.synthetic.scenes import write_scenes_dataset

    with tempfile.TemporaryDirectory(prefix="mmadapt-bench-dist-eval-") as tmp:
        data = Path(tmp) / "scenes"
        write_scenes_dataset(data, "val", args.images, seed=0, image_size=224)
        common = ["--child", "--data", str(data), "--images", str(args.images), "--questions", str(args.questions),
                  "--batch", str(args.batch)]
        script = str(Path(__file__).resolve())
        runs = {}
        for label, nproc, threads in [("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2),
                                      ("2 processes, 1 thread each", 2, 1)]:
            out = ["--out", str(Path(tmp) / label.replace(" ", "_").replace(",", ""))]
            if nproc == 1:
                cmd = [sys.executable, script, *common, "--threads", str(threads), *out]
            else:
                cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone",
                       script, *common, "--threads", str(threads), *out]
            res = run_json_child(cmd, label, env=child_env(OMP_NUM_THREADS=str(threads)))
            res["questions_per_s"] = args.questions / res["seconds"]
            print(f"  {label}: {res['seconds']:.1f} s, {res['questions_per_s']:.2f} questions/s", file=sys.stderr,
                  flush=True)
            runs[label] = res
    one1, one2, two = (r["questions_per_s"] for r in runs.values())
    answers = [r["perQuestion"] for r in runs.values()]
    return {"benchmark": "distributed_eval", "images": args.images, "questions": args.questions,
            "batch": args.batch, "cpu": cpu_name(), "loadavg_end": loadavg(),
            "runs": {k: {kk: vv for kk, vv in v.items() if kk != "perQuestion"} for k, v in runs.items()},
            "speedup_vs_1_thread": two / one1, "speedup_vs_2_threads": two / one2,
            "same_scores": all(a == answers[0] for a in answers)}


def report_text(res: dict) -> str:
    lines = [f"VQA evaluation, OPT-125m + ViT-B/16 (random, fp32), {res['questions']} questions, batch "
             f"{res['batch']}, greedy ≤ 3 tokens, {res['cpu']}", f"{'':<30}{'s':>8}{'questions/s':>13}"]
    for label, r in res["runs"].items():
        lines.append(f"{label:<30}{r['seconds']:>8.1f}{r['questions_per_s']:>13.2f}")
    lines.append(f"2 processes ÷ 1 process: {res['speedup_vs_1_thread']:.2f}× (1 thread), "
                 f"{res['speedup_vs_2_threads']:.2f}× (2 threads); target ≥ 1.7×; same scores: {res['same_scores']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--questions", type=int, default=96)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return
    res = run(args)
    print(report_text(res))
    write_json(res, args.json)


if __name__ == "__main__":
    main()
