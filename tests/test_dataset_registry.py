"""Dataset formats as registered parts: typed configs chosen by ``format``, each split read once per run, and
the LLaVA conversation format (added as one file + its registry line)."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from mmadapt import registry
from mmadapt.config import Config, DatasetConfig
from mmadapt.data.split import ReadContext, make_dataset, read_split
from mmadapt.errors import ConfigError, DataError


# ---------------------------------------------------------------------------------------------- registry
def test_every_format_is_a_typed_config_and_a_reader():
    names = registry.names("datasets")
    assert len(names) == 27 and {"llava", "easy_vqa", "webdataset", "hf_dataset"} <= set(names)
    for name in names:
        fmt = registry.get("datasets", name)
        assert fmt.name == name and fmt.serves and callable(fmt.read)
        assert dataclasses.is_dataclass(fmt.config_class) and issubclass(fmt.config_class, DatasetConfig)
        assert fmt.doc, f"{name}: its config has no docstring"
        keys = {f.name for f in dataclasses.fields(fmt.config_class)}
        assert {"format", "limit"} <= keys


def _raw(dataset: dict) -> dict:
    return {"model": {"adapter": {"name": "epalm"}}, "tasks": {"vqa": {"train": dataset}}}


@pytest.mark.parametrize("dataset, message", [
    ({"format": "vqa_v2", "questons": "q.json"}, "tasks.vqa.train.questons: unknown key (did you mean 'questions'?)"),
    ({"format": "manifest", "n_images": 3}, "tasks.vqa.train.n_images: unknown key"),  # another format's key
    ({"format": "vqa_v3"}, "tasks.vqa.train.format: expected one of ["),
    ({"format": "vqa_v3"}, "(did you mean 'vqa_v2'?)"),
    ({"format": 3}, "tasks.vqa.train.format: expected a dataset format name"),
    ({"format": "manifest", "limit": 0}, "tasks.vqa.train.limit: expected a positive integer"),
])
def test_dataset_keys_are_checked_by_their_format_before_anything_loads(dataset, message):
    with pytest.raises(ConfigError) as err:
        Config.from_dict(_raw(dataset), where="recipe.yaml")
    assert message in str(err.value) and str(err.value).startswith("recipe.yaml: ")


def test_a_format_builds_its_own_config_and_keeps_only_its_keys():
    cfg = Config.from_dict(_raw({"format": "synthetic_scenes", "root": "r", "split": "val", "n_images": 4}))
    ds = cfg.tasks["vqa"].train
    assert type(ds).__name__ == "SyntheticScenesConfig" and (ds.root, ds.split, ds.n_images, ds.seed) == ("r", "val", 4, 0)
    assert not hasattr(ds, "questions")  # no union of every format's fields
    assert Config.from_dict(_raw({"questions": "q.json"})).tasks["vqa"].train.format == "vqa_v2"  # the default
    assert make_dataset("manifest", annotations="a.jsonl").annotations == "a.jsonl"


def test_a_format_refuses_a_task_it_cannot_serve(tmp_path):
    ds = make_dataset("manifest", annotations=str(tmp_path / "a.jsonl"))
    with pytest.raises(ConfigError, match=r"tasks.caption.train.format: 'manifest' is not a captioning format \("
                                          r"audiocaps, coco_captions, hf_dataset, karpathy, llava, synthetic_audiocaps"):
        read_split(ds, ReadContext("caption", "tasks.caption.train"))


def test_limit_cuts_the_split_and_the_label_space_follows(tmp_path):
    manifest = tmp_path / "train.jsonl"
    (tmp_path / "x.png").write_bytes(b"")
    manifest.write_text("".join(json.dumps({"path": "x.png", "label": lab}) + "\n" for lab in "bacab"))
    full = read_split(make_dataset("manifest", annotations=str(manifest)), ReadContext("labelled", "t"))
    cut = read_split(make_dataset("manifest", annotations=str(manifest), limit=2), ReadContext("labelled", "t"))
    assert full.label_space.classes == ["a", "b", "c"] and not full.limited
    assert [lab for _, lab in cut.samples] == ["b", "a"] and cut.label_space.classes == ["a", "b"] and cut.limited


# ------------------------------------------------------------------------------------- read once per run
@pytest.fixture
def count_reads(monkeypatch):
    """Every format's reader wrapped to count its calls, by the split it read (``tasks.<key>.<split>``)."""
    reads: Counter = Counter()
    for name in registry.names("datasets"):
        fmt = registry.get("datasets", name)

        def counted(cfg, ctx, _read=fmt.read):
            reads[ctx.where] += 1
            return _read(cfg, ctx)

        monkeypatch.setitem(registry._REGISTRY["datasets"], name, dataclasses.replace(fmt, read=counted))
    return reads


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    from tiny import tiny_vit

    path = tmp_path_factory.mktemp("vit")
    enc = tiny_vit(layers=2, hidden=16)
    enc.model.save_pretrained(path)
    enc.processor.save_pretrained(path)
    return path


def test_an_any2point_run_reads_each_split_once(vit_dir, tmp_path, count_reads):
    """Training, the head's classes, evaluation and its baselines all use the one read of each split (before,
    this run parsed its training split five times)."""
    import mmadapt

    data = lambda split, n: {"format": "synthetic_points", "root": str(tmp_path / "data"), "split": split,  # noqa: E731
                             "n_samples": n}
    cfg = Config.from_dict({
        "model": {"assembly": "adapted_encoder", "encoder": {"name": str(vit_dir), "kind": "hf_vit"},
                  "tokenizer": {"name": "point_pn", "n_points": 128, "k": 8, "width": 3},
                  "adapter": {"name": "any2point"}},
        "tasks": {"classification": {"train": data("train", 10), "eval": data("val", 5)}},
        "train": {"max_steps": 2, "batch_size": 4, "warmup_steps": 1, "log_every": 1},
        "eval": {"batch_size": 4}, "output_dir": str(tmp_path / "run")})
    result = mmadapt.train(cfg, evaluate_after=True, quiet=True)
    assert result.scores["classification"]["n_samples"] == 5
    assert dict(count_reads) == {"tasks.classification.train": 1, "tasks.classification.eval": 1}
    assert result.model.config.head.classes == ["cone", "cube", "cylinder", "sphere", "torus"]
    assert cfg.model.head.classes is None and cfg.model.head.n_outputs is None  # the recipe's config is untouched


def test_a_vqa_and_caption_run_reads_each_split_once(scenes_root, tmp_path, count_reads):
    import mmadapt
    from tiny import make_model, tiny_config

    cfg = tiny_config(scenes_root, tmp_path / "run", max_steps=2)
    cfg.tasks["caption"].eval = None  # caption scoring starts Java; the VQA side covers evaluation
    cfg.tasks["vqa"].answer_mode = "rank"  # candidates: the training answers, from the same read
    result = mmadapt.train(cfg, model=make_model(cfg), evaluate_after=True, quiet=True)
    assert 0 <= result.scores["vqa"]["overall"] <= 100
    assert dict(count_reads) == {"tasks.vqa.train": 1, "tasks.vqa.eval": 1, "tasks.caption.train": 1}


# ------------------------------------------------------------------------------------------------- LLaVA
def _llava_files(root: Path) -> Path:
    for name, colour in (("red.png", (255, 0, 0)), ("blue.png", (0, 0, 255))):
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), colour).save(root / "images" / name)
    entries = [
        {"id": "a", "image": "images/red.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat colour is the picture?"}, {"from": "gpt", "value": "red"},
            {"from": "human", "value": "Is it blue?"}, {"from": "gpt", "value": "No."}]},
        {"id": "t", "conversations": [{"from": "human", "value": "Hello?"}, {"from": "gpt", "value": "hi"}]},
        {"id": "b", "image": "images/blue.png", "conversations": [
            {"from": "human", "value": "How many colours are there?\n<image>"}, {"from": "gpt", "value": "1"}]},
        {"id": "c", "image": "images/red.png", "conversations": [
            {"from": "human", "value": "<image> Describe it."}, {"from": "gpt", "value": "a red square ."}]},
    ]
    path = root / "llava.json"
    path.write_text(json.dumps(entries))
    return path


def test_llava_conversations_read_as_questions(tmp_path):
    path = _llava_files(tmp_path)
    split = read_split(make_dataset("llava", annotations=str(path)), ReadContext("vqa", "tasks.vqa.eval"))
    got = [(s.question_id, s.image_id, s.question, s.multiple_choice_answer, s.answer_type, s.question_type)
           for s in split.samples]
    assert got == [(0, 0, "What colour is the picture?", "red", "other", "what colour"),
                   (1, 0, "Is it blue?", "No.", "yes/no", "is it"),
                   (2, 1, "How many colours are there?", "1", "number", "how many"),
                   (3, 0, "Describe it.", "a red square .", "other", "describe it.")]
    assert all(s.answers == [s.multiple_choice_answer] * 10 for s in split.samples)
    assert split.samples[0].image_path == tmp_path / "images" / "red.png" == split.samples[3].image_path
    assert split.questions is None  # not VQA v2 on disk: the task writes the scoring files from the samples
    assert split.label_space.answers == sorted(["red", "No.", "1", "a red square ."])


def test_llava_conversations_read_as_captions_and_as_json_lines(tmp_path):
    path = _llava_files(tmp_path)
    lines = tmp_path / "llava.jsonl"
    lines.write_text("".join(json.dumps(e) + "\n" for e in json.loads(path.read_text())))
    for file in (path, lines):
        split = read_split(make_dataset("llava", annotations=str(file)), ReadContext("caption", "c"))
        assert [(s.image_id, s.captions) for s in split.samples] == [
            (0, ["red", "No.", "a red square ."]), (1, ["1"])]


def test_bad_llava_files_name_the_entry(tmp_path):
    path = _llava_files(tmp_path)
    entries = json.loads(path.read_text())
    cases = [
        ([{"id": "x", "image": "images/red.png"}], "[0].conversations missing"),
        ([{**entries[0], "conversations": [{"from": "human", "value": 7}, {"from": "gpt", "value": "a"}]}],
         "[0].conversations[0].value: expected str, got int (7)"),
        ([{**entries[0], "image": "../outside.png"}], "[0].image"),
        ([{**entries[0], "image": "images/missing.png"}], "1 of 1 referenced images missing"),
        ([entries[1]], "no human → gpt exchange about an image"),
        ({"not": "a list"}, "expected a JSON list at the top level"),
    ]
    for i, (content, message) in enumerate(cases):
        bad = tmp_path / f"bad{i}.json"
        bad.write_text(json.dumps(content))
        with pytest.raises(DataError) as err:
            read_split(make_dataset("llava", annotations=str(bad)), ReadContext("vqa", "t"))
        assert str(err.value).startswith(str(bad)) and message in str(err.value), (message, str(err.value))
    with pytest.raises(ConfigError, match="tasks.vqa.train.annotations: required for format llava"):
        read_split(make_dataset("llava"), ReadContext("vqa", "tasks.vqa.train"))


def test_an_llava_set_trains_and_scores_with_the_official_vqa_scorer(tmp_path):
    """Through a whole run: the questions train, the eval split's scoring files are written from the samples,
    and the official scorer gives what exact match gives."""
    import mmadapt
    from tiny import make_model

    path = _llava_files(tmp_path)
    ds = {"format": "llava", "annotations": str(path)}
    cfg = Config.from_dict({
        "model": {"lm": {"name": "test:tiny-opt"}, "vision": {"name": "test:tiny-vit", "kind": "hf_vit"},
                  "adapter": {"name": "epalm", "n_injected": 2, "prompt_len": 3, "prompt_mlp_hidden": 8}},
        "tasks": {"vqa": {"train": ds, "eval": ds, "answer_mode": "rank"}},
        "train": {"max_steps": 2, "batch_size": 4, "warmup_steps": 1, "log_every": 1},
        "eval": {"batch_size": 4}, "output_dir": str(tmp_path / "run")})
    result = mmadapt.train(cfg, model=make_model(cfg), evaluate_after=True, quiet=True)
    out = tmp_path / "run" / "eval"
    answers = {r["question_id"]: r["answer"] for r in json.loads((out / "vqa_results.json").read_text())}
    truth = {a["question_id"]: a["multiple_choice_answer"]
             for a in json.loads((out / "vqa_vqa_annotations.json").read_text())["annotations"]}
    assert set(answers) == set(truth) == {0, 1, 2, 3}
    from mmadapt.eval.vqa_metric import question_accuracy

    exact = 100 * sum(question_accuracy(answers[q], [truth[q]] * 10) for q in truth) / len(truth)
    assert result.scores["vqa"]["overall"] == pytest.approx(exact, abs=0.01)
    assert torch.isfinite(torch.tensor([r["loss"] for r in result.records])).all()


# --------------------------------------------------------------------------- adapters fit their assembly
@pytest.mark.parametrize("assembly, adapter, message", [
    ("adapted_encoder", "lora", "model.adapter.name: adapted_encoder takes any2point, or no adapter; 'lora' is not "
                                "an adapter of adapted_encoder"),
    ("perceptual_lm", "polyhistor", "model.adapter.name: perceptual_lm takes epalm, llava_projector, solo; "
                                    "'polyhistor' is not an adapter of perceptual_lm"),
    ("dense_multitask", "epalm", "'epalm' is not a dense adapter"),
])
def test_an_adapter_of_another_assembly_fails_when_the_recipe_is_read(assembly, adapter, message):
    """Before, ``adapter.name=lora`` on an ``adapted_encoder`` was a TypeError after the encoder had loaded."""
    model = {"assembly": assembly, "adapter": {"name": adapter}, "encoder": {"name": "x", "kind": "hf_vit"},
             "tokenizer": {"name": "image"}, "dense": {"tasks": {"semseg": {}}}}
    with pytest.raises(ConfigError) as err:
        Config.from_dict({"model": model})
    assert message in str(err.value)


def test_every_adapter_family_has_one_constructor_shape():
    import inspect

    shapes = {"perceptual_lm": ["config", "lm", "vision"], "adapted_encoder": ["config", "encoder"],
              "all_in_one": ["config", "encoder"], "dense_multitask": ["config", "backbone", "task_names"]}
    for name in registry.names("adapters"):
        cls = registry.get("adapters", name)
        assert len(cls.assemblies) == 1, name
        params = list(inspect.signature(cls.__init__).parameters)[1:]
        assert params == shapes[cls.assemblies[0]], (name, params)


# ------------------------------------------------------------------------------------ typed task sections
@pytest.mark.parametrize("task, key, message", [
    ("classification", "answer_mode", "tasks.classification.answer_mode: unknown key"),  # a VQA key
    ("caption", "candidates", "tasks.caption.candidates: unknown key"),
    ("retrieval", "prompt", "tasks.retrieval.prompt: unknown key"),
    ("vqa", "label_key", "tasks.vqa.label_key: unknown key"),
    ("vqa_gqa", "answer_mod", "tasks.vqa_gqa.answer_mod: unknown key (did you mean 'answer_mode'?)"),
    ("vqx", "prompt", "tasks.vqx: no task named 'vqx'"),
])
def test_each_task_reads_only_its_own_keys(task, key, message):
    with pytest.raises(ConfigError) as err:
        Config.from_dict({"model": {"adapter": {"name": "epalm"}}, "tasks": {task: {key: "x"}}})
    assert message in str(err.value)


def test_task_sections_are_typed_by_the_task_they_name():
    cfg = Config.from_dict({"model": {"adapter": {"name": "epalm"}},
                            "tasks": {"vqa_gqa": {"answer_mode": "rank"}, "caption": {"num_beams": 3},
                                      "classification": {"label_key": "y"}}})
    assert [type(t).__name__ for t in cfg.tasks.values()] == ["VQATaskConfig", "TextTaskConfig", "LabelledTaskConfig"]
    assert (cfg.tasks["vqa_gqa"].answer_mode, cfg.tasks["caption"].num_beams, cfg.tasks["classification"].label_key) \
        == ("rank", 3, "y")
