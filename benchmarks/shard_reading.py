"""Reading training samples from WebDataset shards, beside the same samples as loose files.

    python benchmarks/shard_reading.py [--images 512] [--batch 16] [--repeats 5] [--size 224] [--json out.json]

What runs (nothing downloaded):

- data: ``--images`` synthetic scenes at ``--size`` px saved as JPEG (quality 90) with their VQA v2 question
  and annotation files (format ``vqa_v2``), and the same split written by
  ``mmadapt shard`` (``api.shard``: 1,000 samples a shard) and read back with ``format: webdataset``;
- the work of the training data path, per micro-batch of ``--batch`` examples: the assembly's
  ``collate_train`` (open, read and decode each JPEG, the ViT-B/16 processor's resize and normalisation,
  the tokenizer's prompts) — what the trainer's DataLoader workers run (``mmadapt.data.loader``), here in the
  main process so that the two sources are timed alone; and, apart, the part where the two sources differ:
  reading and decoding each example's image (``load_image``);
- ``--repeats`` passes over every example, each of them cold then warm: a cold pass first asks the kernel to
  drop the cached pages of every JPEG and shard (``posix_fadvise(DONTNEED)``, where the kernel honours it),
  the warm pass right after reads them again. Within a pass the two sources take turns batch by batch (which
  of them goes first alternates), so both see the same machine load and allocator state — on this shared
  2-core machine timing one source's whole pass and then the other's let the ratio swing from 0.2× to 1.7×.
  One untimed pass over both comes first (imports, the processor's first call, the allocator's pools).

Reported: samples per second (median over repeats) of each source, cold and warm, for the whole
``collate_train`` and for read + decode alone; the ratios shards ÷ loose files (target ≥ 1×, on the whole
``collate_train``); and whether the two sources gave the same tensors.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

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


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def _interleaved_pass(work: Callable[[list], None], batches: dict[str, list]) -> dict[str, float]:
    """Seconds each source spent on ``work(batch)`` over all its batches, the sources taking turns batch by
    batch (the first of a turn alternates)."""
    labels = list(batches)
    spent = dict.fromkeys(labels, 0.0)
    for i in range(len(batches[labels[0]])):
        for label in (labels if i % 2 == 0 else labels[::-1]):
            spent[label] += _timed(work, batches[label][i])
    return spent


def _collate(model, batch: list) -> None:
    inputs, errors = model.collate_train(batch)
    assert not errors, errors


def _read_decode(batch: list) -> None:
    from mmadapt.io.image import load_image

    for example in batch:
        load_image(example.image_path)


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
    batches = {label: [exs[i:i + args.batch] for i in range(0, len(exs), args.batch)]
               for label, exs in examples.items()}
    parts = {"collate_train": lambda batch: _collate(model, batch), "read + decode": _read_decode}
    _interleaved_pass(parts["collate_train"], batches)  # warm-up, untimed
    rates = {part: {label: {"cold": [], "warm": []} for label in sources} for part in parts}
    for _ in range(args.repeats):
        for part, fn in parts.items():
            for cache in ("cold", "warm"):
                if cache == "cold":
                    for fs in files.values():
                        _drop_cache(fs)
                spent = _interleaved_pass(fn, batches)
                for label, seconds in spent.items():
                    rates[part][label][cache].append(len(examples[label]) / seconds)
            print(f"  {part}: " + "; ".join(f"{label} {r['cold'][-1]:.0f} cold / {r['warm'][-1]:.0f} warm samples/s"
                                            for label, r in rates[part].items()), file=sys.stderr, flush=True)
    med = {part: {label: {k: statistics.median(v) for k, v in r.items()} for label, r in per.items()}
           for part, per in rates.items()}
    same = all(torch.equal(model.collate_train(a)[0]["pixel_values"], model.collate_train(b)[0]["pixel_values"])
               for a, b in zip(batches["loose files"], batches["shards"]))
    ratio = {part: {cache: m["shards"][cache] / m["loose files"][cache] for cache in ("cold", "warm")}
             for part, m in med.items()}
    return {"benchmark": "shard_reading", "images": args.images, "examples": len(examples["shards"]),
            "batch": args.batch, "repeats": args.repeats, "threads": args.threads, "size": args.size, "cpu": cpu_name(),
            "loadavg_start": load_start, "loadavg_end": loadavg(), "samples_per_s": rates, "median": med,
            "bytes": {label: sum(f.stat().st_size for f in fs) for label, fs in files.items()}, "ratio": ratio,
            "shards_over_loose_cold": ratio["collate_train"]["cold"],
            "shards_over_loose_warm": ratio["collate_train"]["warm"], "same_tensors": same}


def report_text(res: dict) -> str:
    lines = [f"Reading training samples — {res['examples']} VQA examples on {res['size']}-px JPEGs, batches of "
             f"{res['batch']}, {res['repeats']} repeats, {res['threads']} thread(s), {res['cpu']}, "
             f"load {res['loadavg_start'][0]:.2f} → {res['loadavg_end'][0]:.2f}",
             f"{'samples/s':<30}{'cold':>10}{'warm':>10}"]
    for part, per in res["median"].items():
        for label, m in per.items():
            lines.append(f"{part + ', ' + label:<30}{m['cold']:>10.1f}{m['warm']:>10.1f}")
        r = res["ratio"][part]
        lines.append(f"{part + ', shards ÷ loose':<30}{r['cold']:>9.3f}×{r['warm']:>9.3f}×")
    lines.append("bytes: " + ", ".join(f"{label} {n:,}" for label, n in res["bytes"].items())
                 + f"; target ≥ 1× (collate_train); same tensors: {res['same_tensors']}")
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
