"""``mmadapt`` command line: train | eval | cache-features | shard | demo | info | zoo | score.

    mmadapt train adapters/epalm/vqa.yaml train.max_steps=200 [--resume] [--quiet]
    mmadapt cache-features adapters/epalm/vqa.yaml train.feature_cache=cache/features [--batch-size 32]
    mmadapt shard adapters/epalm/vqa.yaml --split train --out data/shards [--task vqa] [--max-samples-per-shard N]
    mmadapt eval  adapters/epalm/vqa.yaml --adapter runs/vqa/checkpoints/step-200 [overrides]
    mmadapt demo  --out runs/demo [--modality image|video|audio]
    mmadapt info  [--json]
    mmadapt zoo   list | build zoo:tiny-vit [--quick]
    mmadapt score vqa --questions Q.json --annotations A.json --results R.json
    mmadapt score caption --annotations captions.json --results R.json

User errors (bad recipe key, missing file, corrupt image) print one line ``error: ...`` and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from mmadapt.errors import MMAdaptError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmadapt", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an adapter from a YAML recipe")
    t.add_argument("recipe")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=200")
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint of output_dir")
    t.add_argument("--no-eval", action="store_true", help="skip evaluation after training")
    t.add_argument("--quiet", action="store_true")

    e = sub.add_parser("eval", help="evaluate a trained adapter on the recipe's eval splits")
    e.add_argument("recipe")
    e.add_argument("overrides", nargs="*")
    e.add_argument("--adapter", required=True, help="adapter directory (adapter_config.json + safetensors)")
    e.add_argument("--out", help="where to write results (default: <output_dir>/eval)")
    e.add_argument("--quiet", action="store_true")

    d = sub.add_parser("demo", help="offline demo: train eP-ALM on synthetic data, score it beside baselines")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--modality", choices=["image", "video", "audio"], default="image",
                   help="image: scenes VQA + captioning; video: video QA; audio: audio captioning")
    d.add_argument("overrides", nargs="*", help="overrides of the demo recipe")
    d.add_argument("--quiet", action="store_true")

    c = sub.add_parser("cache-features", help="precompute the frozen encoder features the recipe's adapter reads "
                       "(eP-ALM: per-layer [CLS]) for its training data into train.feature_cache")
    c.add_argument("recipe")
    c.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.feature_cache=cache/features")
    c.add_argument("--batch-size", type=int, default=32, help="images per encoder batch")
    c.add_argument("--quiet", action="store_true")

    w = sub.add_parser("shard", help="write a task split as WebDataset tar shards (format webdataset reads them)")
    w.add_argument("recipe")
    w.add_argument("overrides", nargs="*", help="dotted overrides")
    w.add_argument("--split", default="train", choices=("train", "eval"))
    w.add_argument("--out", required=True, help="directory; each task's shards go to OUT/<task key>")
    w.add_argument("--task", default=None, help="only this task key (default: every task with that split)")
    w.add_argument("--max-samples-per-shard", type=int, default=1000)

    r = sub.add_parser("report", help="runs side by side: recipe differences, trained parameters, step time, "
                                      "final scores; one comparison plot")
    r.add_argument("runs", nargs="+", help="run directories (written by mmadapt train)")
    r.add_argument("--out", default="report.png", help="the comparison plot (default: report.png)")

    i = sub.add_parser("info", help="list registered tokenizers, backbones, adapters, heads, tasks")
    i.add_argument("--json", action="store_true")

    z = sub.add_parser("zoo", help="the offline zoo: list the entries in use, or rebuild one from scratch")
    zsub = z.add_subparsers(dest="action", required=True)
    zsub.add_parser("list", help="each zoo model's entry in use, its spec hash and held-out figures")
    zb = zsub.add_parser("build", help="pretrain a zoo model from scratch into $MMADAPT_HOME/zoo and compare "
                         "its held-out figures with the shipped entry's")
    zb.add_argument("name", help="e.g. zoo:tiny-vit")
    zb.add_argument("--quick", action="store_true", help="the few-step test spec (an untrained model)")

    s = sub.add_parser("score", help="score official result files")
    ssub = s.add_subparsers(dest="what", required=True)
    sv = ssub.add_parser("vqa", help="official VQA v2 accuracy")
    sv.add_argument("--questions", required=True)
    sv.add_argument("--annotations", required=True)
    sv.add_argument("--results", required=True)
    sv.add_argument("--missing", choices=["zero", "error", "skip"], default="zero",
                    help="questions without a result: count 0 (default), fail, or leave out")
    sc = ssub.add_parser("caption", help="BLEU-1..4, METEOR, ROUGE-L, CIDEr (SPICE where it can run)")
    sc.add_argument("--annotations", required=True, help="COCO captions JSON")
    sc.add_argument("--results", required=True, help="[{image_id, caption}]")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "quiet", False):
        os.environ["MMADAPT_QUIET"] = "1"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        return _dispatch(args)
    except MMAdaptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc.filename}: file not found", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "info":
        return _info(args.json)
    if args.command == "report":
        from mmadapt.training import report

        runs = [report.summarize(path) for path in args.runs]
        print(report.report_table(runs))
        print(f"comparison plot: {report.plot_comparison(runs, args.out)}")
        return 0
    if args.command == "score":
        return _score(args)
    if args.command == "zoo":
        return _zoo(args)
    if args.command == "train":
        import mmadapt

        cfg = mmadapt.load_recipe(args.recipe, args.overrides)  # validated before any weights load
        try:
            result = mmadapt.train(cfg, resume=args.resume, evaluate_after=not args.no_eval, quiet=args.quiet)
        except KeyboardInterrupt:
            print(f"\n{_interrupted(args, Path(cfg.output_dir))}", file=sys.stderr)
            return 130
        if _is_main_process():
            for task, scores in result.scores.items():
                print(json.dumps({task: _headline(scores)}))
            _report_eval_errors(result.scores, Path(cfg.output_dir) / "eval")
        return 0
    if args.command == "eval":
        import mmadapt
        from mmadapt.models.base import Assembly, check_same_backbones

        cfg = mmadapt.load_recipe(args.recipe, args.overrides)
        check_same_backbones(args.adapter, cfg.model, "--adapter")  # before any weights load
        model = Assembly.from_pretrained(args.adapter)  # the assembly named in its adapter_config.json
        scores = mmadapt.evaluate(model, cfg, out_dir=args.out, quiet=args.quiet)  # sharded under torchrun
        if _is_main_process():
            print(json.dumps({task: _headline(s) for task, s in scores.items()}))
            _report_eval_errors(scores, Path(args.out) if args.out else Path(cfg.output_dir) / "eval")
        return 0
    if args.command == "shard":
        import mmadapt
        from mmadapt.api import shard

        cfg = mmadapt.load_recipe(args.recipe, args.overrides)
        reports = shard(cfg, args.out, which=args.split, task=args.task, max_per_shard=args.max_samples_per_shard,
                        report=lambda line: print(f"skipped: {line}", file=sys.stderr))
        for key, r in reports.items():
            print(f"{key}: {r.samples} {r.kind} samples in {len(r.shards)} shards -> {r.out} "
                  f"({len(r.skipped)} skipped)")
        return 0
    if args.command == "cache-features":
        import mmadapt
        from mmadapt.api import training_examples
        from mmadapt.training.feature_cache import cache_root, cache_training_features

        cfg = mmadapt.load_recipe(args.recipe, args.overrides)
        cache_root(cfg)  # refuse before loading weights if the recipe names no cache directory
        tasks = mmadapt.build_tasks(cfg)
        examples = training_examples(cfg, tasks)
        model = mmadapt.build_model(cfg, tasks)
        report = cache_training_features(model, cfg, examples, args.batch_size, quiet=args.quiet)
        for failure in report.failed:
            print(f"skipped: {failure}", file=sys.stderr)
        print(json.dumps({"store": str(report.store.directory), "files": report.files, "unique": report.unique,
                          "reused": report.reused, "computed": report.computed, "failed": len(report.failed),
                          "row_shape": list(report.store.row_shape), "seconds": round(report.seconds, 2)}))
        return 0
    if args.command == "demo":
        from mmadapt.demo import run_demo

        run_demo(Path(args.out), args.overrides, quiet=args.quiet, modality=args.modality)
        return 0
    raise AssertionError(args.command)  # argparse only lets known commands through


def _info(as_json: bool) -> int:
    from mmadapt import registry
    from mmadapt.zoo import zoo_names

    cat = registry.catalogue()
    listing = {k: cat[k] for k in ("tokenizers", "backbones", "adapters", "heads", "tasks", "datasets")}
    if as_json:
        print(json.dumps(listing))
        return 0
    for kind, entries in {**listing, "assemblies": cat["assemblies"], "zoo": zoo_names()}.items():
        print(f"{kind:11s} {', '.join(entries)}")
    return 0


def _zoo(args: argparse.Namespace) -> int:
    from mmadapt import zoo

    if args.action == "list":
        for name in zoo.zoo_names():
            shipped = zoo.shipped_entry(name)
            where = f"shipped {shipped}" if shipped is not None else "not shipped: built into the cache on first use"
            print(f"{name:22s} {where}")
        return 0
    if not zoo.is_zoo_name(args.name) or args.name not in zoo.zoo_names():
        raise MMAdaptError(f"zoo build: unknown zoo model {args.name!r}; known: {', '.join(zoo.zoo_names())}")
    entry = zoo.build_entry(args.name, quick=args.quick, rebuild=True)
    built = zoo.read_manifest(entry)
    shipped_dir = zoo.shipped_entry(args.name)
    shipped = zoo.read_manifest(shipped_dir)["metrics"] if shipped_dir is not None else {}
    print(json.dumps({"entry": str(entry), "spec_hash": built["spec_hash"],
                      "build_seconds": built["build_seconds"]}))
    for key, value in zoo.held_out_figures(built["metrics"]).items():
        print(f"{key:28s} {value:8.4f}   shipped {zoo.held_out_figures(shipped).get(key, float('nan')):8.4f}")
    return 0


def _score(args: argparse.Namespace) -> int:
    if args.what == "vqa":
        from mmadapt.eval.vqa_metric import score_vqa_files

        print(json.dumps(score_vqa_files(args.questions, args.annotations, args.results, missing=args.missing)))
    else:
        from mmadapt.eval.caption_metric import score_caption_files

        print(json.dumps(score_caption_files(args.annotations, args.results)))
    return 0


def _interrupted(args: argparse.Namespace, run_dir: Path) -> str:
    """The one line after Ctrl-C: the last complete checkpoint (checkpoints are written whole or not at all)
    and the command that resumes from it."""
    from mmadapt.training.checkpoint import latest_checkpoint

    latest = latest_checkpoint(run_dir)
    command = shlex.join(["mmadapt", "train", args.recipe, *args.overrides, "--resume"])
    if latest is None:
        return (f"interrupted: no checkpoint of {run_dir} is complete yet, so nothing to resume; start again with: "
                f"{shlex.join(['mmadapt', 'train', args.recipe, *args.overrides])}")
    return f"interrupted: the last complete checkpoint is {latest}; resume with: {command}"


def _is_main_process() -> bool:
    """Rank 0 under torchrun / the deepspeed launcher (the one that prints), or a plain process."""
    return int(os.environ.get("RANK", "0")) == 0


def _report_eval_errors(scores: dict[str, dict], out_dir: Path) -> None:
    """One line per task whose evaluation met samples it could not read: how many, and where they are listed."""
    for task, s in scores.items():
        n = s.get("n_errors") or 0
        if n:
            print(f"warning: eval {task}: {n} sample(s) could not be read, so were not predicted (n_errors above); "
                  f"each is listed in {out_dir / f'{task}_errors.json'}", file=sys.stderr)


def _headline(scores: dict) -> dict:
    """The few numbers worth a terminal line (the full objects are in eval/*.json), the error count with them."""
    if "overall" in scores:
        return {"overall": scores["overall"], "perAnswerType": scores.get("perAnswerType"),
                "n_errors": scores.get("n_errors", 0)}
    dense = {k: v for k, v in scores.items() if isinstance(v, dict) and k != "baselines"
             and any(m in v for m in ("mIoU", "maxF", "mean"))}
    if dense:  # a dense multi-task run: each task's headline metric
        out = {k: round(v.get("maxF", v.get("mIoU", v.get("mean", float("nan")))), 2) for k, v in dense.items()}
        return {**out, "baselines": scores.get("baselines"), "n_errors": scores.get("n_errors")}
    if "accuracy" in scores or "mse" in scores:
        keep = ("accuracy", "mean_class_accuracy", "mse", "mae", "r2", "baselines", "n_errors")
        return {k: scores[k] for k in keep if k in scores}
    return {k: v for k, v in scores.items() if k in ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE", "n_errors")}


if __name__ == "__main__":
    sys.exit(main())
