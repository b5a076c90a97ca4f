"""Recipes, overrides and the command line: bad input fails early with one line naming what is wrong."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import mmadapt
from mmadapt.adapters.any2point import Any2PointConfig
from mmadapt.adapters.epalm import EPALMConfig
from mmadapt.adapters.llava import LLaVAProjectorConfig
from mmadapt.adapters.solo import SOLOConfig
from mmadapt.adapters.token_rolling import TokenRollingConfig
from mmadapt.cli import main
from mmadapt.config import Config, apply_overrides
from mmadapt.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "adapters").rglob("*.yaml"))


def write_recipe(tmp_path, raw) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


BASE = {"model": {"adapter": {"name": "epalm"}}, "tasks": {"vqa": {}}}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_recipes_validate(recipe):
    cfg = Config.from_yaml(recipe)
    if cfg.model.assembly == "perceptual_lm":
        assert isinstance(cfg.model.adapter, (EPALMConfig, SOLOConfig, LLaVAProjectorConfig))
    elif cfg.model.assembly == "dense_multitask":  # Polyhistor: a dense adapter and the tasks with their kinds
        assert cfg.model.adapter.name in {"polyhistor", "polyhistor_lite", "bottleneck", "lora"}
        assert cfg.model.encoder.kind == "hf_swin"
        assert {t.kind for t in cfg.model.dense.tasks.values()} == {"segmentation", "saliency", "normals"}
    elif cfg.model.assembly == "all_in_one":  # frames + text per frame; token rolling or nothing
        assert cfg.model.adapter is None or isinstance(cfg.model.adapter, TokenRollingConfig)
        assert cfg.model.encoder.kind in ("hf_vit", "hf_clip_vision") and cfg.model.video_text is not None
    else:  # adapted_encoder: a registered tokenizer's typed config (YAML files under tokenizers/ inlined)
        assert cfg.model.tokenizer.name in {"image", "video", "audio", "point_cloud", "point_pn", "tabular", "graph"}
        assert cfg.model.encoder is not None
        assert cfg.model.adapter is None or isinstance(cfg.model.adapter, Any2PointConfig)
    assert cfg.tasks


def test_overrides_are_typed_and_nested(tmp_path):
    cfg = Config.from_yaml(write_recipe(tmp_path, BASE),
                           ["train.max_steps=200", "train.lr=3e-4", "model.adapter.shared_connector=true",
                            "tasks.vqa.prompt=Q: {question} A:", "model.adapter.start=null"])
    assert cfg.train.max_steps == 200 and cfg.train.lr == pytest.approx(3e-4)
    assert cfg.model.adapter.shared_connector is True
    assert cfg.tasks["vqa"].prompt == "Q: {question} A:"
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}


@pytest.mark.parametrize("override, message", [
    ("train.max_step=3", "train.max_step: unknown key (did you mean 'max_steps'?)"),
    ("train.max_steps=many", "train.max_steps: expected an integer, got 'many'"),
    ("train.zero_stage=4", "train.zero_stage: expected one of [0, 1, 2, 3], got 4"),
    ("model.adapter.n_injected=0", "model.adapter.n_injected: expected >= 1, got 0"),
    ("model.adapter.rank=8", "model.adapter.rank: unknown key"),
    ("model.adapter.name=nope", "model.adapter.name: no adapter named 'nope'"),
    ("tasks.vqa.train.format=parquet", "tasks.vqa.train.format: expected one of"),
    ("train.num_workers=-1", "train.num_workers: expected 0 (load in the main process) or more workers, got -1"),
    ("eval.prefetch_factor=0", "eval.prefetch_factor: expected a positive integer, got 0"),
])
def test_bad_keys_name_the_key(tmp_path, override, message):
    recipe = write_recipe(tmp_path, BASE)
    with pytest.raises(ConfigError) as err:
        Config.from_yaml(recipe, [override])
    assert str(err.value).startswith(f"{recipe}: ")
    assert message in str(err.value)


def test_cli_bad_key_fails_before_any_weights_load(tmp_path, monkeypatch, capsys):
    def no_loading(*a, **k):
        raise AssertionError("weights were loaded before the config was validated")

    monkeypatch.setattr(mmadapt.api, "build_model", no_loading)
    recipe = write_recipe(tmp_path, BASE)
    assert main(["train", str(recipe), "train.max_step=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train.max_step: unknown key" in err


def vqa_v2_split(scenes_root, split) -> dict:
    """The synthetic split as a plain `vqa_v2` dataset config (files, image root, template)."""
    from mmadapt.data.synthetic.scenes import read_manifest

    entry = read_manifest(scenes_root)["splits"][split]
    return {"format": "vqa_v2", "questions": str(scenes_root / entry["files"]["questions"]),
            "annotations": str(scenes_root / entry["files"]["annotations"]),
            "image_root": str(scenes_root / entry["image_root"]), "image_template": entry["image_template"]}


def test_cli_missing_image_is_one_line_before_weights(config, scenes_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mmadapt.api, "build_model", lambda *a, **k: pytest.fail("model built before data check"))
    raw = config.to_dict()
    raw["tasks"] = {"vqa": {"train": vqa_v2_split(scenes_root, "train")}}
    victim = next((scenes_root / "images" / "train").iterdir())
    backup = victim.read_bytes()
    victim.unlink()
    try:
        recipe = write_recipe(tmp_path, raw)
        assert main(["train", str(recipe)]) == 2
    finally:
        victim.write_bytes(backup)
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and victim.name in err and "missing" in err


def test_eval_records_a_corrupt_image_and_carries_on(model, config, scenes_root, tmp_path):
    config.tasks["vqa"].eval = Config.from_dict({"tasks": {"vqa": {"eval": vqa_v2_split(scenes_root, "val")}}}).tasks["vqa"].eval
    victim = sorted((scenes_root / "images" / "val").iterdir())[0]
    backup = victim.read_bytes()
    victim.write_bytes(backup[: len(backup) // 3])  # truncated PNG
    try:
        scores = mmadapt.evaluate(model, config, out_dir=tmp_path / "eval")
    finally:
        victim.write_bytes(backup)
    errors = json.loads((tmp_path / "eval" / "vqa_errors.json").read_text())
    assert {e["image"] for e in errors} == {str(victim)} and len(errors) == 5  # its five questions
    assert "truncated" in errors[0]["error"] or "decode" in errors[0]["error"]
    results = json.loads((tmp_path / "eval" / "vqa_results.json").read_text())
    assert len(results) == 30 - 5  # the other images were answered
    assert len(scores["vqa"]["perQuestion"]) == 30  # unanswered questions count (as 0)
    assert all(scores["vqa"]["perQuestion"][e["question_id"]] == 0 for e in errors)
    assert (tmp_path / "eval" / "caption.json").is_file()


def test_info_json_lists_the_registry():
    out = subprocess.run([sys.executable, "-m", "mmadapt.cli", "info", "--json"], capture_output=True, text=True,
                         check=True).stdout
    info = json.loads(out)
    assert set(info) == {"tokenizers", "backbones", "adapters", "heads", "tasks", "datasets"}
    assert {"vqa_v2", "coco_captions", "llava", "manifest", "synthetic_scenes", "pascal_context"} <= set(info["datasets"])
    assert len(info["datasets"]) == 27
    assert {"image", "text"} <= set(info["tokenizers"])
    assert {"hf_causal_lm", "hf_vit", "hf_clip_vision", "open_clip"} <= set(info["backbones"])
    assert "epalm" in info["adapters"] and {"vqa", "caption"} <= set(info["tasks"])


def test_score_vqa_cli_prints_the_official_object(scenes_root, capsys):
    split = vqa_v2_split(scenes_root, "val")
    q, a = split["questions"], split["annotations"]
    anns = json.loads(Path(a).read_text())["annotations"]
    results = scenes_root / "results.json"
    # right on every question except the first, which gets an answer no human gave
    results.write_text(json.dumps([{"question_id": x["question_id"],
                                    "answer": "zebra" if i == 0 else x["multiple_choice_answer"]}
                                   for i, x in enumerate(anns)]))
    assert main(["score", "vqa", "--questions", str(q), "--annotations", str(a), "--results", str(results)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"overall", "perAnswerType", "perQuestionType", "perQuestion"}
    assert out["perQuestion"][str(anns[0]["question_id"])] == 0
    assert out["overall"] == round(100 * (len(anns) - 1) / len(anns), 2)
