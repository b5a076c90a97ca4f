"""Background data loading (``train.num_workers`` / ``eval.num_workers``): DataLoader workers read, decode and
preprocess the batches, and nothing a run computes depends on how many there are — the same losses, the same
skipped samples, the same resume, the same eval scores and errors — while the workers run with their own
thread count and leave the caller's RNG alone."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from tiny import make_model, tiny_config

import mmadapt
from mmadapt.data.loader import Background, in_background
from mmadapt.errors import ConfigError
from mmadapt.training import checkpoint as ckpt


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """24 + 6 tiny scenes with one truncated training image and one truncated eval image."""
    from mmadapt.data.synthetic.scenes import write_scenes_dataset

    root = tmp_path_factory.mktemp("bg_scenes")
    write_scenes_dataset(root, "train", 24, seed=0)  # the settings tiny_config reads (else they are rewritten)
    write_scenes_dataset(root, "val", 6, seed=0)
    for split in ("train", "val"):
        victim = sorted((root / "images" / split).iterdir())[1]
        victim.write_bytes(victim.read_bytes()[:40])
    return root


def _run(scenes, out, workers: int, **train):
    cfg = tiny_config(scenes, out, num_workers=workers, **train)
    cfg.tasks["caption"].eval = None  # caption scoring starts Java: the demo tests cover it
    model = make_model(cfg)
    return cfg, mmadapt.train(cfg, model=model, quiet=True)


def test_two_workers_give_the_losses_and_skipped_samples_of_none(scenes, tmp_path):
    _, here = _run(scenes, tmp_path / "w0", 0)
    _, background = _run(scenes, tmp_path / "w2", 2)
    losses = [r["loss"] for r in here.records]
    assert len(losses) == 4 and losses == [r["loss"] for r in background.records]
    skipped = [r.get("skipped") for r in here.records]
    assert any(skipped) and skipped == [r.get("skipped") for r in background.records]  # the bad image, recorded
    for name, value in here.model.adapter.state_dict().items():
        assert torch.equal(value, background.model.adapter.state_dict()[name]), name


def test_a_resume_with_workers_continues_the_same_curve(scenes, tmp_path):
    """Checkpoints at steps 2 and 4; the one at 4 removed (as if the run died after step 2's); resuming with
    two workers re-reads exactly steps 3 and 4."""
    cfg, whole = _run(scenes, tmp_path / "run", 2, save_every=2)
    shutil.rmtree(ckpt.checkpoint_dir(tmp_path / "run", 4))
    resumed = mmadapt.train(cfg, model=make_model(cfg), resume=True, quiet=True)
    assert [r["step"] for r in resumed.records] == [3, 4]
    assert [r["loss"] for r in resumed.records] == [r["loss"] for r in whole.records[2:]]


def test_eval_with_workers_gives_the_same_scores_and_errors(scenes, tmp_path):
    cfg = tiny_config(scenes, tmp_path / "run")
    cfg.tasks["caption"].eval = None
    model = make_model(cfg)
    scores = {}
    for workers in (0, 2):
        cfg.eval.num_workers = workers
        scores[workers] = mmadapt.evaluate(model, cfg, out_dir=tmp_path / f"eval{workers}", quiet=True)
    assert scores[0] == scores[2] and scores[0]["vqa"]["n_errors"] == 5  # the truncated image's five questions
    errors = [json.loads((tmp_path / f"eval{w}" / "vqa_errors.json").read_text()) for w in (0, 2)]
    assert errors[0] == errors[1] and len(errors[0]) == 5


def _draw(job):
    return job, torch.rand(3), torch.get_num_threads()


@pytest.mark.parametrize("workers, threads", [(0, None), (2, 1), (1, 2)])
def test_each_job_draws_from_its_own_seeded_rng_and_workers_use_their_thread_count(workers, threads):
    """Random sampling inside a job (frames, points) gives the same numbers in a worker as here; the caller's
    RNG is untouched; results come in job order; a worker runs ``worker_threads`` torch threads."""
    state = torch.get_rng_state()
    how = Background(num_workers=workers, worker_threads=threads or 1)
    out = list(in_background(list(range(5)), _draw, how, seed=3))
    assert torch.equal(torch.get_rng_state(), state)
    assert [job for job, _, _ in out] == list(range(5))
    reference = list(in_background(list(range(5)), _draw, Background(), seed=3))
    assert all(torch.equal(a, b) for (_, a, _), (_, b, _) in zip(out, reference))
    assert not torch.equal(out[0][1], out[1][1])  # each job its own stream
    if workers:
        assert {n for _, _, n in out} == {threads}


def test_workers_and_the_feature_cache_are_refused_together(scenes, tmp_path):
    with pytest.raises(ConfigError, match="train.num_workers: with train.feature_cache the features come from the "
                                          "cache"):
        tiny_config(scenes, tmp_path / "run", num_workers=2, feature_cache=str(tmp_path / "cache"))
