"""Point-cloud grouping benchmark: batched farthest point sampling + kNN, and the point tokenizer's forward.

    python benchmarks/point_groups.py [--batch 8] [--points 8192] [--groups 1024] [--k 32] [--dim 384]
                                      [--repeats 5] [--warmup 1] [--threads N] [--json out.json]

What is measured (random normal clouds, fp32, CPU; the timings do not depend on the values):

- ``fps``: :func:`mmadapt.tokenizers.point_cloud.farthest_point_sample` of ``--groups`` centres from
  ``--batch`` × ``--points`` points (one Python loop over the picks, batched tensor ops inside), also given
  per pick;
- ``knn``: :func:`~mmadapt.tokenizers.point_cloud.knn` of those centres, ``--k`` neighbours each
  (``torch.cdist`` [B, groups, points] + ``topk``);
- ``tokenizer``: the full :class:`~mmadapt.tokenizers.point_cloud.PointCloudTokenizer` forward under
  ``torch.no_grad()`` at the same sizes (n_points = --points, n_groups = --groups, group_size = --k, width
  ``--dim``; Point-MAE's default hidden sizes), i.e. FPS + kNN + gather + mini-PointNet + position MLP;
- ``tokenizer_default``: the forward with ``tokenizers/point_cloud.yaml``'s sizes (1024 points → 64 groups
  of 32) at the zoo encoder's width 128, same batch: the configuration a training step actually runs.

Each is timed ``--repeats`` times after ``--warmup`` untimed calls; the median (and min / max) is printed.

FPS and kNN are bound by memory traffic and per-op overhead, not arithmetic, so they are reported as times
(and µs per FPS pick). The tokenizer forwards are dominated by the mini-PointNet's matmuls, counted
analytically (a multiply-add = 2 FLOPs; C input channels, h = hidden, p = position_hidden)::

    per grouped point  2·(C·h + h·2h + 4h·4h + 4h·D)      (point MLP, then group MLP on [pooled ‖ point])
    per centre         2·(3·p + p·D)                      (position MLP)
    forward            B·G·(K·per point + per centre)

and divided by this machine's dense fp32 ``torch.mm`` 2048² throughput, measured in the same run (median of
``--mm-repeats``) as the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, loadavg, write_json  # noqa: E402


def stats(times: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": len(times),
            "all_s": times}


def timed(fn: Callable[[], object], repeats: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return stats(times)


def forward_flops(cfg, batch: int, dim: int) -> int:
    """Analytic matmul FLOPs of one tokenizer forward (see the module docstring)."""
    c, h, p = cfg.in_channels, cfg.hidden, cfg.position_hidden
    per_point = 2 * (c * h + h * 2 * h + 4 * h * 4 * h + 4 * h * dim)
    per_centre = 2 * (3 * p + p * dim)
    return batch * cfg.n_groups * (cfg.group_size * per_point + per_centre)


def run(args: argparse.Namespace) -> dict:
    import torch

    from mmadapt.tokenizers.point_cloud import (PointCloudTokenizer, PointCloudTokenizerConfig,
                                                farthest_point_sample, knn)

    torch.manual_seed(args.seed)
    xyz = torch.randn(args.batch, args.points, 3)
    centres = xyz[torch.arange(args.batch)[:, None], farthest_point_sample(xyz, args.groups)]
    big = PointCloudTokenizer(args.dim, PointCloudTokenizerConfig(
        n_points=args.points, n_groups=args.groups, group_size=args.k)).eval()
    default_cfg = PointCloudTokenizerConfig()
    small = PointCloudTokenizer(128, default_cfg).eval()
    small_xyz = torch.randn(args.batch, default_cfg.n_points, 3)

    def forward(tokenizer: PointCloudTokenizer, points: torch.Tensor) -> Callable[[], object]:
        def call() -> object:
            with torch.no_grad():
                return tokenizer(points)
        return call

    size = args.mm_size
    a, b = torch.randn(size, size), torch.randn(size, size)
    mm = timed(lambda: torch.mm(a, b), args.mm_repeats, 1)
    mm["flops_per_s"] = 2 * size**3 / mm["median_s"]
    res = {
        "matmul": mm,
        "flops": {"tokenizer": forward_flops(big.config, args.batch, args.dim),
                  "tokenizer_default": forward_flops(default_cfg, args.batch, 128)},
        "fps": timed(lambda: farthest_point_sample(xyz, args.groups), args.repeats, args.warmup),
        "knn": timed(lambda: knn(centres, xyz, args.k), args.repeats, args.warmup),
        "tokenizer": timed(forward(big, xyz), args.repeats, args.warmup),
        "tokenizer_default": timed(forward(small, small_xyz), args.repeats, args.warmup),
        "tokenizer_params": sum(p.numel() for p in big.parameters()),
        "matmul_size": size,
        "default_config": {"n_points": default_cfg.n_points, "n_groups": default_cfg.n_groups,
                           "group_size": default_cfg.group_size, "dim": 128},
    }
    return res


def report(res: dict) -> str:
    a, env = res["args"], res["env"]
    lines = [
        "point grouping benchmark — batched FPS + kNN (torch.cdist + topk), fp32, CPU",
        (f"  torch {env['torch']}, {env['cpu']}, {env['threads']} threads, "
         f"loadavg start {env['loadavg_start']} end {env['loadavg_end']}"),
        (f"  batch {a['batch']} × {a['points']} points → {a['groups']} centres, k = {a['k']}; "
         f"{a['repeats']} timed calls after {a['warmup']} warm-up"),
        "",
        f"{'':<44}{'median':>10}{'min':>10}{'max':>10}{'GFLOP':>9}{'/ dense':>9}",
    ]
    d = res["default_config"]
    rows = [
        ("FPS [s]", res["fps"], 0),
        ("kNN [s]", res["knn"], 0),
        (f"tokenizer forward, D={a['dim']} [s]", res["tokenizer"], res["flops"]["tokenizer"]),
        (f"tokenizer forward, {d['n_points']} pts→{d['n_groups']}×{d['group_size']}, D={d['dim']} [s]",
         res["tokenizer_default"], res["flops"]["tokenizer_default"]),
        (f"dense fp32 mm {res['matmul_size']}² [s]", res["matmul"], 2 * res["matmul_size"] ** 3),
    ]
    dense = res["matmul"]["flops_per_s"]
    for name, t, flops in rows:
        line = f"{name:<44}{t['median_s']:>10.4f}{t['min_s']:>10.4f}{t['max_s']:>10.4f}"
        if flops:
            line += f"{flops / 1e9:>9.1f}{flops / t['median_s'] / dense:>9.2f}"
        lines.append(line)
    fps, nn = res["fps"]["median_s"], res["knn"]["median_s"]
    lines += [
        "",
        (f"  FPS + kNN: {fps + nn:.3f} s median ({1e6 * fps / a['groups']:.0f} µs per FPS pick over "
         f"{a['batch']}×{a['points']} points); grouping = {100 * (fps + nn) / res['tokenizer']['median_s']:.0f}% "
         f"of the tokenizer forward ({res['tokenizer_params']:,} parameters)"),
        f"  dense fp32 matmul: {dense / 1e9:.1f} GFLOP/s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--points", type=int, default=8192)
    ap.add_argument("--groups", type=int, default=1024)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--dim", type=int, default=384, help="tokenizer width at the benchmark size (Point-MAE: 384)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mm-size", type=int, default=2048)
    ap.add_argument("--mm-repeats", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    env = environment(threads=torch.get_num_threads())
    res = run(args)
    env["loadavg_end"] = loadavg()
    res = {"benchmark": "point_groups", "command": " ".join([Path(sys.executable).name, *sys.argv]),
           "args": vars(args) | {"json": None if args.json is None else str(args.json)}, "env": env, **res}
    print(report(res))
    write_json(res, args.json)


if __name__ == "__main__":
    main()
