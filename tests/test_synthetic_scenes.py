"""The synthetic scenes writer: official formats, round trip through the loaders, pixels, determinism, reuse."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mmadapt.data.synthetic import scene_world as scenes
from mmadapt.data.synthetic.scenes import (
    ensure_scenes_dataset,
    load_scenes_captions,
    load_scenes_vqa,
    read_manifest,
    write_scenes_dataset,
)
from mmadapt.errors import ConfigError, DataError
from mmadapt.io.image import load_image

N_TRAIN, N_VAL, SEED = 40, 20, 3


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    ensure_scenes_dataset(root, {"train": N_TRAIN, "val": N_VAL}, seed=SEED)
    return root


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _normalise(answer: str) -> str:
    """The parts of the official VQA answer normalisation the writer's variants rely on."""
    numbers = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5"}
    text = re.sub(r"(?<!\d)\.(?!\d)", "", answer.strip().lower())
    return " ".join(numbers.get(w, w) for w in text.split() if w not in ("a", "an", "the"))


def test_official_vqa_field_names(root: Path) -> None:
    questions = _json(root / "train_questions.json")
    assert set(questions) == {"info", "task_type", "data_type", "data_subtype", "license", "questions"}
    assert questions["data_subtype"] == "synthetic_train"
    assert all(set(q) == {"image_id", "question", "question_id"} for q in questions["questions"])
    annotations = _json(root / "train_annotations.json")
    assert set(annotations) == {"info", "license", "data_type", "data_subtype", "annotations"}
    for a in annotations["annotations"]:
        assert set(a) == {"question_id", "image_id", "question_type", "answer_type", "answers",
                          "multiple_choice_answer"}
        assert len(a["answers"]) == 10
        assert all(set(x) == {"answer", "answer_confidence", "answer_id"} for x in a["answers"])
        assert [x["answer_id"] for x in a["answers"]] == list(range(1, 11))
        assert {x["answer_confidence"] for x in a["answers"]} <= {"yes", "maybe", "no"}


def test_official_coco_captions_field_names(root: Path) -> None:
    captions = _json(root / "val_captions.json")
    assert {"images", "annotations"} <= set(captions)
    assert all({"id", "file_name", "width", "height"} <= set(im) for im in captions["images"])
    assert all(set(a) == {"image_id", "id", "caption"} for a in captions["annotations"])
    assert len({a["id"] for a in captions["annotations"]}) == len(captions["annotations"]) == 5 * N_VAL


def test_round_trip_counts_ids_and_answers(root: Path) -> None:
    train, val = load_scenes_vqa(root, "train"), load_scenes_vqa(root, "val")
    assert (len(train), len(val)) == (5 * N_TRAIN, 5 * N_VAL)
    for samples in (train, val):
        assert len({s.question_id for s in samples}) == len(samples)
        per_image = Counter(s.image_id for s in samples)
        assert set(per_image.values()) == {5}
        assert all(s.question_id // 10 == s.image_id for s in samples)
    assert not {s.image_id for s in train} & {s.image_id for s in val}  # val never overlaps train

    assert {s.answer_type for s in train} == {"yes/no", "number", "other"}
    assert {s.question_type for s in train} == {"what color is the", "what shape is the", "how many", "is the",
                                                "is there a"}
    for s in train + val:
        assert len(s.answers) == 10
        truth = s.multiple_choice_answer
        assert Counter(s.answers).most_common(1)[0] == (truth, Counter(s.answers)[truth])
        assert Counter(s.answers)[truth] >= 7
        assert all(_normalise(a) == truth for a in s.answers), s.answers
        if s.answer_type == "yes/no":
            assert truth in ("yes", "no")
        if s.answer_type == "number":
            assert truth in ("1", "2", "3")
    varied = [a for s in train for a in s.answers if a != s.multiple_choice_answer]
    assert varied, "some human-style variation is expected"


def test_captions_round_trip_and_agree_with_questions(root: Path) -> None:
    captions = {c.image_id: c for c in load_scenes_captions(root, "train")}
    assert len(captions) == N_TRAIN and all(len(c.captions) == 5 for c in captions.values())
    for s in load_scenes_vqa(root, "train"):
        c = captions[s.image_id]
        assert c.image_path == s.image_path
        match = re.fullmatch(r"what color is the (\w+)\?", s.question)
        if match:  # every caption names the object with its colour
            assert all(f"{s.multiple_choice_answer} {match.group(1)}" in text for text in c.captions)


def test_images_show_the_right_colours_in_the_right_half(root: Path) -> None:
    samples = load_scenes_vqa(root, "val")
    by_image: dict[int, dict[str, Any]] = {}
    for s in samples:
        facts = by_image.setdefault(s.image_id, {"path": s.image_path})
        if m := re.fullmatch(r"what color is the (\w+)\?", s.question):
            facts["shape_color"] = (m.group(1), s.multiple_choice_answer)
        elif m := re.fullmatch(r"is the (\w+) on the left or the right\?", s.question):
            facts["shape_side"] = (m.group(1), s.multiple_choice_answer)
        elif s.question == "how many objects are there?":
            facts["count"] = int(s.multiple_choice_answer)
    palette = {rgb: name for name, rgb in scenes.COLORS.items()}
    for facts in by_image.values():
        image = load_image(facts["path"])
        assert image.size == (64, 64)
        pixels = [(x, palette[p]) for x, p in _iter_pixels(image) if p in palette]
        assert len({name for _, name in pixels}) == facts["count"]  # one colour per object, none extra
        shape, color = facts["shape_color"]
        assert facts["shape_side"][0] == shape  # both questions ask about the same target object
        xs = [x for x, name in pixels if name == color]
        assert xs and all((x < 32) == (facts["shape_side"][1] == "left") for x in xs)


def _iter_pixels(image: Any) -> Any:
    pixels = image.load()
    for y in range(image.size[1]):
        for x in range(image.size[0]):
            yield x, pixels[x, y]


def test_manifest_describes_the_splits(root: Path) -> None:
    manifest = read_manifest(root)
    assert manifest["image_template"] == "{image_id:012d}.png"
    assert set(manifest["splits"]) == {"train", "val"}
    val = manifest["splits"]["val"]
    assert (val["n_images"], val["seed"], val["n_questions"], val["n_captions"]) == (N_VAL, SEED, 5 * N_VAL, 5 * N_VAL)
    for name in val["files"].values():
        assert (root / name).is_file()
    first = root / val["image_root"] / val["image_template"].format(image_id=val["first_image_id"])
    assert first.is_file() and first.name == f"{val['first_image_id']:012d}.png"
    with pytest.raises(DataError, match="splits.test missing"):
        load_scenes_vqa(root, "test")


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    a = write_scenes_dataset(tmp_path / "a", "val", 12, seed=7)
    b = write_scenes_dataset(tmp_path / "b", "val", 12, seed=7)
    c = write_scenes_dataset(tmp_path / "c", "val", 12, seed=8)
    for key in ("questions", "annotations", "captions", "manifest"):
        assert a[key].read_bytes() == b[key].read_bytes(), key
    files_a = sorted(p.name for p in a["images"].iterdir())
    assert len(files_a) == 12 and files_a == sorted(p.name for p in b["images"].iterdir())
    assert all((a["images"] / n).read_bytes() == (b["images"] / n).read_bytes() for n in files_a)
    assert a["annotations"].read_bytes() != c["annotations"].read_bytes()


def test_ensure_reuses_matching_data_and_rewrites_otherwise(tmp_path: Path) -> None:
    paths = ensure_scenes_dataset(tmp_path, {"train": 10, "val": 4}, seed=1)
    stamp = paths["train"]["questions"].stat().st_mtime_ns
    again = ensure_scenes_dataset(tmp_path, {"train": 10, "val": 4}, seed=1)
    assert again == paths and again["train"]["questions"].stat().st_mtime_ns == stamp  # reused

    ensure_scenes_dataset(tmp_path, {"train": 6, "val": 4}, seed=1)  # smaller: rewritten, stale images gone
    assert len(list((tmp_path / "images" / "train").iterdir())) == 6
    assert read_manifest(tmp_path)["splits"]["train"]["n_images"] == 6

    ensure_scenes_dataset(tmp_path, {"train": 6, "val": 4}, seed=2)  # other seed: rewritten
    assert read_manifest(tmp_path)["splits"]["val"]["seed"] == 2

    paths["val"]["annotations"].unlink()  # a file gone: rewritten
    ensure_scenes_dataset(tmp_path, {"val": 4}, seed=2)
    assert len(load_scenes_vqa(tmp_path, "val")) == 20


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="split"):
        write_scenes_dataset(tmp_path, "../escape", 5, seed=0)
    with pytest.raises(ConfigError, match="n_images"):
        write_scenes_dataset(tmp_path, "train", 0, seed=0)
    with pytest.raises(ConfigError, match="max_objects"):
        write_scenes_dataset(tmp_path, "train", 5, seed=0, max_objects=9)


def test_two_thousand_images_in_a_few_seconds(tmp_path: Path) -> None:
    start = time.perf_counter()
    paths = write_scenes_dataset(tmp_path, "train", 2000, seed=0)
    elapsed = time.perf_counter() - start
    assert len(_json(paths["questions"])["questions"]) == 10_000
    assert elapsed < 10, f"2,000 images took {elapsed:.1f} s"
