"""Experiment tracking (``train.report_to``): what TensorBoard's event files and an offline Weights & Biases
run hold, read back, equals ``log.jsonl``; the per-task losses, gradient norm and throughput in that log are
the right numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from tiny import make_model, tiny_config

from mmadapt.api import train
from mmadapt.config import Config, TrainConfig
from mmadapt.errors import ConfigError
from mmadapt.training import tracking


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]


def expected_scalars(log: list[dict]) -> dict[str, dict[int, float]]:
    """{name: {step: value}} of every record of ``log``, under the trackers' names."""
    out: dict[str, dict[int, float]] = {}
    for record in log:
        for name, value in tracking.scalars(record).items():
            out.setdefault(name, {})[record["step"]] = value
    return out


def tensorboard_scalars(log_dir: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def wandb_records(run: Path):
    """The records (``wandb_internal_pb2.Record``) of an offline run's ``.wandb`` file. wandb ships no reader
    any more; the file is its documented datastore: a 7-byte header (``:W&B``, magic 0xBEE1, version), then
    32 KiB blocks of chunks, each with a 7-byte header (CRC-32, length, type: 1 full, 2 first, 3 middle, 4 last)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    (path,) = run.glob("*.wandb")
    data, block = path.read_bytes(), 32768
    ident, magic, _ = struct.unpack("<4sHB", data[:7])
    assert (ident, magic) == (b":W&B", 0xBEE1)
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (length, kind) == (0, 0):  # the rest of a block is padding
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def wandb_history(run: Path) -> list[dict]:
    return [{(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
            for r in wandb_records(run) if r.WhichOneof("record_type") == "history"]


def wandb_config(run: Path) -> dict:
    (run_record,) = [r.run for r in wandb_records(run) if r.WhichOneof("record_type") == "run"]
    return {i.key: json.loads(i.value_json) for i in run_record.config.update}


@pytest.fixture(scope="module")
def tracked_run(scenes_root, tmp_path_factory):
    """4 steps of the two-task (VQA + caption) tiny run, an evaluation at steps 2 and 4, both trackers."""
    out = tmp_path_factory.mktemp("tracked")
    config = tiny_config(scenes_root, out / "run", max_steps=4, batch_size=8, eval_every=2, eval_max_samples=4,
                         report_to=["tensorboard", "wandb"], clip_grad=0.0)
    result = train(config, model=make_model(config), quiet=True)
    return out / "run", result


def test_the_log_has_per_task_losses_grad_norm_and_throughput(tracked_run):
    run_dir, result = tracked_run
    log = read_log(run_dir)
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    for r in steps:
        assert set(r["losses"]) <= {"vqa", "caption"} and r["losses"], r
        assert min(r["losses"].values()) <= r["loss"] + 1e-6 and r["loss"] <= max(r["losses"].values()) + 1e-6
        assert r["grad_norm"] > 0 and math.isfinite(r["grad_norm"])
        assert r["samples_per_s"] > 0
    assert any(len(r["losses"]) == 2 for r in steps)  # micro-batches of both tasks
    assert [r["step"] for r in log if "eval" in r] == [2, 4]


def test_tensorboard_event_files_equal_the_log(tracked_run):
    run_dir, _ = tracked_run
    expected = expected_scalars(read_log(run_dir))
    got = tensorboard_scalars(run_dir / "tensorboard")
    assert set(got) == set(expected)
    assert {"train/loss", "train/loss/vqa", "train/loss/caption", "train/lr/default", "train/lr/prompt",
            "train/grad_norm", "train/samples_per_s", "train/skipped_samples", "train/nonfinite",
            "eval/vqa/overall"} <= set(got)
    for name, by_step in expected.items():
        assert got[name].keys() == by_step.keys(), name
        for step, value in by_step.items():  # event files store float32
            assert got[name][step] == pytest.approx(value, rel=1e-6, abs=1e-7), (name, step)


def test_the_offline_wandb_run_equals_the_log(tracked_run):
    run_dir, _ = tracked_run
    expected = expected_scalars(read_log(run_dir))
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    history = wandb_history(runs[0])
    got: dict[str, dict[int, float]] = {}
    for row in history:
        for name, value in row.items():
            if not name.startswith("_"):
                got.setdefault(name, {})[row["_step"]] = value
    assert set(got) == set(expected)
    for name, by_step in expected.items():
        assert got[name] == pytest.approx(by_step, rel=1e-12), name
    config = wandb_config(runs[0])
    assert config["train"]["max_steps"] == 4 and config["train"]["report_to"] == ["tensorboard", "wandb"]


def test_an_unknown_tracker_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"train\.report_to: unknown tracker 'mlflow'"):
        Config.from_dict({"model": {"lm": {"name": "x"}, "adapter": {"name": "epalm"}}, "tasks": {},
                          "train": {"report_to": ["mlflow"]}, "output_dir": "x"})
    assert TrainConfig().report_to == []


def test_scalars_of_a_skipped_step_and_of_an_evaluation():
    step = {"step": 7, "loss": float("nan"), "lr": {"default": 1e-3}, "losses": {"vqa": float("nan")},
            "skipped": ["a.jpg: file not found", "b.jpg: empty file (0 bytes)"], "nonfinite": ["loss"],
            "grad_norm": None, "samples_per_s": 12.5}
    got = tracking.scalars(step)
    assert got["train/skipped_samples"] == 2.0 and got["train/nonfinite"] == 1.0
    assert "train/grad_norm" not in got and got["train/samples_per_s"] == 12.5
    assert tracking.scalars({"step": 8, "eval": {"vqa/overall": 41.5}, "time": 3.0}) == {"eval/vqa/overall": 41.5}


def test_each_tasks_loss_is_the_loss_of_its_samples_alone(scenes_root, tmp_path):
    """A micro-batch of VQA and caption samples: ``loss_parts[task]`` equals the loss of a batch of that task's
    samples alone (the same reduction), and the parts do not change the loss the batch trains on."""
    from mmadapt.api import build_tasks, training_examples
    from mmadapt.data.examples import draw_target

    config = tiny_config(scenes_root, tmp_path / "run")
    model = make_model(config).eval()
    examples = training_examples(config, build_tasks(config))
    batch = [draw_target(ex, 0, 0, i) for i, ex in enumerate(examples[:4] + examples[-4:])]
    assert {ex.task for ex in batch} == {"vqa", "caption"}
    inputs, errors = model.collate_train(batch)
    assert not errors and inputs["task"] == [ex.task for ex in batch]
    with torch.no_grad():
        total = model(**inputs)
        parts = dict(model.loss_parts)
        for task in ("vqa", "caption"):
            alone, _ = model.collate_train([ex for ex in batch if ex.task == task])
            torch.testing.assert_close(parts[task], model(**alone), rtol=1e-6, atol=1e-6)
        untagged = model(**{k: v for k, v in inputs.items() if k != "task"})
    assert set(parts) == {"vqa", "caption"} and model.loss_parts == {}
    assert float(total) == float(untagged)


@pytest.mark.parametrize("zero_stage", [1, 2])
def test_the_gradient_norm_is_the_same_under_zero0_and_zero_1_2(scenes_root, tmp_path, zero_stage):
    """ZeRO-0's norm is computed by the trainer, ZeRO 1–2's by DeepSpeed's optimizer: the same number."""
    norms = {}
    for stage in (0, zero_stage):
        config = tiny_config(scenes_root, tmp_path / f"z{stage}", max_steps=2, zero_stage=stage)
        train(config, model=make_model(config), quiet=True)
        norms[stage] = [r["grad_norm"] for r in read_log(tmp_path / f"z{stage}")]
    assert all(n > 0 for n in norms[0])
    assert norms[zero_stage] == pytest.approx(norms[0], rel=1e-5)


def test_a_missing_tracker_package_is_named_before_training(scenes_root, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    config = tiny_config(scenes_root, tmp_path / "run", max_steps=1, report_to=["tensorboard"])
    with pytest.raises(ConfigError, match=r"train\.report_to: tensorboard needs the tensorboard package .*mmadapt\[track\]"):
        train(config, model=make_model(config), quiet=True)
    assert not (tmp_path / "run" / "log.jsonl").exists()


def test_every_run_directory_gets_its_curves(tracked_run):
    """``curves.png`` at the end of a run: a real PNG, drawn from ``log.jsonl`` (the three panels' data)."""
    from PIL import Image

    from mmadapt.training import curves

    run_dir, _ = tracked_run
    png = run_dir / "curves.png"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 1000 and image.size[1] > 300
        pixels = image.convert("L")
        assert len(set(pixels.get_flattened_data())) > 20  # drawn, not blank
    log = curves.read_log(run_dir)
    series = curves.eval_series(log)
    assert set(series) >= {"vqa/overall", "caption/CIDEr"} and "vqa/n_errors" not in series
    assert series["vqa/overall"][0] == [2, 4]
    assert not list(run_dir.glob(".curves.png.tmp*"))


def test_curves_are_redrawn_while_training(scenes_root, tmp_path, monkeypatch):
    """With the redraw interval at 0 the picture is refreshed at every logged step, not only at the end."""
    from mmadapt.training import curves

    drawn = []
    real = curves.plot_run
    monkeypatch.setattr(curves, "MIN_INTERVAL_S", 0.0)
    monkeypatch.setattr(curves, "plot_run", lambda records, out, title: drawn.append(len(records)) or real(records, out, title))
    config = tiny_config(scenes_root, tmp_path / "run", max_steps=3, log_every=1)
    train(config, model=make_model(config), quiet=True)
    assert drawn == [1, 2, 3, 3]  # after each logged step, and once more at the end
