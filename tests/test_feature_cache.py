"""The frozen-feature cache: same losses as without it, skips the encoder, and any key change misses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from tiny import make_model, tiny_config, tiny_vit

from mmadapt.api import build_tasks, train, training_examples
from mmadapt.cli import main as cli_main
from mmadapt.errors import ConfigError
from mmadapt.training import feature_cache as fc


def cached_config(scenes_root, tmp_path, name="run", **train_kw):
    train_kw.setdefault("max_steps", 4)
    return tiny_config(scenes_root, tmp_path / name, feature_cache=str(tmp_path / "cache"), **train_kw)


def build_cache(model, cfg):
    return fc.cache_training_features(model, cfg, training_examples(cfg, build_tasks(cfg)), batch_size=5, quiet=True)


def test_cached_training_gives_the_same_losses_without_running_the_encoder(scenes_root, tmp_path, monkeypatch):
    plain_cfg = tiny_config(scenes_root, tmp_path / "plain", max_steps=4)
    plain = train(plain_cfg, model=make_model(plain_cfg), quiet=True)

    cfg = cached_config(scenes_root, tmp_path)
    model = make_model(cfg)
    report = build_cache(model, cfg)
    assert report.files == report.unique == report.computed == 24 and report.failed == []
    assert report.store.row_shape == (model.vision.num_layers, model.vision.hidden_size)
    # the rows are the encoder's features of each file
    path = str(sorted((scenes_root / "images" / "train").iterdir())[0])
    [row] = report.store.rows_for([path])
    pv = model.vision.preprocess([model.vision.load(path)])
    torch.testing.assert_close(report.store.read([row])[0], model.adapter.encoder_features(model.vision, pv)[0],
                               rtol=0, atol=1e-6)

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder ran although every feature was cached")

    monkeypatch.setattr(type(model.vision), "layer_cls", no_encoder)
    monkeypatch.setattr(type(model.vision), "load", no_encoder)  # not even the image is decoded
    cached = train(cfg, model=model, quiet=True)
    torch.testing.assert_close([r["loss"] for r in cached.records], [r["loss"] for r in plain.records],
                               rtol=0, atol=1e-5)
    assert model.feature_cache_misses == 0


def test_any_key_change_misses(scenes_root, tmp_path):
    cfg = cached_config(scenes_root, tmp_path)
    model = make_model(cfg)
    store = build_cache(model, cfg).store
    material = fc.key_material(model.vision, "layer_cls")
    assert fc.open_store(tmp_path / "cache", material).key == store.key

    other_weights = tiny_vit(seed=1)  # same architecture and preprocessing, other weights
    assert fc.open_store(tmp_path / "cache", fc.key_material(other_weights, "layer_cls")) is None
    resized = tiny_vit()
    resized.processor.image_mean = [0.4] * 3  # other preprocessing
    assert fc.open_store(tmp_path / "cache", fc.key_material(resized, "layer_cls")) is None
    assert fc.open_store(tmp_path / "cache", fc.key_material(model.vision, "patch_tokens")) is None

    # file content is the key of a row: an edited file misses, a renamed copy hits
    files = sorted((scenes_root / "images" / "train").iterdir())
    copy = tmp_path / "copy.png"
    shutil.copy(files[0], copy)
    edited = tmp_path / "edited.png"
    img = Image.open(files[0]).convert("RGB")
    img.putpixel((0, 0), (255 - img.getpixel((0, 0))[0], 0, 0))
    img.save(edited)
    hit, miss = store.rows_for([str(copy), str(edited)])
    assert hit == store.rows_for([str(files[0])])[0] and miss is None


def test_a_miss_is_computed_in_training_and_the_losses_stay_the_same(scenes_root, tmp_path):
    plain_cfg = tiny_config(scenes_root, tmp_path / "plain", max_steps=3)
    plain = train(plain_cfg, model=make_model(plain_cfg), quiet=True)

    cfg = cached_config(scenes_root, tmp_path, max_steps=3)
    model = make_model(cfg)
    store = build_cache(model, cfg).store
    index = json.loads((store.directory / "index.json").read_text())
    dropped = sorted(index["rows"])[:5]
    for d in dropped:  # as if these files had changed since the cache was built
        del index["rows"][d]
    (store.directory / "index.json").write_text(json.dumps(index))
    run = train(cfg, model=model, quiet=True)
    assert model.feature_cache_misses > 0
    torch.testing.assert_close([r["loss"] for r in run.records], [r["loss"] for r in plain.records],
                               rtol=0, atol=1e-5)
    # and building again only computes what is missing
    report = build_cache(model, cfg)
    assert (report.reused, report.computed) == (19, 5)


def test_a_bad_file_is_reported_and_the_rest_cached(scenes_root, tmp_path):
    root = tmp_path / "scenes"
    shutil.copytree(scenes_root, root)
    victim = sorted((root / "images" / "train").iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:40])  # truncated
    cfg = cached_config(root, tmp_path)
    report = build_cache(make_model(cfg), cfg)
    assert len(report.failed) == 1 and victim.name in report.failed[0]
    assert report.computed == 23 and len(report.store) == 23
    assert not list((tmp_path / "cache").glob(".tmp-*"))


def test_cli_builds_the_store_and_refuses_without_a_directory(scenes_root, tmp_path, monkeypatch, capsys):
    import mmadapt

    cfg = cached_config(scenes_root, tmp_path)
    monkeypatch.setattr(mmadapt, "build_model", lambda config, tasks=None: make_model(config))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(cfg.to_yaml())
    assert cli_main(["cache-features", str(recipe), "--quiet", "--batch-size", "7"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["computed"] == 24 and out["failed"] == 0 and Path(out["store"]).parent == tmp_path / "cache"
    assert cli_main(["cache-features", str(recipe), "--quiet"]) == 0  # up to date: nothing computed
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["computed"] == 0

    assert cli_main(["cache-features", str(recipe), "train.feature_cache=null", "--quiet"]) == 2
    assert "train.feature_cache: not set" in capsys.readouterr().err


def test_adapters_without_cacheable_features_are_refused(scenes_root, tmp_path):
    cfg = cached_config(scenes_root, tmp_path)
    model = make_model(cfg)
    model.adapter.feature_kind = None
    with pytest.raises(ConfigError, match="train.feature_cache"):
        fc.attach_feature_cache(model, cfg)
