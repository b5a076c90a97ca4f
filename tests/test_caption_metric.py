"""Tests of the COCO caption metrics (mmadapt.eval.caption_metric).

The scoring tests start java (PTB tokenizer, METEOR: a few seconds each), so they share three module-level
runs. Validation errors are raised before any java process starts.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from mmadapt.eval import caption_metric
from mmadapt.eval.caption_metric import (
    CaptionFormatError,
    JavaNotFoundError,
    caption_scores,
    score_caption_files,
    spice_unavailable_reason,
)

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="java is not installed")

METRICS = ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"]

REFERENCES: dict[int, list[str]] = {
    1: ["A dog runs across the green grass.", "The brown dog is running on a lawn.", "a dog running outside"],
    2: ["A cat sleeps on a red sofa.", "A cat is sleeping on the couch.", "a sleeping cat"],
    3: ["A man rides a bicycle down the street.", "A person riding a bike in the city.", "man on a bike"],
}
IDENTICAL = {image_id: refs[0] for image_id, refs in REFERENCES.items()}
UNRELATED = {1: "a plate of pasta with tomato sauce", 2: "an airplane taking off at night", 3: ""}


def _java_children() -> list[int]:
    """Pids of live java processes whose parent is this process (Linux /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        state, parent = fields[0], int(fields[1])
        if parent == os.getpid() and "java" in name and state != "Z":
            children.append(int(entry.name))
    return children


@pytest.fixture(scope="module")
def identical_scores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Candidates equal to a reference, scored through the file API."""
    folder = tmp_path_factory.mktemp("captions")
    annotations = {
        "images": [{"id": image_id, "file_name": f"{image_id}.jpg"} for image_id in REFERENCES],
        "annotations": [
            {"image_id": image_id, "id": 10 * image_id + k, "caption": caption}
            for image_id, refs in REFERENCES.items()
            for k, caption in enumerate(refs)
        ],
    }
    results = [{"image_id": image_id, "caption": caption} for image_id, caption in IDENTICAL.items()]
    (folder / "ann.json").write_text(json.dumps(annotations), encoding="utf-8")
    (folder / "res.json").write_text(json.dumps(results), encoding="utf-8")
    return score_caption_files(folder / "ann.json", folder / "res.json")


@pytest.fixture(scope="module")
def unrelated_scores() -> dict[str, Any]:
    return caption_scores(REFERENCES, UNRELATED)


@pytest.fixture(scope="module")
def single_image_scores() -> dict[str, Any]:
    """A hand-computable case: one image, one reference, one substituted word."""
    return caption_scores({"img": ["A cat sits on the mat."]}, {"img": "a cat sits on a mat"})


@needs_java
def test_identical_candidates_score_top(identical_scores: dict[str, Any]) -> None:
    assert list(identical_scores)[: len(METRICS)] == METRICS
    for name in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L"):
        assert identical_scores[name] == 100.0, name
    assert identical_scores["CIDEr"] > 100.0  # CIDEr is ×100 like papers report it (e.g. 111.63)


@needs_java
def test_unrelated_candidates_score_low(
    identical_scores: dict[str, Any], unrelated_scores: dict[str, Any]
) -> None:
    for name in METRICS:
        assert 0.0 <= unrelated_scores[name] < identical_scores[name], name
    assert unrelated_scores["Bleu_4"] < 1.0
    assert unrelated_scores["CIDEr"] < 10.0
    assert unrelated_scores["ROUGE_L"] < 20.0
    assert identical_scores["CIDEr"] - unrelated_scores["CIDEr"] > 100.0


@needs_java
def test_hand_computed_values(single_image_scores: dict[str, Any]) -> None:
    # Tokens: "a cat sits on the mat" (reference) vs "a cat sits on a mat" (candidate), equal lengths (BP = 1).
    # BLEU-n = geometric mean of the clipped n-gram precisions 5/6, 3/5, 2/4, 1/3:
    #   BLEU-1 = 5/6, BLEU-2 = (5/6·3/5)^(1/2), BLEU-3 = (5/6·3/5·2/4)^(1/3),
    #   BLEU-4 = (5/6·3/5·2/4·1/3)^(1/4).
    # ROUGE-L: LCS "a cat sits on mat" = 5 → P = R = 5/6 → F = 5/6.
    # CIDEr: one image → every idf is log(1) = 0.
    # METEOR 1.5 (en: alpha .85, beta .2, gamma .6, delta .75; function words a, on, the weighted 1 - delta):
    #   P = R = (.75·3 + .25·2) / (.75·3 + .25·3) = 11/12; 2 chunks over 5 matches → penalty .6·(2/5)^.2;
    #   score = 11/12 · (1 - .6·0.4^.2) = 0.45876.
    assert single_image_scores["Bleu_1"] == 83.33
    assert single_image_scores["Bleu_2"] == 70.71
    assert single_image_scores["Bleu_3"] == 63.0
    assert single_image_scores["Bleu_4"] == 53.73
    assert single_image_scores["ROUGE_L"] == 83.33
    assert single_image_scores["CIDEr"] == 0.0
    assert single_image_scores["METEOR"] == pytest.approx(45.88, abs=0.011)


@needs_java
def test_scores_are_rounded_floats(unrelated_scores: dict[str, Any]) -> None:
    for name in METRICS:
        value = unrelated_scores[name]
        assert isinstance(value, float) and value == round(value, 2)
    json.dumps(unrelated_scores)


@needs_java
def test_spice_skipped_with_reason_when_it_cannot_run(identical_scores: dict[str, Any]) -> None:
    reason = spice_unavailable_reason()
    if reason is None:  # CoreNLP jars present: SPICE was attempted and either ran or says why it failed
        assert ("SPICE" in identical_scores) != ("SPICE" in identical_scores["skipped"])
    else:
        assert "SPICE" not in identical_scores
        assert identical_scores["skipped"] == {"SPICE": reason}
        assert "stanford-corenlp" in reason


@needs_java
def test_no_java_process_left_behind(unrelated_scores: dict[str, Any]) -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc")
    assert _java_children() == []  # METEOR's java process was closed after scoring


@needs_java
def test_tokenizer_alignment_survives_line_breaks_and_empty_captions() -> None:
    captions = ["Two dogs\rplaying.", "", "A café, naïve!", "...", "last\u2028one", ""]
    assert caption_metric._ptb_tokenize(captions) == ["two dogs playing", "", "a café naïve", "", "last one", ""]


def test_missing_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(JavaNotFoundError, match="default-jre-headless"):
        caption_scores(REFERENCES, IDENTICAL)
    assert "java is not on PATH" in (spice_unavailable_reason() or "")


# --------------------------------------------------------------------------------------------------------------
# Validation errors (raised before java starts)
# --------------------------------------------------------------------------------------------------------------


def test_candidate_without_references() -> None:
    with pytest.raises(CaptionFormatError, match=r"image_id 7 has no reference captions"):
        caption_scores(REFERENCES, {1: "a dog", 7: "a cat"})


def test_empty_candidates() -> None:
    with pytest.raises(CaptionFormatError, match="no candidate captions"):
        caption_scores(REFERENCES, {})


def test_bad_caption_types() -> None:
    with pytest.raises(CaptionFormatError, match="caption of image 1 has type NoneType"):
        caption_scores(REFERENCES, {1: None})  # type: ignore[dict-item]
    with pytest.raises(CaptionFormatError, match="image_id 1 needs a non-empty list"):
        caption_scores({1: []}, {1: "a dog"})
    with pytest.raises(CaptionFormatError, match="image_id 1 needs a non-empty list"):
        caption_scores({1: "a dog"}, {1: "a dog"})  # type: ignore[dict-item]


def _write(path: Path, content: Any) -> Path:
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def _annotation_file(tmp_path: Path) -> Path:
    annotations = {
        "images": [{"id": 1}, {"id": 2}],
        "annotations": [
            {"image_id": 1, "id": 1, "caption": "a dog"},
            {"image_id": 2, "id": 2, "caption": "a cat"},
        ],
    }
    return _write(tmp_path / "ann.json", annotations)


def test_file_errors(tmp_path: Path) -> None:
    ann = _annotation_file(tmp_path)
    unknown = _write(tmp_path / "unknown.json", [{"image_id": 1, "caption": "x"}, {"image_id": 5, "caption": "y"}])
    message = r"unknown\.json: image_id 5 has no reference captions in .*ann\.json"
    with pytest.raises(CaptionFormatError, match=message):
        score_caption_files(ann, unknown)
    duplicate = _write(tmp_path / "dup.json", [{"image_id": 2, "caption": "x"}, {"image_id": 2, "caption": "y"}])
    message = r"dup\.json: image_id 2 has two captions \(results\[0\] and results\[1\]\)"
    with pytest.raises(CaptionFormatError, match=message):
        score_caption_files(ann, duplicate)
    empty = _write(tmp_path / "empty.json", [])
    with pytest.raises(CaptionFormatError, match=r"empty\.json: the results list is empty"):
        score_caption_files(ann, empty)
    no_caption = _write(tmp_path / "nocap.json", [{"image_id": 1}])
    with pytest.raises(CaptionFormatError, match=r"nocap\.json: results\[0\]\.caption missing"):
        score_caption_files(ann, no_caption)
    not_a_list = _write(tmp_path / "obj.json", {"image_id": 1, "caption": "x"})
    with pytest.raises(CaptionFormatError, match=r"obj\.json: expected a list"):
        score_caption_files(ann, not_a_list)
    broken = tmp_path / "broken.json"
    broken.write_text("[{", encoding="utf-8")
    with pytest.raises(CaptionFormatError, match=r"broken\.json: invalid JSON at line"):
        score_caption_files(ann, broken)
    bad_ann = _write(tmp_path / "bad_ann.json", {"annotations": [{"image_id": "1", "caption": "a"}]})
    with pytest.raises(CaptionFormatError, match=r"bad_ann\.json: annotations\[0\]\.image_id: expected int, got str"):
        score_caption_files(bad_ann, unknown)


def test_format_error_is_a_value_error() -> None:
    assert issubclass(CaptionFormatError, ValueError)
