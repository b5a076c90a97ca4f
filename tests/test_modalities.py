"""Every modality through the same AdaptedEncoder pipeline: generated files in the real formats → io loader
→ tokenizer → frozen shared ViT → head, trained by the common trainer and scored; a broken file in the eval
split is reported and the run goes on. (Accuracy per modality with the zoo ViT: benchmarks/
metatransformer_modalities.py; learning itself is tested on images in test_adapted_encoder.py.)"""

from __future__ import annotations

import json

import pytest
import torch

from mmadapt.data.split import make_dataset

TOKENIZERS = {
    "synthetic_images": {"name": "image", "image_size": 32, "patch_size": 8},
    "synthetic_video": {"name": "video", "n_frames": 4, "image_size": 32, "patch_size": 8, "tubelet_size": 2},
    "synthetic_audio": {"name": "audio", "n_mels": 64, "max_frames": 100},
    "synthetic_points": {"name": "point_cloud", "n_points": 128, "n_groups": 8, "group_size": 8, "hidden": 16,
                         "position_hidden": 16},
    "synthetic_tabular": {"name": "tabular", "numeric": ["x0", "x1", "x2", "x3"], "categorical": ["colour", "size"],
                          "categories": {"colour": ["red", "green", "blue", "yellow"],
                                         "size": ["small", "medium", "large"]}},
    "synthetic_graph": {"name": "graph", "lap_k": 4},
}
BROKEN = {"synthetic_images": b"\x89PNG\r\n\x1a\n\0\0", "synthetic_video": b"not a video",
          "synthetic_audio": b"RIFF\x10\0\0\0WAVEfmt ", "synthetic_points": b"ply\nformat ascii 1.0\nelement vertex 3\n",
          "synthetic_graph": b'{"num_nodes": 3, "edges": [[0, 7]]}'}
SUFFIX = {"synthetic_images": ".png", "synthetic_video": ".mp4", "synthetic_audio": ".wav", "synthetic_points": ".ply",
          "synthetic_graph": ".json"}


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    from tiny import tiny_vit

    path = tmp_path_factory.mktemp("vit")
    enc = tiny_vit(layers=2, hidden=32)
    enc.model.save_pretrained(path)
    enc.processor.save_pretrained(path)
    return path


@pytest.mark.parametrize("fmt", list(TOKENIZERS))
def test_modality_trains_scores_and_reports_a_broken_file(fmt, encoder_dir, tmp_path):
    import mmadapt
    from mmadapt.config import Config

    data = tmp_path / "data"
    ds = lambda split, n: {"format": fmt, "root": str(data), "split": split, "n_samples": n, "seed": 0}  # noqa: E731
    raw = {"model": {"assembly": "adapted_encoder", "encoder": {"name": str(encoder_dir), "kind": "hf_vit"},
                     "tokenizer": TOKENIZERS[fmt]},
           "tasks": {"classification": {"train": ds("train", 24), "eval": ds("val", 12)}},
           "train": {"max_steps": 2, "batch_size": 8, "lr": 1e-3, "warmup_steps": 1, "log_every": 1},
           "eval": {"batch_size": 5}, "output_dir": str(tmp_path / "run")}
    cfg = Config.from_dict(raw)
    tasks = mmadapt.build_tasks(cfg)
    model = mmadapt.build_model(cfg, tasks)
    frozen = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    result = mmadapt.train(cfg, model=model, evaluate_after=True, quiet=True)
    scores = result.scores["classification"]
    n_classes = len(model.config.head.classes)
    assert n_classes >= 3 and scores["n_scored"] == 12 and scores["n_errors"] == 0
    assert scores["baselines"]["chance"] == pytest.approx(100 / n_classes, abs=0.01)
    assert 0 <= scores["accuracy"] <= 100
    assert all(torch.equal(v, frozen[k]) for k, v in model.encoder.state_dict().items())
    assert (tmp_path / "run" / "checkpoints").is_dir()

    if fmt == "synthetic_tabular":
        return  # rows of one file: no per-sample file to break
    manifest = next(data.glob("val*.jsonl"))
    broken = data / f"broken{SUFFIX[fmt]}"
    broken.write_bytes(BROKEN[fmt])
    first = json.loads(manifest.read_text().splitlines()[0])
    lines = manifest.read_text().splitlines()[:3] + [json.dumps({"path": broken.name, "label": first["label"]})]
    bad_manifest = data / "with_broken.jsonl"
    bad_manifest.write_text("\n".join(lines) + "\n")
    cfg.tasks["classification"].eval = make_dataset("manifest", annotations=str(bad_manifest))
    scores = mmadapt.evaluate(model, cfg, out_dir=tmp_path / "eval")["classification"]
    assert scores["n_scored"] == 3 and scores["n_errors"] == 1
    errors = json.loads((tmp_path / "eval" / "classification_errors.json").read_text())
    assert broken.name in errors[0]["error"]


def test_a_real_bundled_table_is_learned_with_standardisation_from_the_training_split(encoder_dir, tmp_path):
    """scikit-learn's wine table (format sklearn_table): build_model standardises every numeric column with the
    training split's mean / std (stored in the saved config), and the frozen encoder + trained tokenizer and
    head separate the three cultivars far above chance."""
    import csv

    import numpy as np

    import mmadapt
    from mmadapt.config import Config
    from mmadapt.errors import ConfigError
    from sklearn.datasets import load_wine

    columns = list(load_wine().feature_names)
    ds = lambda split: {"format": "sklearn_table", "name": "wine", "root": str(tmp_path / "data"),  # noqa: E731
                        "split": split, "seed": 0}
    raw = {"model": {"assembly": "adapted_encoder", "encoder": {"name": str(encoder_dir), "kind": "hf_vit"},
                     "tokenizer": {"name": "tabular", "numeric": columns, "target": "label"}},
           "tasks": {"classification": {"train": ds("train"), "eval": ds("val")}},
           "train": {"max_steps": 150, "batch_size": 32, "lr": 2e-3, "warmup_steps": 10, "log_every": 50},
           "eval": {"batch_size": 64}, "output_dir": str(tmp_path / "run")}
    cfg = Config.from_dict(raw)
    model = mmadapt.build_model(cfg)

    with open(tmp_path / "data" / "wine_train.csv", newline="") as f:
        train = np.array([[float(row[c]) for c in columns] for row in csv.DictReader(f)])
    assert len(train) == 133  # 178 rows, 25% of each class held out
    np.testing.assert_allclose(model.config.tokenizer.numeric_mean, train.mean(axis=0), rtol=1e-6)  # float32 table
    np.testing.assert_allclose(model.config.tokenizer.numeric_std, train.std(axis=0), rtol=1e-5)
    assert model.tokenizer.mean[-1].item() == pytest.approx(train[:, -1].mean(), rel=1e-6)  # proline ~ 750

    scores = mmadapt.train(cfg, model=model, evaluate_after=True, quiet=True).scores["classification"]
    assert scores["n_scored"] == 45 and scores["baselines"]["chance"] == pytest.approx(33.33, abs=0.01)
    assert scores["accuracy"] > 80

    raw["tasks"]["classification"]["train"]["split"] = "test"
    with pytest.raises(ConfigError, match=r"tasks.classification.train: sklearn_table needs .* split \(train or val\)"):
        mmadapt.build_model(Config.from_dict(raw))
