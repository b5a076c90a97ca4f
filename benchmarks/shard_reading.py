"""Reading training samples from WebDataset shards, beside the same samples as loose files.

    python benchmarks/shard_reading.py [--images 512] [--batch 16] [--repeats 5] [--size 224] [--json out.json]

What runs (nothing downloaded):

- data: ``--images`` synthetic scenes at ``--size`` px saved as JPEG (quality 90) with their VQA v2 question
  and annotation files (format ``vqa_v2``), and the same split written by
  ``mmadapt shard`` (``api.shard``: 1,000 samples a shard) and read back with ``format: webdataset``;
- the work of the training data path, per micro-batch of ``--batch`` examples: the assembly's
  ``collate_train`` (open, read and decode each JPEG, the ViT-B/16 processor's resize and normalisation,
  the tokenizer's prompts) — what the trainer's DataLoader workers run (``mmadapt.data.loader``), here in the
  main process so that the two sources are timed alone;
- ``--repeats`` passes over every example, loose files and shards interleaved; each pass first asks the kernel
  to drop the files' cached pages (``posix_fadvise(DONTNEED)`` on every JPEG / shard: a cold page cache, where
  the kernel honours it) and a second pass right after reads them warm.

Reported: samples per second (median over repeats) of each source, cold and warm, and the ratio shards ÷ loose
files (target ≥ 1×); and whether the two sources gave the same tensors.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from _common import cpu_name, loadavg, write_json  # noqa: E402
from data_loading import write_jpeg_vqa  # noqa: E402


def _config(dataset: dict):
    from mmadapt.config import Config

    return Config.from_dict({
        "model": {"lm": {"name": "bench:opt-125m-random"}, "vision": {"name": "bench:vit-b16-random", "kind": "hf_vit"},
                  "adapter": {"name": "epalm"}},
        "tasks": {"vqa": {"train": dataset}},
        "train": {"max_steps": 1, "batch_size": 1}, "output_dir": "unused"})


def _drop_cache(files: list[Path]) -> None:
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _pass(model, examples, batch: int) -> tuple[float, list]:
    start, firsts = time.perf_counter(), []
    for i in range(0, len(examples), batch):
        inputs, errors = model.collate_train(examples[i:i + batch])
        assert not errors, errors
        firsts.append(inputs["pixel_values"][0])
    return len(examples) / (time.perf_counter() - start), firsts


def run(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="mmadapt-bench-shards-") as tmp:
        return _run(args, Path(tmp))


def _run(args, work: Path) -> dict:
    import torch

    from epalm_step import build_model
    from mmadapt.api import build_tasks, shard, training_examples

    torch.set_num_threads(args.threads)
    load_start = loadavg()
    loose = write_jpeg_vqa(work / "data", args.images, args.size)
    shard(_config(loose), work / "shards", report=lambda line: None)
    sources = {"loose files": loose, "shards": {"format": "webdataset", "shards": str(work / "shards" / "vqa")}}
    examples = {}
    for label, dataset in sources.items():
        cfg = _config(dataset)
        examples[label] = training_examples(cfg, build_tasks(cfg))
    files = {"loose files": sorted((work / "data" / "jpeg").iterdir()),
             "shards": sorted((work / "shards" / "vqa").glob("*.tar"))}
    model = build_model(args.seed)
    rates = {label: {"cold": [], "warm": []} for label in sources}
    tensors = {}
    for _ in range(args.repeats):
        for label in sources:
            _drop_cache(files[label])
            cold, tensors[label] = _pass(model, examples[label], args.batch)
            warm, _ = _pass(model, examples[label], args.batch)
            rates[label]["cold"].append(cold)
            rates[label]["warm"].append(warm)
            print(f"  {label}: {cold:.1f} samples/s cold, {warm:.1f} warm", file=sys.stderr, flush=True)
    med = {label: {k: statistics.median(v) for k, v in r.items()} for label, r in rates.items()}
    same = all(torch.equal(a, b) for a, b in zip(tensors["loose files"], tensors["shards"]))
    return {"benchmark": "shard_reading", "images": args.images, "examples": len(examples["shards"]),
            "batch": args.batch, "repeats": args.repeats, "threads": args.threads, "size": args.size, "cpu": cpu_name(),
            "loadavg_start": load_start, "loadavg_end": loadavg(), "samples_per_s": rates, "median": med,
            "bytes": {label: sum(f.stat().st_size for f in fs) for label, fs in files.items()},
            "shards_over_loose_cold": med["shards"]["cold"] / med["loose files"]["cold"],
            "shards_over_loose_warm": med["shards"]["warm"] / med["loose files"]["warm"], "same_tensors": same}


def report_text(res: dict) -> str:
    lines = [f"Reading training samples — {res['examples']} VQA examples on {res['size']}-px JPEGs, batches of "
             f"{res['batch']} through collate_train (ViT-B/16 processor), {res['repeats']} repeats, {res['threads']} thread(s), "
             f"{res['cpu']}, load {res['loadavg_start'][0]:.2f} → {res['loadavg_end'][0]:.2f}",
             f"{'':<14}{'cold samples/s':>16}{'warm samples/s':>16}{'bytes':>12}"]
    for label, m in res["median"].items():
        lines.append(f"{label:<14}{m['cold']:>16.1f}{m['warm']:>16.1f}{res['bytes'][label]:>12,}")
    lines.append(f"shards ÷ loose files: {res['shards_over_loose_cold']:.3f}× cold, {res['shards_over_loose_warm']:.3f}× "
                 f"warm (target ≥ 1×); same tensors: {res['same_tensors']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=224, help="side of the JPEG files")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the preprocessing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    res = run(args)
    print(report_text(res))
    write_json(res, args.json)


if __name__ == "__main__":
    main()
