"""A new user's mistakes get one clear line from ``mmadapt train`` / ``mmadapt eval`` — where they used to get a
traceback, nothing at all, or a silently wrong run — and the ones that can be seen in the recipe, a model's
config or a checkpoint's record are caught before any weights load. Skipped or unreadable samples are
counted where the user looks (the end of training, beside the score), and Ctrl-C names the checkpoint to
resume from and the command that does it."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml
from transformers import PreTrainedModel
from transformers.models.auto.auto_factory import _BaseAutoModelClass

from mmadapt.cli import main
from tiny import word_tokenizer


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    from mmadapt.data.synthetic.scenes import write_scenes_dataset

    root = tmp_path_factory.mktemp("scenes")
    write_scenes_dataset(root, "train", 8, seed=0)
    write_scenes_dataset(root, "val", 2, seed=0)
    return root


def _recipe(tmp_path: Path, scenes: Path, **train) -> Path:
    ds = lambda split, n: {"format": "synthetic_scenes", "root": str(scenes), "split": split,  # noqa: E731
                           "n_images": n}
    raw = {"model": {"lm": {"name": "zoo:tiny-opt"}, "vision": {"name": "zoo:tiny-vit", "kind": "hf_vit"},
                     "adapter": {"name": "epalm", "n_injected": 2, "prompt_len": 2}},
           "tasks": {"vqa": {"train": ds("train", 8), "eval": ds("val", 2), "max_new_tokens": 2}},
           "train": {"max_steps": 2, "batch_size": 4, "warmup_steps": 1, "log_every": 1, **train},
           "eval": {"batch_size": 4},
           "output_dir": str(tmp_path / "run")}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def no_weights(monkeypatch):
    """Any weight loading fails the test: the mistake must be caught before."""
    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the mistake was reported")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(refuse))
    monkeypatch.setattr(_BaseAutoModelClass, "from_pretrained", classmethod(refuse))


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_a_local_model_path_that_does_not_exist(tmp_path, scenes, capsys, no_weights):
    recipe = _recipe(tmp_path, scenes)
    err = _one_line_error(capsys, ["train", str(recipe), f"model.lm.name={tmp_path}/models/my-llama"])
    assert err == (f"error: model.lm.name: {tmp_path}/models/my-llama: no such local directory "
                   "(Hugging Face ids have the form 'org/name')")
    err = _one_line_error(capsys, ["train", str(recipe), "model.vision.name=./checkpoints/vit"])
    assert err.startswith("error: model.vision.name: ./checkpoints/vit: no such local directory")


def test_a_directory_that_holds_no_lm(tmp_path, scenes, capsys, no_weights):
    recipe = _recipe(tmp_path, scenes)
    err = _one_line_error(capsys, ["train", str(recipe), "model.lm.name=zoo:tiny-vit"])
    assert err == ("error: model.lm.name: zoo:tiny-vit: holds a ViTModel, not a causal LM (the LM must load with "
                   "AutoModelForCausalLM)")
    (tmp_path / "empty").mkdir()
    err = _one_line_error(capsys, ["train", str(recipe), f"model.lm.name={tmp_path}/empty"])
    assert err == f"error: model.lm.name: {tmp_path}/empty: {tmp_path}/empty holds no config.json, so no Hugging Face model"


def test_a_tokenizer_without_eos_or_pad(tmp_path, scenes, capsys, no_weights):
    from transformers import LlamaConfig

    tok = word_tokenizer()
    lm_dir = tmp_path / "lm"
    lm_dir.mkdir()  # a config and a tokenizer are all it takes to see the mistake: no weights written
    LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2).save_pretrained(lm_dir)
    tok.save_pretrained(lm_dir)
    tok_cfg = json.loads((lm_dir / "tokenizer_config.json").read_text())
    for key in ("eos_token", "pad_token", "bos_token"):
        tok_cfg.pop(key, None)
    (lm_dir / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    (lm_dir / "special_tokens_map.json").unlink(missing_ok=True)
    err = _one_line_error(capsys, ["train", str(_recipe(tmp_path, scenes)), f"model.lm.name={lm_dir}"])
    assert err == (f"error: model.lm.name: {lm_dir}: its tokenizer has no eos_token, so no answer could end; set "
                   "eos_token (and pad_token) in its tokenizer_config.json or on the tokenizer")


@pytest.mark.parametrize("override, message", [
    ("train.lr=-0.001", "train.lr: expected a positive learning rate, got -0.001 (a negative one would train by "
                        "gradient ascent)"),
    ("train.max_steps=0", "train.max_steps: expected at least 1 training step, got 0 (to score an adapter without "
                          "training it, use `mmadapt eval`)"),
    ("train.batch_size=0", "train.batch_size: expected a positive integer, got 0"),
])
def test_training_settings_that_cannot_train(tmp_path, scenes, capsys, no_weights, override, message):
    recipe = _recipe(tmp_path, scenes)
    assert _one_line_error(capsys, ["train", str(recipe), override]) == f"error: {recipe}: {message}"


def test_an_output_directory_that_is_a_file(tmp_path, scenes, capsys, no_weights):
    recipe = _recipe(tmp_path, scenes)
    (tmp_path / "run").write_text("not a directory")
    assert _one_line_error(capsys, ["train", str(recipe)]) == \
        f"error: {recipe}: output_dir: {tmp_path / 'run'} is a file, not a directory"
    err = _one_line_error(capsys, ["train", str(recipe), f"output_dir={tmp_path / 'run' / 'sub'}"])
    assert err.endswith(f"output_dir: {tmp_path / 'run'} is a file, not a directory (output_dir is "
                        f"{tmp_path / 'run' / 'sub'})")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, scenes) -> tuple[Path, Path]:
    """A recipe and the run it trained (2 steps, a checkpoint at each)."""
    tmp = tmp_path_factory.mktemp("trained")
    recipe = _recipe(tmp, scenes, save_every=1, keep_checkpoints=3)
    assert main(["train", str(recipe), "--no-eval", "--quiet"]) == 0
    return recipe, tmp / "run"


def test_eval_or_resume_with_another_backbone(trained, tmp_path, capsys, monkeypatch):
    recipe, run = trained
    adapter = run / "checkpoints" / "step-2"
    other = tmp_path / "other-lm"
    other.mkdir()
    capsys.readouterr()

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the mismatch was reported")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(refuse))
    monkeypatch.setattr(_BaseAutoModelClass, "from_pretrained", classmethod(refuse))
    err = _one_line_error(capsys, ["eval", str(recipe), f"model.lm.name={other}", "--adapter", str(adapter)])
    assert err == (f"error: --adapter: {adapter} was trained with model.lm.name='zoo:tiny-opt', the recipe has "
                   f"'{other}'; use the backbone it was trained with (model.lm.name=zoo:tiny-opt)")
    err = _one_line_error(capsys, ["train", str(recipe), "train.max_steps=3", "model.vision.name=zoo:tiny-swin",
                                   "model.vision.kind=hf_swin", "--resume"])
    assert err.startswith(f"error: --resume: {adapter} was trained with model.vision.name='zoo:tiny-vit', the recipe "
                          f"has 'zoo:tiny-swin'")


def _corrupt(image: Path) -> None:
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)


def test_skipped_training_samples_and_eval_errors_are_counted_where_the_user_looks(tmp_path, capsys):
    from mmadapt.data.synthetic.scenes import write_scenes_dataset

    root = tmp_path / "scenes"
    write_scenes_dataset(root, "train", 8, seed=0)
    write_scenes_dataset(root, "val", 2, seed=0)
    _corrupt(sorted((root / "images" / "train").iterdir())[0])
    _corrupt(sorted((root / "images" / "val").iterdir())[0])
    recipe = _recipe(tmp_path, root)
    assert main(["train", str(recipe), "--quiet"]) == 0
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    skipped = [json.loads(line).get("skipped", []) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    n_skipped = sum(len(s) for s in skipped)
    assert n_skipped >= 1  # the bad image's questions, each time a batch drew one
    assert any(w.startswith(f"warning: train: {n_skipped} training sample(s) could not be read and were skipped "
                            f"(first: ") and w.endswith(f"each is listed under \"skipped\" in {tmp_path / 'run' / 'log.jsonl'}")
               for w in warnings), err
    headline = json.loads(out.strip().splitlines()[-1])["vqa"]
    assert headline["n_errors"] == 5  # the five questions of the unreadable eval image
    assert (f"warning: eval vqa: 5 sample(s) could not be read, so were not predicted (n_errors above); each is "
            f"listed in {tmp_path / 'run' / 'eval' / 'vqa_errors.json'}") in warnings


def test_ctrl_c_names_the_last_complete_checkpoint_and_how_to_resume(tmp_path, scenes, capsys, monkeypatch):
    from mmadapt.training.trainer import Trainer

    recipe = _recipe(tmp_path, scenes, save_every=1, max_steps=3)
    save = Trainer.save_checkpoint

    def interrupted_at_step_2(self):
        if self.step == 2:
            raise KeyboardInterrupt
        return save(self)

    monkeypatch.setattr(Trainer, "save_checkpoint", interrupted_at_step_2)
    assert main(["train", str(recipe), "--quiet", "--no-eval"]) == 130
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    command = shlex.join(["mmadapt", "train", str(recipe), "--resume"])
    assert lines[-1] == (f"interrupted: the last complete checkpoint is {tmp_path / 'run' / 'checkpoints' / 'step-1'}; "
                         f"resume with: {command}")
    monkeypatch.undo()
    assert main(shlex.split(command)[1:] + ["--quiet", "--no-eval"]) == 0  # the printed command resumes
    assert (tmp_path / "run" / "checkpoints" / "step-3").is_dir()
