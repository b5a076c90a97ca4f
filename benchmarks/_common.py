"""Shared by the benchmarks: this process's resident memory and its high-water mark, the machine they ran on,
running a phase in a fresh interpreter, and writing their JSON."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def proc_status() -> dict[str, int]:
    """VmRSS / VmHWM of this process in KiB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, val = line.split(":")
                out[key] = int(val.split()[0])
    return out


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def mib(kib: int) -> float:
    return kib / 1024.0


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def child_env(**extra: str) -> dict[str, str]:
    """The environment a benchmark's subprocess runs in: this one, offline and quiet (no hub access, no tokenizer
    threads, no library banners), DeepSpeed's compiled ops cached where the tests keep them, plus ``extra``."""
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", MMADAPT_QUIET="1")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "mmadapt" / "torch_extensions"))
    return {**env, **extra}


def run_json_child(cmd: list[str], what: str, env: dict[str, str] | None = None, stream_stderr: bool = False,
                   wall_key: str = "wall_s") -> dict:
    """Run one benchmark phase in a fresh interpreter (``env``: :func:`child_env` unless given) from the
    repository root; its last stdout line is its JSON result, returned with the process's seconds under
    ``wall_key`` (pick another key where the child reports its own ``wall_s``). Its stderr is shown live with
    ``stream_stderr``, otherwise only (the last 5,000 characters) when it fails.

    Raises:
        SystemExit: ``"{what} failed (exit N)"`` when the child exits non-zero.
    """
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if stream_stderr else subprocess.PIPE,
                          text=True, env=child_env() if env is None else env, cwd=str(ROOT))
    if proc.returncode != 0:
        sys.stderr.write((proc.stderr or "")[-5000:])
        raise SystemExit(f"{what} failed (exit {proc.returncode})")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result[wall_key] = time.perf_counter() - t0
    return result


def step_seconds(records: list[dict]) -> list[float]:
    """Each step's duration from the trainer's log records (their ``"time"`` is seconds since training began)."""
    clock = [0.0] + [r["time"] for r in records]
    return [b - a for a, b in zip(clock, clock[1:])]


def environment(**extra) -> dict:
    """What a result depends on besides its arguments: library versions, CPU, cores, the load when it started
    (the caller adds ``loadavg_end``), plus ``extra`` (e.g. ``threads``)."""
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "cpu": cpu_name(),
            "nproc": os.cpu_count(), "python": platform.python_version(), **extra, "loadavg_start": loadavg()}


def write_json(result: dict, path: Path | None) -> None:
    """Write ``result`` to ``path`` (parents created; nothing when ``path`` is None) and say so on stderr."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {path}", file=sys.stderr)


def fill_run_defaults(args, sizes: dict[str, tuple[int, int]]):
    """``args`` with each of ``sizes`` (``name: (quick, full)``) that the command line left None set to its
    ``--quick`` or full value, and ``--data`` (left None) set to the cached scenes."""
    for name, (quick, full) in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.data is None:
        from mmadapt.zoo.cache import cache_root

        args.data = cache_root() / "data" / "scenes"
    return args
