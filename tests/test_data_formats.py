"""Official VQA v2 / COCO captions / Karpathy readers, results writers, and the tolerant torch Datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mmadapt.data.datasets import CaptionDataset, VQADataset, collate_as_lists
from mmadapt.data.formats.coco_captions import (
    CaptionSample,
    load_caption_results,
    load_coco_captions,
    write_caption_results,
)
from mmadapt.data.formats.karpathy import load_karpathy
from mmadapt.data.formats.vqa_v2 import VQASample, load_vqa, load_vqa_results, write_vqa_results
from mmadapt.errors import ConfigError, DataError

# --------------------------------------------------------------------------------------------- fixtures


def _write(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj))
    return path


def _image(path: Path, colour: tuple[int, int, int] = (200, 50, 50)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def _answers(answer: str) -> list[dict[str, Any]]:
    return [{"answer": answer, "answer_confidence": "yes", "answer_id": i + 1} for i in range(10)]


def _vqa_docs() -> tuple[dict[str, Any], dict[str, Any]]:
    """A minimal official-format VQA v2 val2014 pair: images 42 and 7, three questions."""
    questions = {
        "info": {"description": "test"}, "task_type": "Open-Ended", "data_type": "mscoco",
        "data_subtype": "val2014", "license": {"name": "cc"},
        "questions": [
            {"image_id": 42, "question": "What colour is the bus?", "question_id": 420},
            {"image_id": 42, "question": "How many dogs?", "question_id": 421},
            {"image_id": 7, "question": "Is it raining?", "question_id": 70},
        ],
    }
    annotations = {
        "info": {}, "license": {}, "data_type": "mscoco", "data_subtype": "val2014",
        "annotations": [  # deliberately not in question order
            {"question_id": 70, "image_id": 7, "question_type": "is it", "answer_type": "yes/no",
             "answers": _answers("no"), "multiple_choice_answer": "no"},
            {"question_id": 420, "image_id": 42, "question_type": "what color is the", "answer_type": "other",
             "answers": _answers("red"), "multiple_choice_answer": "red"},
            {"question_id": 421, "image_id": 42, "question_type": "how many", "answer_type": "number",
             "answers": _answers("2"), "multiple_choice_answer": "2"},
        ],
    }
    return questions, annotations


@pytest.fixture()
def vqa_files(tmp_path: Path) -> dict[str, Path]:
    questions, annotations = _vqa_docs()
    images = tmp_path / "val2014"
    for image_id in (42, 7):
        _image(images / f"COCO_val2014_{image_id:012d}.jpg")
    return {
        "questions": _write(tmp_path / "val_questions.json", questions),
        "annotations": _write(tmp_path / "val_annotations.json", annotations),
        "images": images,
    }


def _error(call: Any, *words: str) -> str:
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, message
    return message


# ---------------------------------------------------------------------------------------------- VQA v2


def test_load_vqa_with_coco_image_names(vqa_files: dict[str, Path]) -> None:
    samples = load_vqa(vqa_files["questions"], vqa_files["annotations"], image_root=vqa_files["images"])
    assert [s.question_id for s in samples] == [420, 421, 70]  # question-file order
    first = samples[0]
    assert isinstance(first, VQASample)
    assert first.image_path == vqa_files["images"] / "COCO_val2014_000000000042.jpg"
    assert first.question == "What colour is the bus?"
    assert first.answers == ["red"] * 10
    assert (first.multiple_choice_answer, first.question_type, first.answer_type) == (
        "red", "what color is the", "other")
    assert samples[2].answer_type == "yes/no" and samples[1].multiple_choice_answer == "2"


def test_load_vqa_without_annotations_is_test_dev(vqa_files: dict[str, Path]) -> None:
    samples = load_vqa(vqa_files["questions"], image_root=vqa_files["images"])
    assert len(samples) == 3
    assert all(s.answers == [] and s.multiple_choice_answer is None and s.answer_type is None for s in samples)


def test_image_template_overrides_coco_names(tmp_path: Path) -> None:
    questions, _ = _vqa_docs()
    qpath = _write(tmp_path / "q.json", questions)
    for image_id in (42, 7):
        _image(tmp_path / "imgs" / "val2014" / f"{image_id}.png")
    samples = load_vqa(qpath, image_root=tmp_path / "imgs", image_template="{data_subtype}/{image_id}.png")
    assert samples[0].image_path == tmp_path / "imgs" / "val2014" / "42.png"
    with pytest.raises(ConfigError, match="image_template"):
        load_vqa(qpath, image_root=tmp_path, image_template="{image_id}_{split}.png")


@pytest.mark.parametrize(
    "mutate,words",
    [
        (lambda q, a: q["questions"][1].pop("question_id"), ["val_questions.json", "questions[1].question_id missing"]),
        (lambda q, a: q["questions"][2].update(image_id="7"), ["val_questions.json", "questions[2].image_id",
                                                                "expected int, got str"]),
        (lambda q, a: q["questions"][2].update(question_id=420), ["val_questions.json", "questions[2].question_id 420",
                                                                  "duplicates questions[0]"]),
        (lambda q, a: q.pop("questions"), ["val_questions.json", "questions missing"]),
        (lambda q, a: a["annotations"][0].update(question_id=999), ["val_annotations.json",
                                                                    "annotations[0].question_id 999",
                                                                    "no question"]),
        (lambda q, a: a["annotations"][1].update(image_id=7), ["val_annotations.json", "annotations[1].image_id 7",
                                                               "does not match"]),
        (lambda q, a: a["annotations"][2]["answers"][3].pop("answer"), ["val_annotations.json",
                                                                        "annotations[2].answers[3].answer missing"]),
        (lambda q, a: a["annotations"][2].pop("multiple_choice_answer"), ["annotations[2].multiple_choice_answer"]),
        (lambda q, a: a["annotations"].pop(), ["val_annotations.json", "1 of 3 questions", "421"]),
        (lambda q, a: a["annotations"].append(dict(a["annotations"][0])), ["annotations[3].question_id 70",
                                                                          "duplicates annotations[0]"]),
        (lambda q, a: a.update(data_subtype="train2014"), ["val_annotations.json", "data_subtype"]),
    ],
)
def test_vqa_errors_name_file_and_field(tmp_path: Path, mutate: Any, words: list[str]) -> None:
    questions, annotations = _vqa_docs()
    mutate(questions, annotations)
    qpath = _write(tmp_path / "val_questions.json", questions)
    apath = _write(tmp_path / "val_annotations.json", annotations)
    _error(lambda: load_vqa(qpath, apath, image_root=tmp_path, check_images=False), *words)


def test_vqa_bad_json_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "val_questions.json"
    bad.write_text('{"questions": [\n  {"image_id": 1,,}]}')
    _error(lambda: load_vqa(bad, check_images=False), "val_questions.json", "invalid JSON", "line 2")
    _write(bad, [1, 2])
    _error(lambda: load_vqa(bad, check_images=False), "expected a JSON object")
    _error(lambda: load_vqa(tmp_path / "nope.json"), "nope.json", "not found")


def test_vqa_missing_images_reported_once_with_count(vqa_files: dict[str, Path]) -> None:
    (vqa_files["images"] / "COCO_val2014_000000000007.jpg").unlink()
    message = _error(
        lambda: load_vqa(vqa_files["questions"], vqa_files["annotations"], image_root=vqa_files["images"]),
        "val_questions.json", "1 of 2 referenced images missing", "COCO_val2014_000000000007.jpg",
    )
    assert "\n" not in message
    # Without the check the samples load, and the bad image surfaces per item instead.
    samples = load_vqa(vqa_files["questions"], image_root=vqa_files["images"], check_images=False)
    assert len(samples) == 3


def test_write_vqa_results_official_format(tmp_path: Path) -> None:
    path = write_vqa_results(tmp_path / "out" / "results.json",
                             [(420, "red"), (np.int64(421), "2"), (torch.tensor(70), "no")])
    records = json.loads(path.read_text())
    assert records == [{"question_id": 420, "answer": "red"}, {"question_id": 421, "answer": "2"},
                       {"question_id": 70, "answer": "no"}]
    assert all(type(r["question_id"]) is int and set(r) == {"question_id", "answer"} for r in records)
    assert load_vqa_results(path) == {420: "red", 421: "2", 70: "no"}
    _error(lambda: write_vqa_results(tmp_path / "dup.json", [(1, "a"), (1, "b")]), "results[1].question_id 1")
    _error(lambda: write_vqa_results(tmp_path / "f.json", [(1.5, "a")]), "results[0].question_id")
    assert not (tmp_path / "dup.json").exists()


# ------------------------------------------------------------------------------------- COCO captions


def _coco_captions_doc() -> dict[str, Any]:
    return {
        "info": {}, "licenses": [],
        "images": [
            {"id": 391895, "file_name": "COCO_val2014_000000391895.jpg", "width": 8, "height": 8},
            {"id": 522418, "file_name": "COCO_val2014_000000522418.jpg", "width": 8, "height": 8},
        ],
        "annotations": [
            {"image_id": 522418, "id": 1, "caption": "A woman cutting a cake.\n"},
            {"image_id": 391895, "id": 2, "caption": "A man riding a bike."},
            {"image_id": 391895, "id": 3, "caption": " a person on a bicycle "},
        ],
    }


def test_load_coco_captions(tmp_path: Path) -> None:
    doc = _coco_captions_doc()
    for im in doc["images"]:
        _image(tmp_path / "val2014" / im["file_name"])
    path = _write(tmp_path / "captions_val2014.json", doc)
    samples = load_coco_captions(path, tmp_path / "val2014")
    assert [s.image_id for s in samples] == [391895, 522418]
    assert samples[0] == CaptionSample(391895, tmp_path / "val2014" / "COCO_val2014_000000391895.jpg",
                                       ["A man riding a bike.", "a person on a bicycle"])
    assert samples[1].captions == ["A woman cutting a cake."]

    doc.pop("annotations")  # image_info_test2014.json: images only
    test_info = load_coco_captions(_write(tmp_path / "image_info.json", doc), tmp_path / "val2014")
    assert [s.captions for s in test_info] == [[], []]


@pytest.mark.parametrize(
    "mutate,words",
    [
        (lambda d: d["images"][1].pop("file_name"), ["captions.json", "images[1].file_name missing"]),
        (lambda d: d["images"][1].update(id=391895), ["images[1].id 391895", "duplicates images[0]"]),
        (lambda d: d["annotations"][0].update(image_id=5), ["annotations[0].image_id 5", "not in images"]),
        (lambda d: d["annotations"][2].pop("caption"), ["captions.json", "annotations[2].caption missing"]),
        (lambda d: d.pop("images"), ["images missing"]),
    ],
)
def test_coco_caption_errors(tmp_path: Path, mutate: Any, words: list[str]) -> None:
    doc = _coco_captions_doc()
    mutate(doc)
    path = _write(tmp_path / "captions.json", doc)
    _error(lambda: load_coco_captions(path, tmp_path, check_images=False), *words)


def test_coco_captions_missing_images(tmp_path: Path) -> None:
    path = _write(tmp_path / "captions.json", _coco_captions_doc())
    _error(lambda: load_coco_captions(path, tmp_path / "imgs"), "captions.json", "2 of 2",
           "COCO_val2014_000000391895.jpg")


def _karpathy_doc() -> dict[str, Any]:
    def image(imgid: int, cocoid: int, split: str, n: int = 5) -> dict[str, Any]:
        return {"filepath": "val2014", "filename": f"COCO_val2014_{cocoid:012d}.jpg", "imgid": imgid,
                "split": split, "cocoid": cocoid, "sentids": list(range(n)),
                "sentences": [{"tokens": ["a", "cat"], "raw": f"A cat {k}. ", "imgid": imgid, "sentid": k}
                              for k in range(n)]}
    return {"dataset": "coco", "images": [image(0, 11, "train"), image(1, 12, "restval"), image(2, 13, "val"),
                                          image(3, 14, "test"), image(4, 15, "test", n=6)]}


def test_load_karpathy_splits(tmp_path: Path) -> None:
    path = _write(tmp_path / "dataset_coco.json", _karpathy_doc())
    test = load_karpathy(path, tmp_path, "test", check_images=False)
    assert [s.image_id for s in test] == [14, 15]
    assert test[0].image_path == tmp_path / "val2014" / "COCO_val2014_000000000014.jpg"
    assert test[0].captions == [f"A cat {k}." for k in range(5)] and len(test[1].captions) == 6
    assert [s.image_id for s in load_karpathy(path, tmp_path, ("train", "restval"), check_images=False)] == [11, 12]
    assert [s.image_id for s in load_karpathy(path, tmp_path, "train", check_images=False)] == [11]
    with pytest.raises(ConfigError, match="karpathy split"):
        load_karpathy(path, tmp_path, "validation")
    _error(lambda: load_karpathy(path, tmp_path, "val"), "dataset_coco.json", "1 of 1", "000000000013.jpg")


def test_load_karpathy_flickr_layout_and_errors(tmp_path: Path) -> None:
    flickr = {"dataset": "flickr8k", "images": [
        {"filename": "1000268201.jpg", "imgid": 0, "split": "test", "sentences": [{"raw": "A child."}]}]}
    _image(tmp_path / "Images" / "1000268201.jpg")
    samples = load_karpathy(_write(tmp_path / "dataset_flickr8k.json", flickr), tmp_path / "Images", "test")
    assert samples == [CaptionSample(0, tmp_path / "Images" / "1000268201.jpg", ["A child."])]

    doc = _karpathy_doc()
    doc["images"][3]["sentences"][2].pop("raw")
    path = _write(tmp_path / "dataset_coco.json", doc)
    _error(lambda: load_karpathy(path, tmp_path, "test", check_images=False),
           "dataset_coco.json", "images[3].sentences[2].raw missing")
    _error(lambda: load_karpathy(_write(tmp_path / "k.json", {"images": []}), tmp_path, "test"), "no images")


def test_write_caption_results_official_format(tmp_path: Path) -> None:
    path = write_caption_results(tmp_path / "captions_results.json", [(391895, "a man on a bike"),
                                                                        (np.int32(522418), "a cake")])
    records = json.loads(path.read_text())
    assert records == [{"image_id": 391895, "caption": "a man on a bike"}, {"image_id": 522418, "caption": "a cake"}]
    assert load_caption_results(path) == {391895: "a man on a bike", 522418: "a cake"}
    _error(lambda: write_caption_results(tmp_path / "d.json", [(1, "a"), (1, "b")]), "results[1].image_id 1")
    _error(lambda: write_caption_results(tmp_path / "d.json", [(1, None)]), "results[0].caption")


# ------------------------------------------------------------------------------------------- datasets


def test_vqa_dataset_records_a_corrupt_image_and_goes_on(vqa_files: dict[str, Path]) -> None:
    samples = load_vqa(vqa_files["questions"], vqa_files["annotations"], image_root=vqa_files["images"])
    bad = vqa_files["images"] / "COCO_val2014_000000000007.jpg"
    bad.write_bytes(bad.read_bytes()[:20])  # truncated
    dataset = VQADataset(samples)
    items = [dataset[i] for i in range(len(dataset))]
    assert [it["error"] is None for it in items] == [True, True, False]
    assert items[2]["image"] is None and str(bad) in items[2]["error"] and "truncated" in items[2]["error"]
    assert items[0]["image"].size == (8, 8) and items[0]["image"].mode == "RGB"
    assert items[1]["question_id"] == 421 and items[1]["answers"] == ["2"] * 10
    assert items[2]["question"] == "Is it raining?" and items[2]["multiple_choice_answer"] == "no"

    batches = list(DataLoader(dataset, batch_size=2, collate_fn=collate_as_lists))
    assert [b["question_id"] for b in batches] == [[420, 421], [70]]
    assert batches[1]["image"] == [None] and batches[1]["error"][0] == items[2]["error"]


def test_vqa_dataset_transform_is_applied(vqa_files: dict[str, Path]) -> None:
    samples = load_vqa(vqa_files["questions"], image_root=vqa_files["images"])
    dataset = VQADataset(samples, transform=lambda im: torch.tensor(np.asarray(im)).permute(2, 0, 1))
    assert dataset[0]["image"].shape == (3, 8, 8)


def test_caption_dataset_per_image_and_per_caption(tmp_path: Path) -> None:
    good = _image(tmp_path / "good.png")
    broken = tmp_path / "broken.png"
    broken.write_text("not a png")
    samples = [CaptionSample(1, good, ["a", "b", "c"]), CaptionSample(2, broken, ["d", "e"]),
               CaptionSample(3, good, [])]
    per_image = CaptionDataset(samples)
    assert len(per_image) == 3
    assert per_image[0]["captions"] == ["a", "b", "c"] and "caption" not in per_image[0]
    assert per_image[1]["image"] is None and "broken.png" in per_image[1]["error"]

    pairs = CaptionDataset(samples, per_caption=True)
    assert len(pairs) == 5
    assert [(pairs[i]["image_id"], pairs[i]["caption"]) for i in range(5)] == [
        (1, "a"), (1, "b"), (1, "c"), (2, "d"), (2, "e")]
    assert pairs[4]["caption_index"] == 1 and pairs[4]["error"] is not None and pairs[0]["error"] is None
