"""Evaluation during training (``train.eval_every``): the live model is scored every N steps on the first
``train.eval_max_samples`` questions, the scores land in ``log.jsonl`` and ``eval/step-N/``, the best adapter
by ``train.best_metric`` is kept in ``best/`` — and none of it changes the training itself."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from tiny import make_model, tiny_config

import mmadapt
from mmadapt import api
from mmadapt.errors import ConfigError
from mmadapt.tasks.base import flat_scores
from mmadapt.training import checkpoint as ckpt


def _config(scenes_root, out, **train):
    cfg = tiny_config(scenes_root, out, **train)
    cfg.tasks["caption"].eval = None  # caption scoring starts Java: the demo tests cover it
    return cfg


def test_scores_every_n_steps_on_the_live_model_and_keeps_the_best(scenes_root, tmp_path, monkeypatch):
    cfg = _config(scenes_root, tmp_path / "run", eval_every=2, eval_max_samples=12, best_metric="vqa/overall",
                  save_every=2)
    model = make_model(cfg)
    seen = []
    real = api.evaluate
    monkeypatch.setattr(api, "evaluate", lambda m, c, **kw: seen.append(m) or real(m, c, **kw))
    result = mmadapt.train(cfg, model=model, quiet=True)
    assert all(m is result.model for m in seen) and len(seen) == 2  # the live model itself, at steps 2 and 4

    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    evals = [r for r in log if "eval" in r]
    assert [r["step"] for r in evals] == [2, 4] and evals == result.evaluations
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]
    for record in evals:
        on_disk = json.loads((tmp_path / "run" / "eval" / f"step-{record['step']}" / "vqa.json").read_text())
        assert record["eval"]["vqa/overall"] == on_disk["overall"] and len(on_disk["perQuestion"]) == 12
    # the step-4 evaluation is what evaluating the trained model gives
    again = flat_scores(real(result.model, cfg.__class__.from_dict({**cfg.to_dict(), "eval": {"batch_size": 4,
                                                                                              "max_samples": 12}}),
                             out_dir=tmp_path / "again", quiet=True))
    assert again == evals[-1]["eval"]

    best = json.loads((tmp_path / "run" / "best" / "best.json").read_text())
    values = {r["step"]: r["eval"]["vqa/overall"] for r in evals}
    assert best == {"step": max(values, key=lambda s: (values[s], -s)), "metric": "vqa/overall",
                    "value": max(values.values())}
    assert evals[-1]["best"] == best
    kept = load_file(str(tmp_path / "run" / "best" / "adapter_model.safetensors"))
    at_step = load_file(str(ckpt.checkpoint_dir(tmp_path / "run", best["step"]) / "adapter_model.safetensors"))
    assert kept.keys() == at_step.keys() and all(torch.equal(kept[k], at_step[k]) for k in kept)


def test_evaluating_during_training_changes_nothing_in_the_training(scenes_root, tmp_path):
    plain = mmadapt.train(cfg := _config(scenes_root, tmp_path / "plain"), model=make_model(cfg), quiet=True)
    evaluated = mmadapt.train(cfg := _config(scenes_root, tmp_path / "eval", eval_every=1, eval_max_samples=5),
                              model=make_model(cfg), quiet=True)
    assert [r["loss"] for r in plain.records] == [r["loss"] for r in evaluated.records]
    assert len(evaluated.evaluations) == 4
    for name, value in plain.model.adapter.state_dict().items():
        assert torch.equal(value, evaluated.model.adapter.state_dict()[name]), name


def test_the_best_metric_must_be_a_score_and_needs_eval_every(scenes_root, tmp_path):
    with pytest.raises(ConfigError, match="train.best_metric: 'vqa/overall' is read from the evaluations during "
                                          "training; set train.eval_every too"):
        _config(scenes_root, tmp_path / "a", best_metric="vqa/overall")
    with pytest.raises(ConfigError, match="train.eval_every: expected 0"):
        _config(scenes_root, tmp_path / "b", eval_every=-1)
    cfg = _config(scenes_root, tmp_path / "c", eval_every=2, eval_max_samples=4, best_metric="vqa/accuracy")
    with pytest.raises(ConfigError, match=r"train.best_metric: 'vqa/accuracy' is not among the scores of the "
                                          r"evaluation at step 2: .*vqa/overall"):
        mmadapt.train(cfg, model=make_model(cfg), quiet=True)


def test_flat_scores_keep_the_numbers_worth_a_log_line():
    scores = {"vqa": {"overall": 50.0, "perAnswerType": {"yes/no": 60.0, "other": 40.0},
                      "perQuestion": {str(i): 100.0 for i in range(4)}, "n_errors": 0, "flag": True,
                      "perQuestionType": {f"t{i}": 1.0 for i in range(40)}},
              "caption": {"CIDEr": 1.5, "SPICE": {"All": {"f": 0.2}}}}
    assert flat_scores(scores) == {"vqa/overall": 50.0, "vqa/perAnswerType/yes/no": 60.0,
                                   "vqa/perAnswerType/other": 40.0, "vqa/n_errors": 0, "caption/CIDEr": 1.5,
                                   "caption/SPICE/All/f": 0.2}
