"""ModelNet40 (Princeton and Pointnet++ resampled layouts) and ScanObjectNN (.h5) read as laid out by their
official downloads: small real files written here, records, errors, and the classification task on top."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmadapt.data.formats.modelnet40 import modelnet_layout, modelnet_records
from mmadapt.data.formats.scanobjectnn import SCANOBJECTNN_CLASSES, scanobjectnn_records
from mmadapt.errors import ConfigError, DataError
from mmadapt.io.point_cloud import write_off

TETRA_V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
TETRA_F = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
PRINCETON = {"airplane": {"train": 3, "test": 1}, "night_stand": {"train": 2, "test": 2}}
RESAMPLED = {"train": ["night_stand_0002", "airplane_0002", "airplane_0001", "night_stand_0001"],
             "test": ["airplane_0003"]}


def princeton(root):
    """``<root>/<class>/<split>/<class>_NNNN.off`` like Princeton's ModelNet40.zip (plus a ``__MACOSX``)."""
    for cls, splits in PRINCETON.items():
        number = 0
        for split, n in splits.items():
            (root / cls / split).mkdir(parents=True)
            for _ in range(n):
                number += 1
                write_off(root / cls / split / f"{cls}_{number:04d}.off", TETRA_V * number, TETRA_F)
    (root / "__MACOSX").mkdir()
    (root / "airplane" / "train" / ".DS_Store").write_bytes(b"\0")
    return root


def resampled(root, name="modelnet40"):
    """Pointnet++'s ``modelnet40_normal_resampled``: list files + ``<class>/<id>.txt`` (x,y,z,nx,ny,nz)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    (root / f"{name}_shape_names.txt").write_text("airplane\nbathtub\nnight_stand\n")
    for split, ids in RESAMPLED.items():
        (root / f"{name}_{split}.txt").write_text("\n".join(ids) + "\n")
        for sample_id in ids:
            cls = sample_id.rsplit("_", 1)[0]
            (root / cls).mkdir(exist_ok=True)
            cloud = np.concatenate([rng.normal(size=(100, 3)), np.tile([0.0, 0.0, 1.0], (100, 1))], axis=1)
            np.savetxt(root / cls / f"{sample_id}.txt", cloud, fmt="%.6f", delimiter=",")
    return root


def scanobjectnn_h5(path, labels, n_points=2048, drop=None):
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        if drop != "data":
            f["data"] = rng.normal(size=(len(labels), n_points, 3)).astype(np.float32)
        if drop != "label":
            f["label"] = np.asarray(labels, dtype=np.int64)
        f["mask"] = np.zeros((len(labels), n_points), dtype=np.int64)
    return path


# --------------------------------------------------------------------------------------------- ModelNet
def test_princeton_layout_records(tmp_path):
    root = princeton(tmp_path / "ModelNet40")
    assert modelnet_layout(root) == "princeton"
    train = modelnet_records(root, "train")
    assert train == [(str(root / "airplane" / "train" / f"airplane_{i:04d}.off"), "airplane") for i in (1, 2, 3)] + [
        (str(root / "night_stand" / "train" / f"night_stand_{i:04d}.off"), "night_stand") for i in (1, 2)]
    test = modelnet_records(root, "test")
    assert [label for _, label in test] == ["airplane", "night_stand", "night_stand"]
    assert test[0][0].endswith("airplane_0004.off") and test == modelnet_records(root, "test")


def test_resampled_layout_records_sorted_and_modelnet10(tmp_path):
    root = resampled(tmp_path / "modelnet40_normal_resampled")
    assert modelnet_layout(root) == "resampled"
    train = modelnet_records(root, "train")
    expected = ["airplane_0001", "airplane_0002", "night_stand_0001", "night_stand_0002"]
    assert train == [(str(root / i.rsplit("_", 1)[0] / f"{i}.txt"), i.rsplit("_", 1)[0]) for i in expected]
    assert modelnet_records(root, "test") == [(str(root / "airplane" / "airplane_0003.txt"), "airplane")]
    with pytest.raises(DataError, match=r"modelnet10_shape_names\.txt: file not found"):
        modelnet_records(root, "train", name="modelnet10")
    resampled(root, name="modelnet10")
    assert modelnet_records(root, "train", name="modelnet10") == train


def test_modelnet_errors(tmp_path):
    with pytest.raises(DataError, match=r"missing: ModelNet folder not found"):
        modelnet_records(tmp_path / "missing", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: not a ModelNet folder"):
        modelnet_records(tmp_path / "empty", "train")
    with pytest.raises(ConfigError, match=r"split.*'val'"):
        modelnet_records(tmp_path / "empty", "val")

    root = resampled(tmp_path / "rs")
    (root / "modelnet40_test.txt").unlink()
    with pytest.raises(DataError, match=r"modelnet40_test\.txt: file not found"):
        modelnet_records(root, "test")
    (root / "night_stand" / "night_stand_0002.txt").unlink()
    listed = r"night_stand_0002\.txt: file not found \(listed in .*modelnet40_train\.txt:1\)"
    with pytest.raises(DataError, match=listed):
        modelnet_records(root, "train")
    (root / "modelnet40_train.txt").write_text("chair_0001\n")
    with pytest.raises(DataError, match=r"modelnet40_train\.txt:1: id 'chair_0001': class 'chair' is not in"):
        modelnet_records(root, "train")

    root = princeton(tmp_path / "pr")
    (root / "bed").mkdir()
    (root / "bed" / "train").mkdir()
    with pytest.raises(DataError, match=r"bed/test: folder not found"):
        modelnet_records(root, "test")


# ----------------------------------------------------------------------------------------- ScanObjectNN
def test_scanobjectnn_records(tmp_path):
    labels = [0, 14, 3, 10, 3]
    path = scanobjectnn_h5(tmp_path / "training_objectdataset_augmentedrot_scale75.h5", labels)
    rows = scanobjectnn_records(path)
    assert [label for _, label in rows] == ["bag", "toilet", "cabinet", "bed", "cabinet"]
    assert all(isinstance(p, torch.Tensor) and p.dtype == torch.float32 and p.shape == (2048, 3) for p, _ in rows)
    import h5py

    with h5py.File(path) as f:
        assert torch.equal(rows[2][0], torch.from_numpy(f["data"][2]))
    assert len(SCANOBJECTNN_CLASSES) == 15 and SCANOBJECTNN_CLASSES[9] == "table"


def test_scanobjectnn_errors(tmp_path):
    bad = scanobjectnn_h5(tmp_path / "bad_label.h5", [1, 15, 2], n_points=16)
    with pytest.raises(DataError, match=r"bad_label\.h5: row 1: label 15 is outside \[0, 15\)"):
        scanobjectnn_records(bad)
    negative = scanobjectnn_h5(tmp_path / "negative.h5", [1, 2, -1], n_points=16)
    with pytest.raises(DataError, match=r"negative\.h5: row 2: label -1"):
        scanobjectnn_records(negative)
    no_label = scanobjectnn_h5(tmp_path / "no_label.h5", [1], n_points=16, drop="label")
    with pytest.raises(DataError, match=r"no_label\.h5: missing dataset 'label'"):
        scanobjectnn_records(no_label)
    no_data = scanobjectnn_h5(tmp_path / "no_data.h5", [1], n_points=16, drop="data")
    with pytest.raises(DataError, match=r"no_data\.h5: missing dataset 'data'"):
        scanobjectnn_records(no_data)
    import h5py

    with h5py.File(tmp_path / "lengths.h5", "w") as f:
        f["data"] = np.zeros((3, 16, 3), np.float32)
        f["label"] = np.zeros(2, np.int64)
    with pytest.raises(DataError, match=r"lengths\.h5: dataset 'label' must be \[M\] = \[3\]"):
        scanobjectnn_records(tmp_path / "lengths.h5")
    with pytest.raises(DataError, match=r"missing\.h5: file not found"):
        scanobjectnn_records(tmp_path / "missing.h5")


# ------------------------------------------------------------------------------- the classification task
def _config(train, eval_):
    from mmadapt.config import Config

    return Config.from_dict({
        "model": {"assembly": "adapted_encoder", "encoder": {"name": "never-loaded", "kind": "hf_vit"},
                  "tokenizer": {"name": "point_cloud", "n_points": 64, "n_groups": 8, "group_size": 8}},
        "tasks": {"classification": {"train": train, "eval": eval_}},
    })


@pytest.mark.parametrize("layout", ["princeton", "resampled", "scanobjectnn"])
def test_classification_task_reads_the_formats(layout, tmp_path):
    import mmadapt
    from mmadapt.tokenizers.point_cloud import PointCloudTokenizer

    if layout == "scanobjectnn":
        train = str(scanobjectnn_h5(tmp_path / "train.h5", [4, 9, 4, 0]))
        test = str(scanobjectnn_h5(tmp_path / "test.h5", [9, 13]))
        cfg = _config({"format": "scanobjectnn", "annotations": train},
                      {"format": "scanobjectnn", "annotations": test})
        classes, n_train, n_eval = ["bag", "chair", "table"], 4, 2
    else:
        root = str(princeton(tmp_path / "m") if layout == "princeton" else resampled(tmp_path / "m"))
        cfg = _config({"format": "modelnet40", "root": root, "split": "train"},
                      {"format": "modelnet40", "root": root, "split": "test", "name": "modelnet40"})
        classes, n_train, n_eval = ["airplane", "night_stand"], 5 if layout == "princeton" else 4, \
            3 if layout == "princeton" else 1
    task = mmadapt.build_tasks(cfg)["classification"]
    examples = task.train_examples()
    assert task.classes() == classes and len(examples) == n_train and len(task.records("eval")) == n_eval
    assert {e.label for e in examples} == set(range(len(classes)))

    tokenizer = PointCloudTokenizer(16, cfg.model.tokenizer)
    sources = [e.source for e in examples] + [s for s, _ in task.records("eval")]
    clouds = [tokenizer.load(source) for source in sources]
    # every source — a file, or an .h5 row in memory — is sampled to n_points and normalised into the unit ball
    assert all(c.shape == (64, 3) and c.dtype == torch.float32 and torch.isfinite(c).all() for c in clouds)
    assert all(abs(float(c.norm(dim=1).max()) - 1) < 1e-5 for c in clouds)
    batch = tokenizer.collate(clouds[:2])
    assert tokenizer(**batch).tokens.shape == (2, 8, 16)


def test_classification_config_errors(tmp_path):
    import mmadapt

    where = r"tasks\.classification\.train"
    with pytest.raises(ConfigError, match=where + r": modelnet40 needs root .* split \(train or test\)"):
        mmadapt.build_tasks(_config({"format": "modelnet40", "root": str(tmp_path), "split": "val"}, None))[
            "classification"].records("train")
    with pytest.raises(ConfigError, match=where + r"\.annotations: required for format scanobjectnn"):
        mmadapt.build_tasks(_config({"format": "scanobjectnn"}, None))["classification"].records("train")
