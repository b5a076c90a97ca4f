"""easy-VQA (format easy_vqa) read from the pip package as shipped: the package's own statistics, question
templates as question types, yes/no and other answer types, errors, and a run scored by the official scorer."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from mmadapt.data.formats.easy_vqa import load_easy_vqa, package_root, question_template
from mmadapt.data.split import ReadContext, make_dataset, read_split
from mmadapt.errors import ConfigError, DataError


def test_the_package_data_reads_as_its_readme_counts():
    """The package README: 4,000 train images and 38,575 questions (28,407 yes/no), 1,000 test images and
    9,673 questions (7,136 yes/no), 13 answers."""
    train = read_split(make_dataset("easy_vqa", split="train"), ReadContext("vqa", "tasks.vqa.train"))
    test = load_easy_vqa(package_root(), "test")
    for samples, n_questions, n_images, n_yes_no in ((train.samples, 38575, 4000, 28407), (test, 9673, 1000, 7136)):
        assert len(samples) == n_questions and len({s.image_id for s in samples}) == n_images
        assert Counter(s.answer_type for s in samples) == {"yes/no": n_yes_no, "other": n_questions - n_yes_no}
        assert len({s.question_type for s in samples}) == 24
    answers = (package_root() / "answers.txt").read_text().split()
    assert train.label_space.answers == sorted(answers) and len(answers) == 13
    first = train.samples[0]
    assert (first.question_id, first.question, first.answers, first.image_path.name) == (
        0, "what is the blue shape?", ["rectangle"] * 10, "0.png")
    assert first.image_path.is_file() and first.question_type == "what is the <color> shape?"


def test_question_templates_by_hand():
    assert question_template("is there not a red circle in the image?") == "is there not a <color> <shape> in the image?"
    assert question_template("what color is the shape?") == "what color is the shape?"  # "shape" is not a shape name


def test_bad_splits_and_files_name_the_key_or_the_file(tmp_path):
    with pytest.raises(ConfigError, match="tasks.vqa.train.split: expected train or test, got 'val'"):
        read_split(make_dataset("easy_vqa", split="val"), ReadContext("vqa", "tasks.vqa.train"))
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "questions.json").write_text(json.dumps([["what?", "red", 0], ["what?", 3, 0]]))
    with pytest.raises(DataError, match=r"questions\.json: \[1\]: expected \[question, answer, image_id\]"):
        load_easy_vqa(tmp_path, "train")
    (tmp_path / "train" / "questions.json").write_text(json.dumps([["what?", "red", 7]]))
    with pytest.raises(DataError, match=r"1 of 1 referenced images missing, first: .*7\.png"):
        load_easy_vqa(tmp_path, "train")


def test_easy_vqa_trains_and_the_official_scorer_gives_exact_match(tmp_path):
    import mmadapt
    from mmadapt.config import Config
    from mmadapt.eval.vqa_metric import question_accuracy
    from tiny import make_model

    cfg = Config.from_dict({
        "model": {"lm": {"name": "test:tiny-opt"}, "vision": {"name": "test:tiny-vit", "kind": "hf_vit"},
                  "adapter": {"name": "epalm", "n_injected": 2, "prompt_len": 3, "prompt_mlp_hidden": 8}},
        "tasks": {"vqa": {"train": {"format": "easy_vqa", "split": "train", "limit": 32},
                          "eval": {"format": "easy_vqa", "split": "test", "limit": 24}, "answer_mode": "rank"}},
        "train": {"max_steps": 2, "batch_size": 8, "warmup_steps": 1, "log_every": 1},
        "eval": {"batch_size": 8}, "output_dir": str(tmp_path / "run")})
    scores = mmadapt.train(cfg, model=make_model(cfg), evaluate_after=True, quiet=True).scores["vqa"]
    out = tmp_path / "run" / "eval"
    answers = {r["question_id"]: r["answer"] for r in json.loads((out / "vqa_results.json").read_text())}
    truth = {s.question_id: s.multiple_choice_answer for s in load_easy_vqa(package_root(), "test")[:24]}
    assert set(answers) == set(truth)
    assert scores["overall"] == pytest.approx(100 * sum(question_accuracy(answers[q], [truth[q]] * 10)
                                                        for q in truth) / 24, abs=0.01)
    assert set(scores["perAnswerType"]) <= {"yes/no", "other"}
