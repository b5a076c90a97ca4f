"""Training that faults cannot break: kill -9 at any moment, non-finite steps, determinism.

The tiny random OPT + ViT + eP-ALM of ``tests/tiny.py`` on CPU. The kill test drives ``tests/kill_worker.py``
in subprocesses and is marked ``slow``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny import make_model, tiny_config

os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "mmadapt" / "torch_extensions"))

from mmadapt.api import train  # noqa: E402
from mmadapt.errors import TrainingError  # noqa: E402
from mmadapt.training import checkpoint as ckpt  # noqa: E402

WORKER = Path(__file__).parent / "kill_worker.py"


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]


def adapter_at(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt.checkpoint_dir(run_dir, step) / "adapter_model.safetensors"))


def assert_same_weights(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)


# ------------------------------------------------------------------------------------------ determinism
def test_same_seed_and_config_give_the_same_losses(scenes_root, tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = tiny_config(scenes_root, tmp_path / name, max_steps=4)
        runs.append(train(cfg, model=make_model(cfg), quiet=True))
    la, lb = ([r["loss"] for r in run.records] for run in runs)
    assert la == lb, "same seed, same config: bit-identical losses on CPU"
    assert len(set(la)) == 4  # and they are real, changing losses
    cfg = tiny_config(scenes_root, tmp_path / "c", max_steps=4, seed=1)
    lc = [r["loss"] for r in train(cfg, model=make_model(cfg), quiet=True).records]
    assert lc != la, "another data-order seed gives another run"


# -------------------------------------------------------------------------------------- non-finite guard
class NaNGradient(torch.autograd.Function):
    """Identity forward, NaN gradient: a finite loss whose backward is poisoned."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def poison(model, steps: set[int], kind: str) -> None:
    """Make the training forward of the given (1-based) calls return a NaN loss or a NaN gradient."""
    forward, calls = model.forward, {"n": 0}

    def poisoned(*args, **kwargs):
        loss = forward(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] in steps:
            return loss * float("nan") if kind == "loss" else NaNGradient.apply(loss)
        return loss

    model.forward = poisoned


@pytest.mark.parametrize("zero_stage,kind", [(0, "loss"), (0, "gradient"), (2, "loss"), (2, "gradient")])
def test_a_non_finite_step_changes_nothing_and_training_goes_on(scenes_root, tmp_path, zero_stage, kind):
    ref_cfg = tiny_config(scenes_root, tmp_path / "ref", max_steps=4, save_every=1, keep_checkpoints=0,
                          zero_stage=zero_stage)
    ref = train(ref_cfg, model=make_model(ref_cfg), quiet=True)

    cfg = tiny_config(scenes_root, tmp_path / "run", max_steps=4, save_every=1, keep_checkpoints=0,
                      zero_stage=zero_stage)
    model = make_model(cfg)
    poison(model, {2}, kind)
    run = train(cfg, model=model, quiet=True)

    log = read_log(tmp_path / "run")
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    expected = ["gradient", "loss"] if kind == "loss" else ["gradient"]  # a NaN loss back-propagates NaN
    assert log[1]["nonfinite"] == expected and all("nonfinite" not in r for r in (log[0], log[2], log[3]))
    assert log[0]["loss"] == ref.records[0]["loss"]
    # step 2 made no update: its checkpoint holds exactly step 1's adapter
    assert_same_weights(adapter_at(tmp_path / "run", 2), adapter_at(tmp_path / "run", 1))
    # ... and training went on: step 3 trains (finite loss, the weights move) with the LR schedule of step 3
    assert torch.isfinite(torch.tensor(run.records[2]["loss"]))
    after3 = adapter_at(tmp_path / "run", 3)
    assert any(not torch.equal(after3[k], v) for k, v in adapter_at(tmp_path / "run", 2).items())
    assert all(torch.isfinite(v).all() for v in after3.values())
    assert run.records[2]["lr"] == ref.records[2]["lr"]


def test_too_many_non_finite_steps_in_a_row_stop_with_a_clear_message(scenes_root, tmp_path):
    cfg = tiny_config(scenes_root, tmp_path / "run", max_steps=8, save_every=1, max_nonfinite_steps=2)
    model = make_model(cfg)
    poison(model, {3, 5, 6}, "loss")  # 3 alone is skipped; 5 and 6 in a row stop the run
    with pytest.raises(TrainingError) as err:
        train(cfg, model=model, quiet=True)
    msg = str(err.value)
    assert "2 steps in a row (steps 5–6)" in msg and "max_nonfinite_steps=2" in msg and "non-finite gradient / loss" in msg
    # the message names the last checkpoint: step 5's, saved after the skipped step 5 with step 4's adapter
    assert str(ckpt.checkpoint_dir(tmp_path / "run", 5)) in msg
    log = read_log(tmp_path / "run")
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    bad = ["gradient", "loss"]
    assert [r.get("nonfinite") for r in log] == [None, None, bad, None, bad, bad]
    assert ckpt.latest_checkpoint(tmp_path / "run") == ckpt.checkpoint_dir(tmp_path / "run", 5)
    assert_same_weights(adapter_at(tmp_path / "run", 5), adapter_at(tmp_path / "run", 4))


def test_max_nonfinite_steps_is_validated(scenes_root, tmp_path):
    from mmadapt.errors import ConfigError

    with pytest.raises(ConfigError, match="max_nonfinite_steps"):
        tiny_config(scenes_root, tmp_path, max_nonfinite_steps=0)


# ----------------------------------------------------------------------------------------- weights only
class WritesAFile:
    """A pickle payload: unpickling it with weights_only=False would create ``path``."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "code ran"))


def test_resume_never_unpickles_code_from_a_tampered_checkpoint(scenes_root, tmp_path):
    cfg = tiny_config(scenes_root, tmp_path / "run", max_steps=2, save_every=1)
    train(cfg, model=make_model(cfg), quiet=True)
    latest = ckpt.latest_checkpoint(tmp_path / "run")
    [states] = (latest / "deepspeed").rglob("*model_states.pt")
    marker = tmp_path / "marker"
    state = ckpt.weights_only_checkpoint_engine(None).load(str(states), map_location="cpu")
    state["payload"] = WritesAFile(marker)
    torch.save(state, states)
    cfg = tiny_config(scenes_root, tmp_path / "run", max_steps=4, save_every=1)
    with pytest.raises(TrainingError, match="weights_only=True"):
        train(cfg, model=make_model(cfg), resume=True, quiet=True)
    assert not marker.exists(), "the checkpoint's code ran"


# --------------------------------------------------------------------------------------------- kill -9
def run_worker(scenes: Path, run_dir: Path, *, resume: bool, pause: str | None = None, nth: int = 1,
               kill_after: float | None = None, steps: int = 8) -> str:
    """Run tests/kill_worker.py; with ``pause``, SIGKILL it once it reports that it reached that point;
    with ``kill_after``, SIGKILL it after that many seconds. Returns how it ended."""
    marker = run_dir.parent / f"marker-{pause}-{nth}-{time.monotonic_ns()}"
    cmd = [sys.executable, str(WORKER), "--scenes", str(scenes), "--run", str(run_dir), "--steps", str(steps)]
    if resume:
        cmd.append("--resume")
    if pause:
        cmd += ["--pause", pause, "--nth", str(nth), "--marker", str(marker)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MMADAPT_QUIET="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    start = time.monotonic()
    while proc.poll() is None and time.monotonic() < deadline:
        if (pause and marker.exists()) or (kill_after is not None and time.monotonic() - start > kill_after):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return "killed"
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        pytest.fail(f"worker did not reach {pause!r} in 300 s")
    out, err = proc.communicate()
    assert proc.returncode == 0, f"worker failed (exit {proc.returncode}):\n{err[-3000:]}"
    return "finished"


def check_latest_loads(run_dir: Path, adapter_keys: set[str]) -> int:
    """The latest checkpoint is whole: adapter, trainer state, DeepSpeed state (weights only) all load."""
    latest = ckpt.latest_checkpoint(run_dir)
    assert latest is not None, f"no complete checkpoint under {run_dir}"
    assert set(load_file(str(latest / "adapter_model.safetensors"))) == adapter_keys
    json.loads((latest / "adapter_config.json").read_text())
    state = json.loads((latest / "trainer_state.json").read_text())
    load_file(str(latest / "rng_state.safetensors"))
    engine = ckpt.weights_only_checkpoint_engine(None)
    for f in (latest / "deepspeed").rglob("*.pt"):
        engine.load(str(f), map_location="cpu")
    return int(state["step"])


@pytest.mark.slow
def test_kill_9_at_any_moment_loses_nothing(scenes_root, tmp_path):
    steps = 8
    ref = tmp_path / "ref"
    assert run_worker(scenes_root, ref, resume=False, steps=steps) == "finished"
    adapter_keys = set(adapter_at(ref, steps))

    run = tmp_path / "killed"
    moments = [("forward", 3), ("adapter", 2), ("deepspeed", 1), ("state", 1), ("rename", 2), ("prune", 1)]
    last_step = 0
    for i, (point, nth) in enumerate(moments):
        how = run_worker(scenes_root, run, resume=i > 0, pause=point, nth=nth, steps=steps)
        assert how == "killed", point
        step = check_latest_loads(run, adapter_keys)
        assert step >= last_step, f"after a kill at {point!r} the latest checkpoint went back ({step} < {last_step})"
        last_step = step
    rng = random.Random(7)
    for _ in range(2):  # and at moments nobody chose
        if run_worker(scenes_root, run, resume=True, kill_after=rng.uniform(6, 14), steps=steps) == "finished":
            break
        last_step = max(last_step, check_latest_loads(run, adapter_keys))
    run_worker(scenes_root, run, resume=True, steps=steps)

    log_ref, log_run = read_log(ref), read_log(run)
    assert [r["step"] for r in log_run] == list(range(1, steps + 1)), "log.jsonl: every step once, in order"
    torch.testing.assert_close([r["loss"] for r in log_run], [r["loss"] for r in log_ref], rtol=0, atol=1e-6)
    assert_same_weights(adapter_at(run, steps), adapter_at(ref, steps), atol=1e-6)
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers == [], f"temporary checkpoints left behind: {leftovers}"
