"""Per-rank memory of ZeRO-3 vs ZeRO-0 with 2 processes, same model, same training steps, CPU.

(One file over 400 lines on purpose: it is the launcher, the torchrun worker and the report of one
measurement, read top to bottom.)

    python benchmarks/zero_memory.py [--steps 3] [--batch 4] [--stages 0 3] [--json out.json]

What is built and run, once per ZeRO stage, each as 2 processes under torchrun (gloo, CPU, one thread each,
as ``tests/test_training.py`` launches them):

- the model: the real-size eP-ALM of ``benchmarks/epalm_step.py`` (``build_model``: OPT-125m + ViT-B/16 from
  their configs, random init, fp32, frozen; eP-ALM with the paper's defaults trained), 214.6M parameters of
  which 3.55M trained; every rank builds it from the same seed;
- the data: the eP-ALM demo recipe's VQA training examples (``adapters/epalm/demo.yaml``, synthetic scenes
  under ``$MMADAPT_HOME/data/scenes``, captioning off), resized to 224 px by the ViT's processor;
- the training: the library's own :class:`~mmadapt.training.trainer.Trainer` (``deepspeed.initialize`` with
  ``deepspeed_config``: fp32, global batch ``--batch`` = 2 ranks × micro-batch, AdamW on the adapter, the
  recipe's LR 3e-3 without warm-up) for ``--steps`` steps. The trainer's ZeRO-3 hand-back at the end (which
  gathers every parameter whole again) is switched off so the last measurement sees the trained state.

Measured on each rank: after the model is built (before ``deepspeed.initialize``), after initialize, and after
the steps —

- parameter bytes held by the rank: per unique parameter, the bytes of the storage the rank holds: ZeRO-3
  keeps ``p.ds_tensor`` (its 1/2 partition, padded) and, for parameters DeepSpeed keeps whole
  (``ds_persist``: fewer than ``stage3_param_persistence_threshold`` = 1e5 elements — biases, norms, the soft
  prompt), ``p.data`` too; ZeRO-0 holds ``p.data``. Split into trainable / frozen and partitioned / whole;
- optimizer state: the AdamW moments (``exp_avg``, ``exp_avg_sq``, ``step``), plus the other tensors the ZeRO
  optimizer object holds (fp32 master partitions, gradient partitions and buffers), deduplicated by storage
  and not counting the parameters' own storage;
- the process's resident set (VmRSS) after ``gc.collect()``, and again after glibc's ``malloc_trim(0)``
  (freed heap pages that glibc keeps are returned: the difference is memory the process no longer uses),
  and the peak so far (VmHWM);
- the per-step global loss (the trainer's ``all_mean`` over ranks) and the step times.

Reported: those figures per rank and stage, the ratios ZeRO-3 / ZeRO-0 (target: parameter memory ≤ 0.6×) and
the max |Δloss| between the two runs (target ~1e-5). Worker processes leave with ``os._exit`` after writing
their results (DeepSpeed ZeRO-3 on CPU sometimes aborts at interpreter exit).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import child_env, environment, loadavg, mib, proc_status, step_seconds, write_json  # noqa: E402

DEMO_RECIPE = ROOT / "adapters" / "epalm" / "demo.yaml"
MIB = 1024 ** 2


# ------------------------------------------------------------------------------------------ measuring
def _nbytes(t) -> int:
    return t.numel() * t.element_size()


def param_memory(module) -> dict:
    """Bytes of parameter storage this rank holds, by kind (see the module docstring)."""
    out = {f"{a}_{b}": {"params": 0, "elements": 0, "held_bytes": 0}
           for a in ("trainable", "frozen") for b in ("partitioned", "whole")}
    for p in module.parameters():  # unique: tied weights once
        ds = getattr(p, "ds_tensor", None)
        partitioned = ds is not None and not getattr(p, "ds_persist", False)
        held = _nbytes(p.data) + (_nbytes(ds) if ds is not None else 0)
        row = out[f"{'trainable' if p.requires_grad else 'frozen'}_{'partitioned' if partitioned else 'whole'}"]
        row["params"] += 1
        row["elements"] += int(getattr(p, "ds_numel", p.numel()))
        row["held_bytes"] += held
    out["total_held_bytes"] = sum(v["held_bytes"] for v in out.values() if isinstance(v, dict))
    out["total_elements"] = sum(v["elements"] for v in out.values() if isinstance(v, dict))
    out["full_bytes"] = sum(int(getattr(p, "ds_numel", p.numel())) * p.element_size() for p in module.parameters())
    return out


def _tensors(obj, depth: int = 0):
    import torch

    if torch.is_tensor(obj):
        yield obj
    elif depth < 4 and isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _tensors(x, depth + 1)
    elif depth < 4 and isinstance(obj, dict):
        for x in obj.values():
            yield from _tensors(x, depth + 1)


def _storage_key(t) -> tuple[int, int]:
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


def optimizer_memory(engine, module) -> dict:
    """AdamW state bytes, and the bytes of the other tensors the (ZeRO) optimizer object holds."""
    opt = engine.optimizer
    base = getattr(opt, "optimizer", opt)
    param_storages = set()
    for p in module.parameters():
        param_storages.add(_storage_key(p.data))
        if getattr(p, "ds_tensor", None) is not None:
            param_storages.add(_storage_key(p.ds_tensor))
    state_storages = {}
    for s in base.state.values():
        for t in _tensors(s):
            state_storages[_storage_key(t)] = t.untyped_storage().nbytes()
    other = {}
    holders = [opt] if opt is base else [opt, base]
    for holder in holders:
        for name, value in vars(holder).items():
            if name == "state":
                continue
            for t in _tensors(value):
                key = _storage_key(t)
                if key in param_storages or key in state_storages or key[1] == 0:
                    continue
                other.setdefault(key, (name, key[1]))
    by_attr: dict[str, int] = {}
    for name, nbytes in other.values():
        by_attr[name] = by_attr.get(name, 0) + nbytes
    return {"optimizer": type(opt).__name__, "adam_state_bytes": sum(state_storages.values()),
            "zero_buffers_bytes": sum(n for _, n in other.values()), "zero_buffers_by_attr": by_attr}


def rss() -> dict:
    """VmRSS after gc.collect(), after malloc_trim(0), and VmHWM (MiB)."""
    import ctypes
    import gc

    gc.collect()
    before = proc_status()
    trimmed = None
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        trimmed = mib(proc_status()["VmRSS"])
    except OSError:
        pass
    return {"rss_mib": mib(before["VmRSS"]), "rss_trimmed_mib": trimmed, "hwm_mib": mib(before["VmHWM"])}


# --------------------------------------------------------------------------------------------- worker
def worker(args) -> None:
    """One rank under torchrun: build, initialize through the Trainer, train, measure; leave with os._exit."""
    import traceback

    code = 0
    try:
        _worker(args)
    except BaseException:  # noqa: BLE001 - report, then leave with a failure code
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _worker(args) -> None:
    import torch

    import mmadapt
    from epalm_step import build_model
    from mmadapt.api import training_examples
    from mmadapt.training.distributed import barrier, init_distributed
    from mmadapt.training.trainer import Trainer
    from mmadapt.zoo.cache import cache_root

    torch.set_num_threads(args.threads)
    if args.zero_opts:
        _patch_zero_config(json.loads(args.zero_opts))
    rank, world = init_distributed()
    out = Path(args.out)
    snaps = {"start": rss()}
    data = args.data or cache_root() / "data" / "scenes"
    cfg = mmadapt.load_recipe(DEMO_RECIPE, [
        "tasks.caption=null", *[f"tasks.vqa.{s}.root={data}" for s in ("train", "eval")],
        f"train.max_steps={args.steps}", f"train.batch_size={args.batch}", f"train.zero_stage={args.stage}",
        "train.precision=fp32", "train.warmup_steps=0", f"train.seed={args.seed}", "train.save_every=0",
        f"output_dir={out / 'run'}"])
    examples = training_examples(cfg)
    t0 = time.perf_counter()
    model = build_model(args.seed)
    build_s = time.perf_counter() - t0
    snaps["built"] = {**rss(), "params": param_memory(model)}
    t0 = time.perf_counter()
    trainer = Trainer(model, cfg, examples, out / "run", quiet=True)
    init_s = time.perf_counter() - t0
    module = trainer.module
    snaps["initialized"] = {**rss(), "params": param_memory(module),
                            "optimizer": optimizer_memory(trainer.engine, module)}
    trainer._release_zero3 = lambda: None  # measure the trained state as ZeRO-3 holds it (see docstring)
    t0 = time.perf_counter()
    records = trainer.train()
    train_s = time.perf_counter() - t0
    snaps["trained"] = {**rss(), "params": param_memory(module),
                        "optimizer": optimizer_memory(trainer.engine, module)}
    res = {"rank": rank, "world": world, "stage": args.stage, "losses": [r["loss"] for r in records],
           "step_s": step_seconds(records), "build_s": build_s, "initialize_s": init_s,
           "train_s": train_s, "snapshots": snaps, "torch_threads": torch.get_num_threads(),
           "deepspeed_config": _ds_config(trainer)}
    (out / f"rank{rank}.json").write_text(json.dumps(res, indent=2))
    barrier()


def _patch_zero_config(extra: dict) -> None:
    """Merge ``extra`` into the ``zero_optimization`` section the library's ``deepspeed_config`` returns."""
    from mmadapt.training import trainer

    base = trainer.deepspeed_config

    def patched(train, world_size):
        cfg = base(train, world_size)
        cfg["zero_optimization"].update(extra)
        return cfg

    trainer.deepspeed_config = patched


def _ds_config(trainer) -> dict | None:
    """The DeepSpeed config the trainer passed (``deepspeed_config`` of the recipe's ``train``)."""
    from mmadapt.training.trainer import deepspeed_config

    try:
        return deepspeed_config(trainer.train_cfg, trainer.world)  # patched by --zero-opts, if given
    except Exception:  # noqa: BLE001 - informational only
        return None


# --------------------------------------------------------------------------------------------- parent
def launch(stage: int, args, out: Path) -> list[dict]:
    """Run one stage as 2 torchrun processes; their per-rank results."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.nproc), "--standalone",
           str(Path(__file__).resolve()), "--worker",
           "--stage", str(stage), "--out", str(out), "--steps", str(args.steps), "--batch", str(args.batch),
           "--seed", str(args.seed), "--threads", str(args.threads)]
    if args.zero_opts and stage == 3:
        cmd += ["--zero-opts", args.zero_opts]
    if args.data is not None:
        cmd += ["--data", str(args.data)]
    env = child_env(OMP_NUM_THREADS=str(args.threads))
    log = out / "torchrun.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its workers: their own process group
            proc.wait()
            raise SystemExit(f"ZeRO-{stage}: timed out after {args.timeout} s (log: {log})") from None
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(log.read_text()[-6000:])
        raise SystemExit(f"ZeRO-{stage}: torchrun exited {proc.returncode} (log: {log})")
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(args.nproc)]
    print(f"  ZeRO-{stage}: {wall:.0f} s", file=sys.stderr, flush=True)
    for r in ranks:
        r["wall_s"] = wall
    return ranks


def summarize(stages: dict[int, list[dict]]) -> dict:
    out: dict = {}
    if 0 in stages and 3 in stages:
        ratios = []
        for r0, r3 in zip(stages[0], stages[3]):
            row = {"rank": r0["rank"]}
            for when in ("initialized", "trained"):
                a, b = r0["snapshots"][when], r3["snapshots"][when]
                pa, pb = a["params"]["total_held_bytes"], b["params"]["total_held_bytes"]
                oa = a["optimizer"]["adam_state_bytes"] + a["optimizer"]["zero_buffers_bytes"]
                ob = b["optimizer"]["adam_state_bytes"] + b["optimizer"]["zero_buffers_bytes"]
                row[when] = {"params": pb / pa, "params_plus_optimizer": (pb + ob) / (pa + oa),
                             "rss": b["rss_mib"] / a["rss_mib"], "peak_rss": b["hwm_mib"] / a["hwm_mib"]}
                if a["rss_trimmed_mib"] and b["rss_trimmed_mib"]:
                    row[when]["rss_trimmed"] = b["rss_trimmed_mib"] / a["rss_trimmed_mib"]
                    s0, s3 = r0["snapshots"]["start"]["rss_trimmed_mib"], r3["snapshots"]["start"]["rss_trimmed_mib"]
                    row[when]["rss_trimmed_above_start"] = (b["rss_trimmed_mib"] - s3) / (a["rss_trimmed_mib"] - s0)
            ratios.append(row)
        out["ratio_zero3_over_zero0"] = ratios
        l0, l3 = stages[0][0]["losses"], stages[3][0]["losses"]
        out["max_abs_loss_diff"] = max(abs(a - b) for a, b in zip(l0, l3))
        out["params_ratio_max"] = max(r["trained"]["params"] for r in ratios)
        out["params_ratio_max_initialized"] = max(r["initialized"]["params"] for r in ratios)
        out["target_met"] = out["params_ratio_max"] <= 0.6 and out["max_abs_loss_diff"] <= 1e-4
    return out


def report(res: dict) -> str:
    lines = []
    add = lines.append
    env = res["env"]
    add("ZeRO-3 vs ZeRO-0 per-rank memory — eP-ALM OPT-125m + ViT-B/16 (random, fp32), 2 CPU processes (gloo)")
    add(f"  torch {env['torch']}, deepspeed {env['deepspeed']}, {env['cpu']}, "
        f"{res['threads']} thread(s) per rank, {res['steps']} steps of global batch {res['batch']}, "
        f"ZeRO-3 extra config {res.get('zero_opts') or 'none'}, "
        f"loadavg {env['loadavg_start']} → {env['loadavg_end']}")
    w = 30
    for stage, ranks in res["stages"].items():
        add("")
        z = ranks[0]["snapshots"]["trained"]["optimizer"]["optimizer"]
        add(f"ZeRO-{stage} ({z}; wall {ranks[0]['wall_s']:.0f} s, step times rank 0 "
            f"{', '.join(f'{s:.1f}' for s in ranks[0]['step_s'])} s)")
        whens = ("start", "built", "initialized", "trained")
        add(f"  {'MiB (rank 0 | rank 1)':<{w}}" + "".join(f"{x:>14}" for x in whens))

        def cell(when, fn):
            vals = []
            for r in ranks:
                try:
                    vals.append(fn(r["snapshots"][when]))
                except (KeyError, TypeError):  # not measured at that point (no model / no optimizer yet)
                    vals.append(None)
            return " | ".join("—" if v is None else f"{v:.0f}" for v in vals)

        rows = [
            ("params held", lambda s: s["params"]["total_held_bytes"] / MIB),
            ("  frozen, partitioned", lambda s: s["params"]["frozen_partitioned"]["held_bytes"] / MIB),
            ("  frozen, whole / persistent", lambda s: s["params"]["frozen_whole"]["held_bytes"] / MIB),
            ("  trainable, partitioned", lambda s: s["params"]["trainable_partitioned"]["held_bytes"] / MIB),
            ("  trainable, whole / persistent", lambda s: s["params"]["trainable_whole"]["held_bytes"] / MIB),
            ("AdamW state", lambda s: s["optimizer"]["adam_state_bytes"] / MIB),
            ("ZeRO optimizer buffers", lambda s: s["optimizer"]["zero_buffers_bytes"] / MIB),
            ("RSS after gc", lambda s: s["rss_mib"]),
            ("RSS after malloc_trim", lambda s: s["rss_trimmed_mib"]),
            ("peak RSS so far (VmHWM)", lambda s: s["hwm_mib"]),
        ]
        for name, fn in rows:
            add(f"  {name:<{w}}" + "".join(f"{cell(when, fn):>14}" for when in whens))
        p = ranks[0]["snapshots"]["trained"]["params"]
        add(f"  parameters (rank 0): frozen partitioned {p['frozen_partitioned']['params']} "
            f"({p['frozen_partitioned']['elements']:,} el.), frozen whole {p['frozen_whole']['params']} "
            f"({p['frozen_whole']['elements']:,}), trainable partitioned {p['trainable_partitioned']['params']} "
            f"({p['trainable_partitioned']['elements']:,}), trainable whole {p['trainable_whole']['params']} "
            f"({p['trainable_whole']['elements']:,}); full model {p['full_bytes'] / MIB:.0f} MiB")
        add(f"  losses: {', '.join(f'{x:.6f}' for x in ranks[0]['losses'])}")
    s = res["summary"]
    if s:
        add("")
        add("ZeRO-3 / ZeRO-0, per rank            params   params+optim      RSS   RSS trimmed   (− start)"
            "   peak RSS")
        for r in s["ratio_zero3_over_zero0"]:
            for when in ("initialized", "trained"):
                x = r[when]
                add(f"  rank {r['rank']}, {when:<26}{x['params']:>8.3f}{x['params_plus_optimizer']:>15.3f}"
                    f"{x['rss']:>9.3f}{x.get('rss_trimmed', float('nan')):>14.3f}"
                    f"{x.get('rss_trimmed_above_start', float('nan')):>12.3f}{x['peak_rss']:>11.3f}")
        add(f"max |loss ZeRO-3 − loss ZeRO-0| over {res['steps']} steps: {s['max_abs_loss_diff']:.2e}")
        add(f"target: params ≤ 0.6× (worst rank {s['params_ratio_max']:.3f}) and the same losses → "
            f"{'met' if s['target_met'] else 'NOT met'}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4, help="global batch (2 ranks × micro-batch)")
    ap.add_argument("--stages", type=int, nargs="*", default=[0, 3], choices=[0, 1, 2, 3])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=None, help="scenes root (default: $MMADAPT_HOME/data/scenes)")
    ap.add_argument("--zero-opts", default=None,
                    help="JSON merged into ZeRO-3's zero_optimization section, e.g. "
                         "'{\"stage3_max_live_parameters\": 1e7}' (default: the library's config as is)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per stage")
    ap.add_argument("--keep", type=Path, default=None, help="keep the runs' files (logs, per-rank JSON) here")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank (2 ranks share the CPU)")
    ap.add_argument("--quick", action="store_true", help="smoke-test size: --steps 1")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--stage", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.nproc = 2
    args.threads = max(1, args.threads)
    if args.quick:
        args.steps = 1
    return args


def run(args: argparse.Namespace) -> dict:
    """Both stages (2 processes each, one after the other), the table, the results."""
    import deepspeed

    env = environment(deepspeed=deepspeed.__version__)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        stages = {stage: launch(stage, args, base / f"zero{stage}") for stage in args.stages}
    env["loadavg_end"] = loadavg()
    summary = summarize(stages)
    res = {"benchmark": "zero_memory", "threads": args.threads,
           # headline figures (what `python -m benchmarks` checks): worst rank, after the steps
           "param_bytes_ratio": summary.get("params_ratio_max"), "max_loss_diff": summary.get("max_abs_loss_diff"),
           "steps": args.steps, "batch": args.batch, "nproc": args.nproc,
           "zero_opts": args.zero_opts, "env": env,
           "stages": stages, "summary": summary, "wall_s": round(time.perf_counter() - t0, 1),
           "command": " ".join([Path(sys.executable).name, *sys.argv])}
    print(report(res))
    write_json(res, args.json)
    return res


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
