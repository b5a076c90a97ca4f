"""AdaptedEncoder: tokenizer → frozen shared encoder → head, trained by the common trainer on DeepSpeed.

A tiny random ViT (saved and loaded by path, like a real checkpoint) is the frozen encoder; the task is
image classification from a JSON-lines manifest, where the label is the colour of a square at a random
place — so the model must read the image's content.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}


def _write_images(root, split: str, n: int, seed: int) -> str:
    rng = random.Random(f"{split}-{seed}")
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        name = list(COLOURS)[i % len(COLOURS)]
        img = Image.new("RGB", (40, 40), (128, 128, 128))
        x, y = rng.randrange(0, 24), rng.randrange(0, 24)
        ImageDraw.Draw(img).rectangle([x, y, x + 14, y + 14], fill=COLOURS[name])
        img.save(folder / f"{i}.png")
        lines.append(json.dumps({"path": f"{split}/{i}.png", "label": name}))
    manifest = root / f"{split}.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return str(manifest)


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    from tiny import tiny_vit

    path = tmp_path_factory.mktemp("vit")
    enc = tiny_vit(layers=2, hidden=32)
    enc.model.save_pretrained(path)
    enc.processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("colours")
    _write_images(root, "train", 60, 0)
    _write_images(root, "val", 30, 1)
    return root


def _config(encoder_dir, image_root, out, **train):
    from mmadapt.config import Config

    raw = {
        "model": {"assembly": "adapted_encoder", "encoder": {"name": str(encoder_dir), "kind": "hf_vit"},
                  "tokenizer": {"name": "image", "image_size": 32, "patch_size": 8}},
        "tasks": {"classification": {"train": {"format": "manifest", "annotations": str(image_root / "train.jsonl")},
                                     "eval": {"format": "manifest", "annotations": str(image_root / "val.jsonl")}}},
        "train": {"max_steps": 40, "batch_size": 12, "lr": 3e-3, "warmup_steps": 2, "weight_decay": 0.0,
                  "log_every": 10, **train},
        "eval": {"batch_size": 16},
        "output_dir": str(out),
    }
    return Config.from_dict(raw)


def test_trains_only_tokenizer_and_head_and_learns_the_images(encoder_dir, image_root, tmp_path):
    import mmadapt

    cfg = _config(encoder_dir, image_root, tmp_path / "run")
    model = mmadapt.build_model(cfg)
    assert isinstance(model, mmadapt.AdaptedEncoder)
    assert model.config.head.classes == ["blue", "green", "red"] and model.config.head.n_outputs == 3
    frozen = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("trained.") for n in trainable)

    # one backward pass: gradients reach exactly the trainable parameters
    inputs, errors = model.collate_train(mmadapt.build_tasks(cfg)["classification"].train_examples()[:6])
    assert not errors and inputs["pixels"].shape == (6, 3, 32, 32)
    model(**inputs).backward()
    assert {n for n, p in model.named_parameters() if p.grad is not None} == trainable
    assert all(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n in trainable)
    model.zero_grad(set_to_none=True)

    result = mmadapt.train(cfg, model=model, evaluate_after=True, quiet=True)
    scores = result.scores["classification"]
    assert scores["baselines"]["chance"] == pytest.approx(33.33)
    assert scores["accuracy"] >= 90.0, scores
    for k, v in result.model.encoder.state_dict().items():
        assert torch.equal(v, frozen[k]), f"frozen weight {k} changed"
    saved = json.loads((tmp_path / "run" / "eval" / "classification.json").read_text())
    assert saved["accuracy"] == scores["accuracy"] and saved["n_errors"] == 0
    preds = (tmp_path / "run" / "eval" / "classification_predictions.jsonl").read_text().splitlines()
    assert len(preds) == 30


def test_save_load_gives_identical_predictions_and_bad_eval_samples_are_reported(encoder_dir, image_root, tmp_path):
    import mmadapt
    from mmadapt.models.base import Assembly

    cfg = _config(encoder_dir, image_root, tmp_path / "run", max_steps=3)
    model = mmadapt.build_model(cfg)
    torch.manual_seed(0)
    for p in model.trainable_parameters():  # move away from the init so the check is not trivial
        p.data.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(tmp_path / "adapter")
    again = Assembly.from_pretrained(tmp_path / "adapter")
    assert isinstance(again, mmadapt.AdaptedEncoder) and again.config.head.classes == ["blue", "green", "red"]
    sources = [str(image_root / "val" / f"{i}.png") for i in range(5)]
    _, inputs, _ = model.load_batch(sources)
    model.eval(), again.eval()
    torch.testing.assert_close(model.predict(**inputs), again.predict(**inputs), rtol=0, atol=0)

    # a corrupt and a missing image in the eval split: reported in eval/<task>_errors.json, the rest scored
    bad_root = tmp_path / "bad"
    bad_root.mkdir()
    (bad_root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    lines = (image_root / "val.jsonl").read_text().splitlines()[:4]
    for ln in lines:  # a manifest names files inside its data root (its folder): copy the good images there
        name = json.loads(ln)["path"]
        (bad_root / Path(name).name).write_bytes((image_root / name).read_bytes())
    lines = [json.dumps({**json.loads(ln), "path": Path(json.loads(ln)["path"]).name}) for ln in lines]
    lines += [json.dumps({"path": str(bad_root / "broken.png"), "label": "red"}),
              json.dumps({"path": str(bad_root / "missing.png"), "label": "red"})]
    (bad_root / "val.jsonl").write_text("\n".join(lines) + "\n")
    cfg.tasks["classification"].eval.annotations = str(bad_root / "val.jsonl")
    scores = mmadapt.evaluate(model, cfg, out_dir=tmp_path / "eval")["classification"]
    assert scores["n_samples"] == 6 and scores["n_scored"] == 4 and scores["n_errors"] == 2
    errors = json.loads((tmp_path / "eval" / "classification_errors.json").read_text())
    assert "broken.png" in errors[0]["error"] and "missing.png: file not found" in errors[1]["error"]


def test_config_errors_name_the_key(encoder_dir, image_root, tmp_path):
    from mmadapt.config import Config
    from mmadapt.errors import ConfigError

    raw = _config(encoder_dir, image_root, tmp_path).to_dict()
    raw["model"]["tokenizer"] = None
    with pytest.raises(ConfigError, match="model.tokenizer: missing"):
        Config.from_dict(raw)
    raw["model"]["tokenizer"] = {"name": "image", "patch_sise": 8}
    with pytest.raises(ConfigError, match=r"model.tokenizer.patch_sise: unknown key \(did you mean 'patch_size'\?\)"):
        Config.from_dict(raw)
    raw["model"]["tokenizer"] = {"name": "image", "image_size": 30, "patch_size": 8}
    with pytest.raises(ConfigError, match="model.tokenizer.image_size: 30 is not a multiple of patch_size 8"):
        Config.from_dict(raw)
    (tmp_path / "tok.yaml").write_text("name: image\nimage_size: 32\npatch_size: 16\n")
    raw["model"]["tokenizer"] = str(tmp_path / "tok.yaml")
    assert Config.from_dict(raw).model.tokenizer.patch_size == 16
    raw["model"]["tokenizer"] = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="nope.yaml' not found"):
        Config.from_dict(raw)
