"""``mmadapt demo [--modality image|video|audio]``: the whole loop offline, on this machine, in minutes.

1. the zoo's tiny OPT and the modality's encoder (tiny ViT / TimeSformer / AST) are built (pretrained here)
   if not cached;
2. the synthetic set is written if missing: scenes (VQA v2 + COCO formats), moving-shape clips with
   questions (MSRVTT-QA format), or sounds with captions (AudioCaps format);
3. an eP-ALM adapter is trained on the recipe's tasks at once (DeepSpeed, one process);
4. it is scored on the held-out split, beside trivial baselines; ``<out>/eval/<task>.json`` holds the
   official VQA object or the caption metrics, ``<out>/eval/summary.json`` the headline figures.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from mmadapt.errors import ConfigError


#: modality → (recipe under adapters/epalm/, data folder under $MMADAPT_HOME/data, frozen encoder)
DEMOS = {
    "image": ("demo.yaml", "scenes", "zoo:tiny-vit"),
    "video": ("video_demo.yaml", "videoqa", "zoo:tiny-timesformer"),
    "audio": ("audio_demo.yaml", "audiocaps", "zoo:tiny-ast"),
}


def demo_recipe(modality: str = "image") -> Path:
    """The demo recipe of ``modality`` from the source tree, or from ``<prefix>/share/mmadapt`` when installed."""
    from mmadapt.config import find_recipe_file

    name = Path("adapters") / "epalm" / DEMOS[modality][0]
    path = find_recipe_file(name)
    if path is None:
        raise ConfigError(f"demo recipe {name} not found (source tree or {sys.prefix}/share/mmadapt)")
    return path


def run_demo(out: Path, overrides: list[str] | None = None, quiet: bool = False, modality: str = "image") -> dict:
    import mmadapt
    from mmadapt.zoo.cache import cache_root

    if modality not in DEMOS:
        raise ConfigError(f"demo modality: expected one of {', '.join(DEMOS)}, got {modality!r}")
    t0 = time.perf_counter()
    recipe = demo_recipe(modality)
    data_root = cache_root() / "data" / DEMOS[modality][1]
    raw_tasks = mmadapt.load_recipe(recipe).tasks
    base = [f"output_dir={out}"] + [f"tasks.{task}.{split}.root={data_root}" for task in raw_tasks
                                    for split in ("train", "eval")]
    cfg = mmadapt.load_recipe(recipe, base + list(overrides or []))
    model = mmadapt.build_model(cfg)
    trainable = model.print_trainable_parameters()
    result = mmadapt.train(cfg, model=model, evaluate_after=True, quiet=quiet)
    tasks = mmadapt.build_tasks(cfg)
    baselines = {k: t.baselines(out / "eval") for k, t in tasks.items()}
    minutes = (time.perf_counter() - t0) / 60
    summary: dict = {"modality": modality, "minutes": round(minutes, 2), "trainable": trainable}
    print(f"\nmmadapt demo — eP-ALM on frozen zoo:tiny-opt + {DEMOS[modality][2]}, {minutes:.1f} min")
    print(f"  {trainable}")
    for key, scores in result.scores.items():
        if "overall" in scores:
            summary[f"{key}_overall"] = scores["overall"]
            summary[f"{key}_per_answer_type"] = scores["perAnswerType"]
            summary[f"{key}_per_question_type"] = scores["perQuestionType"]
            print(f"  VQA accuracy (official, held-out):   {scores['overall']:6.2f}   per type {scores['perQuestionType']}")
        else:
            summary[key] = {k: scores[k] for k in ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr")}
            print(f"  Caption CIDEr:                      {scores['CIDEr']:6.2f}   BLEU-4 {scores['Bleu_4']:.2f}"
                  f"  METEOR {scores['METEOR']:.2f}  ROUGE-L {scores['ROUGE_L']:.2f}")
        summary[f"{key}_baselines"] = baselines[key]
        for name, value in baselines[key].items():
            print(f"    baseline {name:24s} {value:6.2f}")
    (out / "eval" / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"  files: {out / 'eval'}")
    return summary
