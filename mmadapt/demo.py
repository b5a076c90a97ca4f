"""``mmadapt demo``: the whole loop offline, on this machine, in minutes.

1. the zoo's tiny OPT and ViT are built (pretrained here) if not cached;
2. the synthetic scenes set is written (VQA v2 + COCO formats) if missing;
3. an eP-ALM adapter is trained on VQA + captioning at once (DeepSpeed, one process);
4. it is scored on the held-out split, beside trivial baselines; ``<out>/eval/vqa.json`` holds the
   official VQA object, ``<out>/eval/caption.json`` the caption metrics.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from mmadapt.errors import ConfigError


def demo_recipe() -> Path:
    """``adapters/epalm/demo.yaml`` from the source tree, or from ``<prefix>/share/mmadapt`` when installed."""
    candidates = [Path(__file__).resolve().parents[1] / "adapters" / "epalm" / "demo.yaml",
                  Path(sys.prefix) / "share" / "mmadapt" / "adapters" / "epalm" / "demo.yaml"]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(f"demo recipe not found (looked in {', '.join(map(str, candidates))})")


def run_demo(out: Path, overrides: list[str] | None = None, quiet: bool = False) -> dict:
    import mmadapt
    from mmadapt.zoo.cache import cache_root

    t0 = time.perf_counter()
    data_root = cache_root() / "data" / "scenes"
    base = [f"output_dir={out}"]
    for task in ("vqa", "caption"):
        for split in ("train", "eval"):
            base.append(f"tasks.{task}.{split}.root={data_root}")
    cfg = mmadapt.load_recipe(demo_recipe(), base + list(overrides or []))
    model = mmadapt.build_model(cfg)
    trainable = model.print_trainable_parameters()
    result = mmadapt.train(cfg, model=model, evaluate_after=True, quiet=quiet)
    tasks = mmadapt.build_tasks(cfg)
    baselines = {k: t.baselines(out / "eval") for k, t in tasks.items()}
    minutes = (time.perf_counter() - t0) / 60
    vqa, cap = result.scores["vqa"], result.scores["caption"]
    summary = {
        "minutes": round(minutes, 2),
        "trainable": trainable,
        "vqa_overall": vqa["overall"],
        "vqa_per_answer_type": vqa["perAnswerType"],
        "vqa_baselines": baselines["vqa"],
        "caption": {k: cap[k] for k in ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr")},
        "caption_baselines": baselines["caption"],
    }
    (out / "eval" / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nmmadapt demo — eP-ALM on frozen zoo:tiny-opt + zoo:tiny-vit, {minutes:.1f} min")
    print(f"  {trainable}")
    print(f"  VQA accuracy (official, held-out):   {vqa['overall']:6.2f}   per type {vqa['perAnswerType']}")
    for name, value in baselines["vqa"].items():
        print(f"    baseline {name:24s} {value:6.2f}")
    print(f"  Caption CIDEr:                      {cap['CIDEr']:6.2f}   BLEU-4 {cap['Bleu_4']:.2f}"
          f"  METEOR {cap['METEOR']:.2f}  ROUGE-L {cap['ROUGE_L']:.2f}")
    for name, value in baselines["caption"].items():
        print(f"    baseline {name:24s} {value:6.2f}")
    print(f"  files: {out / 'eval'}")
    return summary
