"""Hugging Face ``datasets`` as a dataset source (format ``hf_dataset``): Parquet files, a ``save_to_disk``
directory and a stream give the samples, bytes and training losses of the same data as loose files; an empty
media cell is a recorded bad sample; ``mmadapt shard`` turns a stream into WebDataset shards."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tiny import make_model, tiny_config

import mmadapt
from mmadapt.data.formats.hf_dataset import DatasetCell, InMemoryMedia
from mmadapt.data.split import ReadContext, make_dataset, read_split
from mmadapt.errors import ConfigError
from mmadapt.io.image import load_image

datasets = pytest.importorskip("datasets")

VQA_FIELDS = ("question_id", "image_id", "question", "answers", "multiple_choice_answer", "question_type",
              "answer_type")


def _scenes(scenes_root, kind):
    cfg = make_dataset("synthetic_scenes", root=str(scenes_root), split="train", n_images=24)
    return read_split(cfg, ReadContext(kind, f"tasks.{kind}.train"))


def _image(path: Path) -> dict:
    return {"bytes": Path(path).read_bytes(), "path": Path(path).name}


@pytest.fixture(scope="module")
def hf_scenes(scenes_root, tmp_path_factory):
    """The scenes' VQA and caption training splits as Parquet files and as save_to_disk directories."""
    out = tmp_path_factory.mktemp("hf")
    vqa = _scenes(scenes_root, "vqa").samples
    rows = {f: [getattr(s, f) for s in vqa] for f in VQA_FIELDS}
    rows["image"] = [_image(s.image_path) for s in vqa]
    features = datasets.Features({
        "question_id": datasets.Value("int64"), "image_id": datasets.Value("int64"),
        "question": datasets.Value("string"), "answers": datasets.List(datasets.Value("string")),
        "multiple_choice_answer": datasets.Value("string"), "question_type": datasets.Value("string"),
        "answer_type": datasets.Value("string"), "image": datasets.Image()})
    ds = datasets.Dataset.from_dict(rows, features=features)
    (out / "vqa").mkdir()
    ds.select(range(0, 40)).to_parquet(str(out / "vqa" / "train-00000.parquet"))
    ds.select(range(40, len(ds))).to_parquet(str(out / "vqa" / "train-00001.parquet"))
    ds.save_to_disk(str(out / "vqa_disk"))
    cap = _scenes(scenes_root, "caption").samples
    cds = datasets.Dataset.from_dict(
        {"image_id": [s.image_id for s in cap], "captions": [s.captions for s in cap],
         "image": [_image(s.image_path) for s in cap]},
        features=datasets.Features({"image_id": datasets.Value("int64"),
                                    "captions": datasets.List(datasets.Value("string")), "image": datasets.Image()}))
    (out / "caption").mkdir()
    cds.to_parquet(str(out / "caption" / "train-00000.parquet"))
    return out


def _hf(root: Path, kind: str, **kw):
    return make_dataset("hf_dataset", data_files=str(root / kind / "train-*.parquet"), image_id_column="image_id",
                        **({"id_column": "question_id"} if kind == "vqa" else {}), **kw)


@pytest.mark.parametrize("how", ["parquet", "disk", "stream"])
def test_vqa_rows_become_the_loose_samples(scenes_root, hf_scenes, how):
    loose = _scenes(scenes_root, "vqa")
    cfg = {"parquet": _hf(hf_scenes, "vqa"), "stream": _hf(hf_scenes, "vqa", streaming=True),
           "disk": make_dataset("hf_dataset", path=str(hf_scenes / "vqa_disk"), id_column="question_id",
                                image_id_column="image_id")}[how]
    got = read_split(cfg, ReadContext("vqa", "tasks.vqa.train"))
    assert got.label_space == loose.label_space and len(got) == len(loose)
    for a, b in zip(loose.samples, got.samples):
        assert [getattr(a, f) for f in VQA_FIELDS] == [getattr(b, f) for f in VQA_FIELDS]
        assert isinstance(b.image_path, InMemoryMedia if how == "stream" else DatasetCell)
        assert b.image_path.read() == Path(a.image_path).read_bytes() and b.image_path.suffix == ".png"
    assert load_image(got.samples[3].image_path).tobytes() == load_image(loose.samples[3].image_path).tobytes()
    limited = read_split(dataclasses.replace(cfg, limit=5), ReadContext("vqa", "tasks.vqa.train"))
    assert len(limited) == 5 and limited.limited


def _hf_recipe(config, root: Path, out: Path, **kw):
    tasks = {k: dataclasses.replace(t, train=_hf(root, k, **kw)) for k, t in config.tasks.items()}
    return dataclasses.replace(config, tasks=tasks, output_dir=str(out))


def _losses(config, **kw):
    return [r["loss"] for r in mmadapt.train(config, model=make_model(config), quiet=True, **kw).records]


def test_training_on_a_dataset_gives_the_losses_of_loose_files(scenes_root, hf_scenes, tmp_path):
    loose = tiny_config(scenes_root, tmp_path / "loose", max_steps=3)
    want = _losses(loose)
    assert _losses(_hf_recipe(loose, hf_scenes, tmp_path / "mapped")) == want
    workers = _hf_recipe(loose, hf_scenes, tmp_path / "workers")
    workers = dataclasses.replace(workers, train=dataclasses.replace(workers.train, num_workers=2))
    assert _losses(workers) == want  # forked workers read the memory-mapped cells
    assert _losses(_hf_recipe(loose, hf_scenes, tmp_path / "stream", streaming=True)) == want


def test_a_stream_sharded_then_trained_on(scenes_root, hf_scenes, tmp_path):
    loose = tiny_config(scenes_root, tmp_path / "loose", max_steps=2)
    streamed = _hf_recipe(loose, hf_scenes, tmp_path / "stream", streaming=True)
    mmadapt.api.shard(streamed, tmp_path / "shards", report=print)
    tasks = {k: dataclasses.replace(t, train=make_dataset("webdataset", shards=str(tmp_path / "shards" / k)))
             for k, t in loose.tasks.items()}
    sharded = dataclasses.replace(loose, tasks=tasks, output_dir=str(tmp_path / "sharded"))
    assert _losses(sharded) == _losses(loose)


def test_an_empty_media_cell_is_a_recorded_bad_sample(scenes_root, tmp_path):
    vqa = _scenes(scenes_root, "vqa").samples[:8]
    rows = {"question": [s.question for s in vqa], "answers": [s.answers for s in vqa],
            "image": [_image(s.image_path) for s in vqa]}
    rows["image"][2] = {"bytes": b"", "path": "broken.png"}
    (tmp_path / "d").mkdir()
    datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / "d" / "train.parquet"))
    config = tiny_config(scenes_root, tmp_path / "run", max_steps=2, batch_size=4)
    vqa_task = dataclasses.replace(config.tasks["vqa"], train=make_dataset(
        "hf_dataset", data_files=str(tmp_path / "d" / "train.parquet")))
    config = dataclasses.replace(config, tasks={"vqa": vqa_task})
    assert len(_losses(config)) == 2
    assert "train.parquet[2].image (broken.png)" in (tmp_path / "run" / "log.jsonl").read_text()


def test_classification_labels_read_as_their_class_names(tmp_path):
    from PIL import Image
    import io

    def png(c):
        b = io.BytesIO()
        Image.new("RGB", (8, 8), c).save(b, "PNG")
        return {"bytes": b.getvalue(), "path": None}

    ds = datasets.Dataset.from_dict(
        {"img": [png((255, 0, 0)), png((0, 0, 255)), png((250, 5, 0))], "label": [1, 0, 1]},
        features=datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["blue", "red"])}))
    ds.save_to_disk(str(tmp_path / "disk"))
    split = read_split(make_dataset("hf_dataset", path=str(tmp_path / "disk"), image_column="img"),
                       ReadContext("labelled", "tasks.classification.train"))
    assert [label for _, label in split.samples] == ["red", "blue", "red"]
    assert split.label_space.classes == ["blue", "red"]
    assert load_image(split.samples[1][0]).getpixel((0, 0)) == (0, 0, 255)


def test_bad_sections_name_the_key(hf_scenes, tmp_path):
    ctx = ReadContext("vqa", "tasks.vqa.train")
    with pytest.raises(ConfigError, match=r"tasks\.vqa\.train\.question_column: the dataset has no column 'q'"):
        read_split(_hf(hf_scenes, "vqa", question_column="q"), ctx)
    with pytest.raises(ConfigError, match=r"path / data_files"):
        make_dataset("hf_dataset", path=str(tmp_path), data_files="x.parquet")
    with pytest.raises(ConfigError, match=r"tasks\.vqa\.train\.path: .*no such directory"):
        read_split(make_dataset("hf_dataset", path=str(tmp_path / "nope")), ctx)
    with pytest.raises(ConfigError, match=r"tasks\.vqa\.train\.builder"):
        read_split(make_dataset("hf_dataset", data_files=str(tmp_path / "x.csv")), ctx)
