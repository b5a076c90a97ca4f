"""One evaluation of untrained tiny models for the distributed-evaluation test (tests/test_distributed_eval.py).

Run as one process (``python tests/eval_worker.py ...``) or under torchrun; every rank builds the same models
from their seeds and calls ``mmadapt.evaluate`` for three recipes: VQA + captioning (tiny OPT + ViT, eP-ALM),
classification (a tabular tokenizer on the zoo ViT) and video QA + retrieval (All-in-One on the zoo ViT).
Writes ``scores-rank{R}.json`` (``{"world", "rank", "scores": {recipe: {task: scores}}, "batches": {recipe:
eval batches this rank read}}``) and the result
files of each recipe under ``--out/<recipe>/``; leaves with ``os._exit`` (see tests/dist_worker.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def recipes(root: Path) -> dict:
    from tiny import tiny_config

    from mmadapt.config import Config

    scenes = tiny_config(root / "scenes", root / "unused")
    scenes.eval.batch_size = 4  # 30 questions: 8 batches; 6 images: 2 batches
    table = lambda split, n: {"format": "synthetic_tabular", "root": str(root / "tabular"), "split": split,  # noqa: E731
                              "n_samples": n, "seed": 0}
    classification = Config.from_dict({
        "model": {"assembly": "adapted_encoder", "encoder": {"name": "zoo:tiny-vit", "kind": "hf_vit"},
                  "tokenizer": {"name": "tabular", "numeric": ["x0", "x1", "x2", "x3"],
                                "categorical": ["colour", "size"],
                                "categories": {"colour": ["red", "green", "blue", "yellow"],
                                               "size": ["small", "medium", "large"]}},
                  "head": {"name": "classification", "pool": "mean"}},
        "tasks": {"classification": {"train": table("train", 30), "eval": table("val", 23)}},
        "eval": {"batch_size": 4}, "output_dir": str(root / "unused")})
    clips = lambda split, n: {"format": "synthetic_video_text", "root": str(root / "video_text"),  # noqa: E731
                              "split": split, "n_samples": n, "seed": 0}
    video = Config.from_dict({
        "model": {"assembly": "all_in_one", "encoder": {"name": "zoo:tiny-vit", "kind": "hf_vit"},
                  "adapter": {"name": "token_rolling"}, "video_text": {"n_frames": 4, "max_text_len": 16}},
        "tasks": {"vqa": {"train": clips("train", 8), "eval": clips("val", 5), "prompt": "{question}"},
                  "retrieval": {"train": clips("train", 8), "eval": clips("val", 5)}},
        "eval": {"batch_size": 2}, "output_dir": str(root / "unused")})
    return {"scenes": scenes, "classification": classification, "video": video}


def run(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    import mmadapt
    from tiny import make_model

    out = Path(args.out)
    all_scores, batches = {}, {}
    for name, cfg in recipes(Path(args.root)).items():
        model = make_model(cfg) if name == "scenes" else mmadapt.build_model(cfg)
        read = model.load_batch
        batches[name] = 0

        def counted(sources, read=read, name=name):
            batches[name] += 1
            return read(sources)

        model.load_batch = counted  # how many eval batches this rank read
        all_scores[name] = mmadapt.evaluate(model, cfg, out_dir=out / name, quiet=True)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    (out / f"scores-rank{rank}.json").write_text(json.dumps({"world": world, "rank": rank, "scores": all_scores,
                                                                 "batches": batches}))
    if dist.is_initialized():
        dist.barrier()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--root", required=True, help="where the data are (written by the test first)")
    p.add_argument("--out", required=True)
    code = 0
    try:
        run(p.parse_args())
    except BaseException:  # noqa: BLE001 - report anything, then leave with a failure code
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
