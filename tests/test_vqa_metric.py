"""Golden tests of the official VQA v2 accuracy (mmadapt.eval.vqa_metric).

Every expected number is worked out by hand from the official algorithm (GT-Vision-Lab/VQA vqaEval.py):
normalise only when the humans disagree, then the mean over the leave-one-out subsets of min(matches / 3, 1).
With 10 humans and k of them equal to the prediction: k=0 → 0, k=1 → (9·1/3 + 1·0)/10 = 0.3,
k=2 → (8·2/3 + 2·1/3)/10 = 0.6, k=3 → (7·1 + 3·2/3)/10 = 0.9, k≥4 → 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mmadapt.eval.vqa_metric import (
    VQAFormatError,
    normalize_answer,
    process_punctuation,
    question_accuracy,
    score_vqa_files,
    vqa_accuracy,
)


def _annotation(
    question_id: int, answers: list[str], question_type: str = "what is", answer_type: str = "other"
) -> dict[str, Any]:
    return {
        "question_id": question_id,
        "image_id": question_id // 10,
        "question_type": question_type,
        "answer_type": answer_type,
        "answers": [
            {"answer": answer, "answer_confidence": "yes", "answer_id": position + 1}
            for position, answer in enumerate(answers)
        ],
        "multiple_choice_answer": answers[0],
    }


def _files(annotations: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    questions = {
        "questions": [
            {"image_id": a["image_id"], "question": "?", "question_id": a["question_id"]} for a in annotations
        ]
    }
    return questions, {"annotations": annotations}


def _score_one(prediction: str, humans: list[str]) -> float:
    """perQuestion score (×100, rounded) of one question through the full vqa_accuracy path."""
    questions, annotations = _files([_annotation(1, humans)])
    result = vqa_accuracy(questions, annotations, [{"question_id": 1, "answer": prediction}])
    assert result["overall"] == result["perQuestion"][1]
    return result["perQuestion"][1]


# --------------------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("two", "2"),
        ("Ten", "10"),
        ("none", "0"),
        ("a dog", "dog"),
        ("The Two Dogs!", "2 dogs"),  # "!" touches no space → becomes a space; article dropped; number word
        ("an apple", "apple"),
        ("yes.", "yes"),  # period not followed by a digit is removed
        ("2.5", "2.5"),  # period before a digit is kept
        ("t-shirt", "t shirt"),  # punctuation not touching a space → space
        ("red, white", "red white"),  # "," touches a space → removed
        ("a,b", "b"),  # → "a b" → article "a" dropped
        ("3,000", "3000"),  # digit,digit → every mark removed
        ("1,000 (approx)", "1000 approx"),
        ("dont", "don't"),
        ("Dont", "don't"),  # lower-cased before the contraction table
        ("isnt it", "isn't it"),
        ("it's", "it's"),  # the apostrophe is not in the punctuation list
        ("  Yes  ", "yes"),
        ("what's up?", "what's up"),
        ("", ""),
    ],
)
def test_normalize_answer(raw: str, normalised: str) -> None:
    assert normalize_answer(raw) == normalised


def test_period_strip_removes_at_most_32_periods() -> None:
    # Official quirk: periodStrip.sub("", text, re.UNICODE) passes re.UNICODE (== 32) as `count`.
    assert process_punctuation("x" + "." * 40) == "x" + "." * 8


# --------------------------------------------------------------------------------------------------------------
# One question: normalisation branch and leave-one-out values
# --------------------------------------------------------------------------------------------------------------


def test_number_word_matches_digit_when_humans_disagree() -> None:
    humans = ["2"] * 9 + ["3"]
    assert _score_one("two", humans) == 100.0
    assert _score_one("Two", humans) == 100.0


def test_identical_humans_disable_normalisation() -> None:
    # Ten identical human answers: the official scorer compares the raw (stripped) strings.
    assert _score_one("Two", ["2"] * 10) == 0.0
    assert _score_one("two", ["2"] * 10) == 0.0
    assert _score_one("Yes", ["yes"] * 10) == 0.0
    assert _score_one("dont", ["don't"] * 10) == 0.0
    assert _score_one("2", ["2"] * 10) == 100.0
    assert _score_one(" 2\n", ["2"] * 10) == 100.0  # the tab/newline strip happens in both branches
    # Unanimity is judged after the strip: "yes " and "yes" are the same answer → still no normalisation.
    assert _score_one("Yes", ["yes"] * 9 + ["yes \t"]) == 0.0
    # Mixed answers → normalisation → the same predictions now match.
    assert _score_one("Two", ["2"] * 9 + ["3"]) == 100.0
    assert _score_one("Yes", ["yes"] * 9 + ["no"]) == 100.0


def test_articles() -> None:
    assert _score_one("the dog", ["dog"] * 5 + ["a dog"] * 3 + ["cat"] * 2) == 100.0
    assert _score_one("dog", ["a dog"] + ["cat"] * 9) == 30.0  # 1 match after normalisation


def test_punctuation() -> None:
    assert _score_one("yes.", ["yes"] * 9 + ["no"]) == 100.0
    assert _score_one("t-shirt", ["t shirt"] * 2 + ["shirt"] * 8) == 60.0  # 2 matches
    assert _score_one("3,000", ["3000"] * 3 + ["many"] * 7) == 90.0  # 3 matches: (7·1 + 3·2/3)/10
    # "2.5" keeps its period: 1 match ("2.5"), not 9 ("25").
    assert _score_one("2.5", ["2.5"] + ["25"] * 9) == 30.0


def test_contractions() -> None:
    assert _score_one("dont", ["don't"] * 4 + ["no"] * 6) == 100.0
    assert _score_one("dont", ["don't"] + ["no"] * 9) == 30.0


@pytest.mark.parametrize(
    ("matches", "expected"),
    [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)],
)
def test_leave_one_out_values(matches: int, expected: float) -> None:
    humans = ["red"] * matches + ["blue", "green"] * 5
    humans = humans[:10]
    assert question_accuracy("red", humans) == pytest.approx(expected, abs=1e-12)
    assert _score_one("red", humans) == round(100 * expected, 2)


def test_other_than_ten_answers_is_allowed() -> None:
    # 3 humans ["yes", "yes", "no"], prediction "yes": subsets without each human have 1, 1, 2 matches
    # → (1/3 + 1/3 + 2/3) / 3 = 4/9.
    assert question_accuracy("yes", ["yes", "yes", "no"]) == pytest.approx(4 / 9)
    assert _score_one("yes", ["yes", "yes", "no"]) == 44.44
    # A single human: the only leave-one-out subset is empty, so every prediction scores 0.
    assert _score_one("yes", ["yes"]) == 0.0


def test_question_accuracy_needs_answers() -> None:
    with pytest.raises(ValueError, match="at least one"):
        question_accuracy("yes", [])


# --------------------------------------------------------------------------------------------------------------
# Aggregation, rounding, output format
# --------------------------------------------------------------------------------------------------------------


def _four_questions() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    annotations = [
        _annotation(10, ["red"] * 10, "what color", "other"),  # "red" → 1.0
        _annotation(20, ["blue"] + ["green"] * 9, "what color", "other"),  # "blue" → 0.3
        _annotation(30, ["2"] * 2 + ["3"] * 8, "how many", "number"),  # "two" → 0.6
        _annotation(40, ["yes"] * 10, "is the", "yes/no"),  # "no" → 0.0
    ]
    results = [
        {"question_id": 40, "answer": "no"},
        {"question_id": 30, "answer": "two"},
        {"question_id": 20, "answer": "blue"},
        {"question_id": 10, "answer": "red"},
    ]
    questions, annotations_file = _files(annotations)
    return questions, annotations_file, results


def test_aggregation_per_type_and_rounding() -> None:
    questions, annotations, results = _four_questions()
    scores = vqa_accuracy(questions, annotations, results)
    assert list(scores) == ["overall", "perAnswerType", "perQuestionType", "perQuestion"]
    assert scores["perQuestion"] == {10: 100.0, 20: 30.0, 30: 60.0, 40: 0.0}
    assert scores["overall"] == 47.5  # (1 + 0.3 + 0.6 + 0) / 4
    assert scores["perQuestionType"] == {"what color": 65.0, "how many": 60.0, "is the": 0.0}
    assert scores["perAnswerType"] == {"other": 65.0, "number": 60.0, "yes/no": 0.0}
    # JSON-serialisable; question ids become strings there.
    assert json.loads(json.dumps(scores))["perQuestion"]["20"] == 30.0


def test_rounding_to_two_decimals() -> None:
    annotations = [
        _annotation(1, ["blue"] + ["green"] * 9),  # "blue" → 0.3
        _annotation(2, ["blue"] * 2 + ["green"] * 8),  # "blue" → 0.6
        _annotation(3, ["blue"] * 10),  # "blue" → 1.0
    ]
    results = [{"question_id": qid, "answer": "blue"} for qid in (1, 2, 3)]
    scores = vqa_accuracy(None, {"annotations": annotations}, results)
    assert scores["overall"] == 63.33  # 100 · 1.9 / 3 = 63.333…
    annotations = [_annotation(1, ["a"] * 10), _annotation(2, ["b"] * 10), _annotation(3, ["c"] * 10)]
    results = [{"question_id": qid, "answer": answer} for qid, answer in ((1, "a"), (2, "x"), (3, "x"))]
    assert vqa_accuracy(None, {"annotations": annotations}, results)["overall"] == 33.33


# --------------------------------------------------------------------------------------------------------------
# Missing results
# --------------------------------------------------------------------------------------------------------------


def test_missing_zero_is_the_default() -> None:
    questions, annotations, results = _four_questions()
    answered = [r for r in results if r["question_id"] != 10]  # drop the one scoring 1.0
    scores = vqa_accuracy(questions, annotations, answered)
    assert scores["perQuestion"][10] == 0.0
    assert scores["overall"] == 22.5  # (0 + 0.3 + 0.6 + 0) / 4
    assert scores["perQuestionType"]["what color"] == 15.0


def test_missing_skip_scores_answered_only() -> None:
    questions, annotations, results = _four_questions()
    answered = [r for r in results if r["question_id"] != 10]
    scores = vqa_accuracy(questions, annotations, answered, missing="skip")
    assert 10 not in scores["perQuestion"]
    assert scores["overall"] == 30.0  # (0.3 + 0.6 + 0) / 3
    assert scores["perQuestionType"]["what color"] == 30.0


def test_missing_error_names_the_questions() -> None:
    questions, annotations, results = _four_questions()
    answered = [r for r in results if r["question_id"] not in (10, 30)]
    with pytest.raises(VQAFormatError, match=r"no result for 2 of 4.*\[10, 30\]"):
        vqa_accuracy(questions, annotations, answered, missing="error")


def test_bad_missing_policy() -> None:
    questions, annotations, results = _four_questions()
    with pytest.raises(ValueError, match="missing must be one of"):
        vqa_accuracy(questions, annotations, results, missing="ignore")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------


def test_result_for_unknown_question() -> None:
    questions, annotations, results = _four_questions()
    with pytest.raises(VQAFormatError, match=r"results\[4\]\.question_id 99 is not in annotations"):
        vqa_accuracy(questions, annotations, results + [{"question_id": 99, "answer": "x"}])


def test_duplicate_result() -> None:
    questions, annotations, results = _four_questions()
    message = r"question_id 20 is answered twice \(results\[2\] and results\[4\]\)"
    with pytest.raises(VQAFormatError, match=message):
        vqa_accuracy(questions, annotations, results + [{"question_id": 20, "answer": "x"}])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a, r: a["annotations"][3].pop("answers"), r"annotations\[3\]\.answers missing"),
        (lambda a, r: a["annotations"][1].update(answers=[]), r"annotations\[1\]\.answers is empty"),
        (lambda a, r: a["annotations"][2]["answers"][4].pop("answer"), r"annotations\[2\]\.answers\[4\]\.answer"),
        (lambda a, r: a["annotations"][0].pop("question_type"), r"annotations\[0\]\.question_type missing"),
        (lambda a, r: a["annotations"][1].update(question_id=10), r"annotations\[1\]\.question_id 10 .* twice"),
        (lambda a, r: r[1].pop("answer"), r"results\[1\]\.answer missing"),
        (lambda a, r: r[0].update(answer=3), r"results\[0\]\.answer: expected str, got int"),
        (lambda a, r: r[2].pop("question_id"), r"results\[2\]\.question_id missing"),
    ],
)
def test_malformed_fields(mutate: Any, message: str) -> None:
    questions, annotations, results = _four_questions()
    mutate(annotations, results)
    with pytest.raises(VQAFormatError, match=message):
        vqa_accuracy(questions, annotations, results)


def test_annotations_not_in_questions() -> None:
    questions, annotations, results = _four_questions()
    questions["questions"] = questions["questions"][:2]
    with pytest.raises(VQAFormatError, match=r"2 annotated question\(s\) are not in questions.*\[30, 40\]"):
        vqa_accuracy(questions, annotations, results)


def test_wrong_top_level_types() -> None:
    questions, annotations, results = _four_questions()
    with pytest.raises(VQAFormatError, match="'annotations' list"):
        vqa_accuracy(questions, {"questions": []}, results)
    with pytest.raises(VQAFormatError, match="expected a list"):
        vqa_accuracy(questions, annotations, {"results": results})  # type: ignore[arg-type]
    with pytest.raises(VQAFormatError, match="nothing to score"):
        vqa_accuracy(questions, annotations, [], missing="skip")


def test_format_error_is_a_value_error() -> None:
    assert issubclass(VQAFormatError, ValueError)


# --------------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------------


def _write(path: Path, content: Any) -> Path:
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def test_score_vqa_files(tmp_path: Path) -> None:
    questions, annotations, results = _four_questions()
    scores = score_vqa_files(
        _write(tmp_path / "q.json", questions),
        _write(tmp_path / "a.json", annotations),
        _write(tmp_path / "r.json", results),
    )
    assert scores == vqa_accuracy(questions, annotations, results)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    questions, annotations, results = _four_questions()
    q = _write(tmp_path / "q.json", questions)
    a = _write(tmp_path / "a.json", annotations)
    broken = tmp_path / "broken_results.json"
    broken.write_text('[{"question_id": 10, "answer": "red"', encoding="utf-8")
    with pytest.raises(VQAFormatError, match=r"results file .*broken_results\.json: invalid JSON at line 1"):
        score_vqa_files(q, a, broken)
    r = _write(tmp_path / "r.json", results + [{"question_id": 7, "answer": "x"}])
    message = r"r\.json: results\[4\]\.question_id 7 is not in annotations file .*a\.json"
    with pytest.raises(VQAFormatError, match=message):
        score_vqa_files(q, a, r)
    del annotations["annotations"][3]["answers"]
    a_bad = _write(tmp_path / "a_bad.json", annotations)
    with pytest.raises(VQAFormatError, match=r"a_bad\.json: annotations\[3\]\.answers missing"):
        score_vqa_files(q, a_bad, _write(tmp_path / "r2.json", results))
