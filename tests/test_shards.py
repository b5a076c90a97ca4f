"""WebDataset shards (format ``webdataset``, ``mmadapt shard``): the same samples, bytes and losses as loose files;
a corrupt member is a recorded bad sample."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from tiny import make_model, tiny_config

import mmadapt
from mmadapt.cli import main as cli_main
from mmadapt.config import Config
from mmadapt.data.split import ReadContext, make_dataset, read_split
from mmadapt.errors import ConfigError
from mmadapt.io.image import load_image
from mmadapt.io.shard_member import ShardMember


def _shard_config(config: Config, shards: Path) -> Config:
    tasks = {k: dataclasses.replace(t, train=make_dataset("webdataset", shards=str(shards / k)))
             for k, t in config.tasks.items()}
    return dataclasses.replace(config, tasks=tasks)


def _fields(sample) -> dict:
    return {f.name: getattr(sample, f.name) for f in dataclasses.fields(sample)}


def _media(sample):
    return [v for v in _fields(sample).values() if isinstance(v, (Path, ShardMember))]


@pytest.mark.parametrize("kind", ["vqa", "caption"])
def test_scenes_round_trip_field_by_field(scenes_root, tmp_path, kind):
    cfg = make_dataset("synthetic_scenes", root=str(scenes_root), split="train", n_images=24)
    ctx = ReadContext(kind, f"tasks.{kind}.train")
    loose = read_split(cfg, ctx)
    from mmadapt.data.shards import write_shards

    report = write_shards(cfg, ctx, tmp_path / kind, max_per_shard=7, report=print)
    assert report.samples == len(loose) and len(report.shards) == -(-len(loose) // 7)
    sharded = read_split(make_dataset("webdataset", shards=str(tmp_path / kind)), ctx)
    assert sharded.kind == loose.kind and sharded.label_space == loose.label_space
    assert len(sharded) == len(loose)
    for a, b in zip(loose.samples, sharded.samples):
        fa, fb = _fields(a), _fields(b)
        assert {k: v for k, v in fa.items() if not isinstance(v, Path)} == \
               {k: v for k, v in fb.items() if not isinstance(v, ShardMember)}
        for path, member in zip(_media(a), _media(b)):
            assert isinstance(member, ShardMember) and member.read() == Path(path).read_bytes()
            assert load_image(path).tobytes() == load_image(member).tobytes()
    limited = read_split(make_dataset("webdataset", shards=str(tmp_path / kind), limit=5), ctx)
    assert limited.samples == sharded.samples[:5] and limited.limited


def test_classification_audio_and_points_round_trip(tmp_path):
    from mmadapt.data.shards import write_shards
    from mmadapt.io.audio import load_audio
    from mmadapt.io.point_cloud import load_point_cloud

    for fmt, loader in (("synthetic_images", lambda s: np.asarray(load_image(s))),
                        ("synthetic_audio", lambda s: load_audio(s).numpy()),
                        ("synthetic_points", lambda s: load_point_cloud(s, n_points=None, normalize=False).numpy())):
        cfg = make_dataset(fmt, root=str(tmp_path / fmt), split="train", n_samples=6)
        ctx = ReadContext("labelled", f"tasks.{fmt}.train")
        loose = read_split(cfg, ctx)
        write_shards(cfg, ctx, tmp_path / f"{fmt}-shards", report=print)
        sharded = read_split(make_dataset("webdataset", shards=str(tmp_path / f"{fmt}-shards")), ctx)
        assert sharded.label_space == loose.label_space and len(sharded) == len(loose) == 6
        for (path, label), (member, label2) in zip(loose.samples, sharded.samples):
            assert label == label2 and isinstance(member, ShardMember)
            assert np.array_equal(loader(path), loader(member)), fmt


def _losses(config, **kw):
    result = mmadapt.train(config, model=make_model(config), quiet=True, **kw)
    return [r["loss"] for r in result.records], result


def _shard_recipe(config, out):
    reports = mmadapt.api.shard(config, out, max_per_shard=10, report=print)
    assert set(reports) == {"vqa", "caption"}
    return _shard_config(config, out)


def test_training_on_shards_gives_the_same_losses_with_and_without_workers(scenes_root, tmp_path):
    loose = tiny_config(scenes_root, tmp_path / "loose", max_steps=3)
    sharded = _shard_recipe(loose, tmp_path / "shards")
    sharded = dataclasses.replace(sharded, output_dir=str(tmp_path / "sharded"))
    want, _ = _losses(loose)
    got, _ = _losses(sharded)
    assert got == want
    workers = dataclasses.replace(sharded, output_dir=str(tmp_path / "workers"),
                                  train=dataclasses.replace(sharded.train, num_workers=2))
    assert _losses(workers)[0] == want


def test_corrupt_member_is_a_recorded_bad_sample(scenes_root, tmp_path):
    loose = tiny_config(scenes_root, tmp_path / "run", max_steps=2)
    out = tmp_path / "shards"
    sharded = _shard_recipe(loose, out)
    member = read_split(make_dataset("webdataset", shards=str(out / "vqa")),
                        ReadContext("vqa", "tasks.vqa.train")).samples[0].image_path
    with open(member.shard, "r+b") as f:  # garbage in place, same length: the tar stays readable
        f.seek(member.offset)
        f.write(b"\x00garbage" * (member.size // 8) + b"\x00" * (member.size % 8))
    vqa_eval = dataclasses.replace(sharded.tasks["vqa"], eval=make_dataset("webdataset", shards=str(out / "vqa")))
    cfg = dataclasses.replace(sharded, tasks={"vqa": vqa_eval}, eval=dataclasses.replace(sharded.eval, max_samples=8))
    _, result = _losses(cfg, evaluate_after=True)
    log = (Path(cfg.output_dir) / "log.jsonl").read_text()
    assert str(member) in log  # recorded by the trainer as a skipped sample
    errors = json.loads((Path(cfg.output_dir) / "eval" / "vqa_errors.json").read_text())
    assert any(str(member) in json.dumps(e) for e in errors)


def test_cli_shard_and_a_bad_shards_directory(scenes_root, tmp_path, capsys):
    import yaml

    recipe = tmp_path / "r.yaml"
    raw = {"model": {"lm": {"name": "test:tiny-opt"}, "vision": {"name": "test:tiny-vit", "kind": "hf_vit"},
                     "adapter": {"name": "epalm"}},
           "tasks": {"vqa": {"train": {"format": "synthetic_scenes", "root": str(scenes_root), "split": "train",
                                       "n_images": 24}}}, "output_dir": str(tmp_path / "run")}
    recipe.write_text(yaml.safe_dump(raw))
    assert cli_main(["shard", str(recipe), "--split", "train", "--out", str(tmp_path / "s"),
                     "--max-samples-per-shard", "50"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("vqa: ") and "shards" in line
    meta = json.loads((tmp_path / "s" / "vqa" / "split.json").read_text())
    assert meta["kind"] == "vqa" and meta["sample_class"] == "VQASample" and sum(
        s["samples"] for s in meta["shards"]) == meta["samples"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"^tasks\.vqa\.train\.shards: .*no split\.json"):
        read_split(make_dataset("webdataset", shards=str(tmp_path / "empty")), ReadContext("vqa", "tasks.vqa.train"))
