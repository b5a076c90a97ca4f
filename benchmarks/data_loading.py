"""eP-ALM training on JPEG files with background loading, beside the same batches pre-decoded in memory.

    python benchmarks/data_loading.py [--images 48] [--batch 8] [--steps 16] [--workers 1] [--source-size 224]
                                      [--threads N] [--json out.json]

What runs (nothing downloaded; random weights — speed does not depend on them):

- model: OPT-125m + ViT-B/16 from configs with eP-ALM's defaults (``benchmarks/epalm_step.py``'s
  ``build_model``), frozen backbones, fp32;
- data: ``--images`` synthetic scenes at ``--source-size`` px (default 224; 640 for COCO-sized files that the
  processor resizes to 224) saved as JPEG (quality 90) with their VQA v2 question and annotation files
  (format ``vqa_v2``), so each step opens, decodes and preprocesses ``--batch`` JPEGs;
- three runs of the library's ``Trainer`` over the same ``--steps`` batches (ZeRO-0, AdamW on the adapter),
  timed by the trainer's own per-step clock, the first step dropped (warm-up):
  ``in memory`` — every image decoded and preprocessed before training, the step only stacks tensors;
  ``files, 0 workers`` — the trainer reads the files itself between steps (what mmadapt did before);
  ``files, N workers`` — ``train.num_workers=N`` DataLoader workers read ahead while the step runs.

Reported: the median step time of each and the ratio of the workers' one to the in-memory one (target
≤ 1.1×), and whether the losses of the three runs are the same (they must be).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from _common import cpu_name, loadavg, step_seconds, write_json  # noqa: E402


def write_jpeg_vqa(root: Path, images: int, size: int = 224) -> dict:
    """Synthetic scenes at ``size`` px re-saved as JPEG; the ``vqa_v2`` dataset section that reads them."""
    from PIL import Image

    from mmadapt.data.synthetic.scenes import write_scenes_dataset

    write_scenes_dataset(root, "train", images, seed=0, image_size=size)
    jpeg = root / "jpeg"
    jpeg.mkdir()
    for png in sorted((root / "images" / "train").iterdir()):
        Image.open(png).convert("RGB").save(jpeg / f"{png.stem}.jpg", quality=90)
    return {"format": "vqa_v2", "questions": str(root / "train_questions.json"),
            "annotations": str(root / "train_annotations.json"), "image_root": str(jpeg),
            "image_template": "{image_id:012d}.jpg"}


def _config(dataset: dict, run_dir: Path, steps: int, batch: int, workers: int):
    from mmadapt.config import Config

    return Config.from_dict({
        "model": {"lm": {"name": "bench:opt-125m-random"}, "vision": {"name": "bench:vit-b16-random", "kind": "hf_vit"},
                  "adapter": {"name": "epalm"}},
        "tasks": {"vqa": {"train": dataset}},
        "train": {"max_steps": steps, "batch_size": batch, "lr": 1e-4, "warmup_steps": 0, "log_every": 1,
                  "num_workers": workers},
        "output_dir": str(run_dir)})


def _pre_decoded(model, examples) -> None:
    """Every training image decoded and preprocessed now; ``load_batch`` then only stacks the tensors."""
    import torch

    paths = sorted({str(ex.image_path) for ex in examples})
    _, inputs, _ = model.load_batch(paths)
    pixels = dict(zip(paths, inputs["pixel_values"]))

    def load_batch(sources):
        return list(range(len(sources))), {"pixel_values": torch.stack([pixels[str(s)] for s in sources])}, []

    model.load_batch = load_batch


def _train(model, config, examples, label: str) -> dict:
    from mmadapt.training.trainer import Trainer

    records = Trainer(model, config, examples, config.output_dir, quiet=True).train()
    steps = step_seconds(records)[1:]  # the first step warms up
    print(f"  {label}: median step {statistics.median(steps):.3f} s", file=sys.stderr, flush=True)
    return {"median_step_s": statistics.median(steps), "step_s": steps, "losses": [r["loss"] for r in records]}


def run(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="mmadapt-bench-loading-") as tmp:
        return _run(args, Path(tmp))


def _run(args, work: Path) -> dict:
    import torch

    from epalm_step import build_model
    from mmadapt.api import build_tasks, training_examples

    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = loadavg()
    dataset = write_jpeg_vqa(work / "data", args.images, args.source_size)
    runs = {}
    for label, workers, in_memory in [("in memory", 0, True), ("files, 0 workers", 0, False),
                                      (f"files, {args.workers} workers", args.workers, False)]:
        cfg = _config(dataset, work / label.replace(" ", "_").replace(",", ""), args.steps, args.batch, workers)
        examples = training_examples(cfg, build_tasks(cfg))
        model = build_model(args.seed)
        if in_memory:
            _pre_decoded(model, examples)
        runs[label] = {"workers": workers, **_train(model, cfg, examples, label)}
    memory, files0, files_n = (runs[k]["median_step_s"] for k in runs)
    losses = [r["losses"] for r in runs.values()]
    return {"benchmark": "data_loading", "images": args.images, "batch": args.batch, "steps": args.steps,
            "image_size": 224, "source_size": args.source_size, "workers": args.workers, "threads": torch.get_num_threads(), "cpu": cpu_name(),
            "loadavg_start": load_start, "loadavg_end": loadavg(), "runs": runs,
            "workers_over_memory": files_n / memory, "no_workers_over_memory": files0 / memory,
            "same_losses": all(x == losses[0] for x in losses)}


def report_text(res: dict) -> str:
    lines = [f"eP-ALM training on JPEG files — OPT-125m + ViT-B/16 (random, fp32), batch {res['batch']} at "
             f"{res['image_size']} px from {res['source_size']}-px JPEGs, {res['steps']} steps (first dropped), {res['threads']} threads, {res['cpu']}, "
             f"load {res['loadavg_start'][0]:.2f} → {res['loadavg_end'][0]:.2f}",
             f"{'':<24}{'median step s':>15}{'÷ in memory':>13}"]
    memory = res["runs"]["in memory"]["median_step_s"]
    for label, r in res["runs"].items():
        lines.append(f"{label:<24}{r['median_step_s']:>15.3f}{r['median_step_s'] / memory:>12.3f}×")
    lines.append(f"workers ÷ in memory: {res['workers_over_memory']:.3f}× (target ≤ 1.1×); same losses: "
                 f"{res['same_losses']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--source-size", type=int, default=224, help="side of the JPEG files (resized to 224)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads of the trainer (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    res = run(args)
    print(report_text(res))
    write_json(res, args.json)


if __name__ == "__main__":
    main()
