"""An eP-ALM training epoch with and without the frozen-feature cache, side by side, at real sizes.

    python benchmarks/feature_cache.py [--images 24] [--batch 8] [--image-size 224] [--threads N] [--json out.json]

What runs (nothing downloaded; random weights — speed does not depend on them):

- model: OPT-125m + ViT-B/16 from configs with eP-ALM's defaults (``benchmarks/epalm_step.py``'s
  ``build_model``), frozen backbones;
- data: ``--images`` synthetic scenes written at ``--image-size`` px PNG (``write_scenes_dataset``), the VQA
  task of the library (``synthetic_scenes`` format: several questions per image, as in VQA v2 — 5.4 per
  image there — so an uncached epoch encodes each image once per question, a cached one never);
- epoch: the library's ``Trainer`` (DeepSpeed ZeRO-0, fp32, AdamW on the adapter) for exactly one pass over
  the examples (``max_steps = examples / batch``), timed by the trainer's own per-step clock;
- uncached: each step decodes the images, preprocesses them (``ViTImageProcessor``), runs the frozen ViT-B/16
  and then the LM; cached: ``mmadapt cache-features``' code builds the store once (timed separately: it is
  paid once per encoder / preprocessing / data, not per epoch), and the same epoch reads the [CLS] rows from
  the memory-mapped store.

Reported: epoch time both ways and their ratio (target ≥ 3×), the median step time, the one-off cache build
time and its size, and the largest per-step loss difference (the losses must be the same).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from _common import cpu_name, loadavg, step_seconds, write_json  # noqa: E402


def _config(data_root: Path, run_dir: Path, images: int, batch: int, cache_dir: Path | None):
    from mmadapt.config import Config

    return Config.from_dict({
        "model": {"lm": {"name": "bench:opt-125m-random"}, "vision": {"name": "bench:vit-b16-random", "kind": "hf_vit"},
                  "adapter": {"name": "epalm"}},
        "tasks": {"vqa": {"train": {"format": "synthetic_scenes", "root": str(data_root), "split": "train",
                                    "n_images": images}}},
        "train": {"max_steps": 1, "batch_size": batch, "lr": 1e-4, "warmup_steps": 0, "log_every": 1,
                  "feature_cache": str(cache_dir) if cache_dir else None},
        "output_dir": str(run_dir),
    })


def _epoch(model, config, examples, label: str) -> dict:
    from mmadapt.training.trainer import Trainer

    config.train.max_steps = len(examples) // config.train.batch_size
    trainer = Trainer(model, config, examples, config.output_dir, quiet=True)
    t0 = time.perf_counter()
    records = trainer.train()
    wall = time.perf_counter() - t0
    steps, epoch_s = step_seconds(records), records[-1]["time"]
    print(f"  {label}: {len(records)} steps, {epoch_s:.1f} s", file=sys.stderr, flush=True)
    return {"steps": len(records), "epoch_s": epoch_s, "wall_with_checkpoint_s": wall,
            "median_step_s": statistics.median(steps), "step_s": steps, "losses": [r["loss"] for r in records]}


def run(args) -> dict:
    """Both epochs on the same freshly written scenes (in a temporary folder, removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="mmadapt-bench-cache-") as tmp:
        return _run(args, Path(tmp))


def _run(args, work: Path) -> dict:
    import torch

    from epalm_step import build_model
    from mmadapt.api import build_tasks, training_examples
    from mmadapt.data.synthetic.scenes import write_scenes_dataset
    from mmadapt.training.feature_cache import attach_feature_cache, cache_training_features

    if args.threads:
        torch.set_num_threads(args.threads)
    data = work / "scenes"
    write_scenes_dataset(data, "train", args.images, seed=0, image_size=args.image_size)
    plain_cfg = _config(data, work / "plain", args.images, args.batch, None)
    examples = training_examples(plain_cfg, build_tasks(plain_cfg))  # every question of every image
    examples = examples[: (len(examples) // args.batch) * args.batch]

    plain = _epoch(build_model(args.seed), plain_cfg, examples, "without cache")

    cached_cfg = _config(data, work / "cached", args.images, args.batch, work / "cache")
    model = build_model(args.seed)
    t0 = time.perf_counter()
    report = cache_training_features(model, cached_cfg, examples, batch_size=args.batch, quiet=True)
    build_s = time.perf_counter() - t0
    print(f"  cache build: {report.computed} files, {build_s:.1f} s", file=sys.stderr, flush=True)
    attach_feature_cache(model, cached_cfg)
    cached = _epoch(model, cached_cfg, examples, "with cache")
    store_bytes = sum(f.stat().st_size for f in report.store.directory.iterdir())
    diffs = [abs(a - b) for a, b in zip(plain["losses"], cached["losses"])]
    return {
        "benchmark": "feature_cache", "images": args.images, "examples": len(examples), "batch": args.batch,
        "image_size": args.image_size,
        "threads": torch.get_num_threads(), "cpu": cpu_name(), "loadavg_end": loadavg(),
        "without_cache": plain, "with_cache": cached,
        "speedup_epoch": plain["epoch_s"] / cached["epoch_s"],
        "speedup_median_step": plain["median_step_s"] / cached["median_step_s"],
        "cache_build_s": build_s, "cache_bytes": store_bytes, "cache_row_shape": list(report.store.row_shape),
        "cache_misses_in_epoch": model.feature_cache_misses, "max_loss_diff": max(diffs),
    }


def report_text(res: dict) -> str:
    p, c = res["without_cache"], res["with_cache"]
    return "\n".join([
        f"eP-ALM epoch with / without the feature cache — OPT-125m + ViT-B/16 (random, fp32), {res['images']} "
        f"scenes at {res['image_size']} px ({res['examples']} questions), batch {res['batch']}, {res['threads']} "
        f"threads, {res['cpu']}",
        f"{'':<26}{'epoch s':>9}{'step s (median)':>17}",
        f"{'without cache':<26}{p['epoch_s']:>9.2f}{p['median_step_s']:>17.3f}",
        f"{'with cache':<26}{c['epoch_s']:>9.2f}{c['median_step_s']:>17.3f}",
        f"speed-up: epoch {res['speedup_epoch']:.2f}×, median step {res['speedup_median_step']:.2f}×; "
        f"max |Δ loss| over {p['steps']} steps {res['max_loss_diff']:.2e}; misses in the cached epoch "
        f"{res['cache_misses_in_epoch']}",
        f"one-off cache build {res['cache_build_s']:.1f} s, {res['cache_bytes'] / 2**20:.1f} MiB, rows "
        f"{res['cache_row_shape']} per image",
    ])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    res = run(args)
    print(report_text(res))
    write_json(res, args.json)


if __name__ == "__main__":
    main()
