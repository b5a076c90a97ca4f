"""VQA v2 accuracy, identical to the official VQA evaluation.

Reference: ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` of the official VQA API (GT-Vision-Lab/VQA, master
branch). This module is a re-implementation of its ``VQAEval.evaluate`` in plain typed Python; scores are the same
numbers, rounded the same way. What it does, per question:

1. The predicted answer and each human answer get ``"\\n"`` and ``"\\t"`` replaced by spaces, then
   ``strip()``.
2. Only if the human answers are **not all identical** (official: ``if len(set(gtAnswers)) > 1``) are the human
   answers *and* the prediction normalised with :func:`normalize_answer` (punctuation, number words → digits,
   articles dropped, contractions restored, lower case). When all humans gave the very same string, the raw
   (stripped) prediction must equal it exactly: ``"Two"`` against ten ``"2"`` scores 0, while ``"Two"`` against
   ``["2"] * 9 + ["3"]`` is normalised to ``"2"`` and scores 1. This is the official behaviour, kept on purpose.
3. Accuracy = mean over the leave-one-out subsets of the humans (one subset per human, that human left out) of
   ``min(#humans in the subset whose answer equals the prediction / 3, 1)``. With ten humans, one agreeing human
   gives ``(9 * 1/3 + 1 * 0) / 10 = 0.3``, two give ``(8 * 2/3 + 2 * 1/3) / 10 = 0.6``, three or more give 1.
4. ``overall`` is the mean over questions, ``perQuestionType`` / ``perAnswerType`` the means over the questions of
   each type, all as ``round(100 * sum / count, 2)``; ``perQuestion`` maps question id → ``round(100 * acc, 2)``.

Older copies of ``vqaEval.py`` (still vendored by many repositories, e.g. LAVIS) always normalise the prediction
and apply only ``processPunctuation`` to disagreeing human answers; this module follows the current master.
Other toolkits (lmms-eval, OpenFlamingo) normalise differently again.

Deliberate differences from the official script, none of which changes a score on well-formed official data:

* Missing predictions: the official API asserts that the results cover exactly the annotated questions. Here
  ``missing="zero"`` (default) scores an unanswered question 0 (a run that lost samples must not look better),
  ``missing="error"`` raises like the official API, ``missing="skip"`` scores only the answered questions.
* Malformed input raises :class:`VQAFormatError` naming the file / field / question id (the official script
  crashes with a ``KeyError`` or an ``AssertionError``). Duplicate question ids in the results are an error
  (the official loader silently keeps the last one).
* The number of human answers need not be 10 (official data always has 10): the leave-one-out runs over however
  many there are; with a single human answer every prediction scores 0 (the only subset is empty).
* Leave-one-out is by position. The official code removes from the subset every answer record *equal* to the
  left-out one (``item != gtAnsDatum`` on the whole dict); official records carry distinct ``answer_id`` values,
  so that is the same thing.
* The official ``processPunctuation`` calls ``periodStrip.sub("", text, re.UNICODE)``, whose third positional
  argument is ``count``: at most ``int(re.UNICODE) == 32`` periods are removed. Reproduced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, NamedTuple

from mmadapt.errors import DataError
from mmadapt.io.json_records import read_json, require

__all__ = [
    "VQAFormatError",
    "MissingPolicy",
    "normalize_answer",
    "process_punctuation",
    "process_digit_article",
    "question_accuracy",
    "vqa_accuracy",
    "score_vqa_files",
]

MissingPolicy = Literal["zero", "error", "skip"]
_MISSING_POLICIES: tuple[str, ...] = ("zero", "error", "skip")
_DECIMALS = 2  # official VQAEval(n=2)


class VQAFormatError(DataError):
    """VQA questions / annotations / results that cannot be scored; the message names the file and field.

    A :class:`~mmadapt.errors.DataError`, hence also a ``ValueError``.
    """


# ---------------------------------------------------------------------------------------------------------------
# Answer normalisation (official processPunctuation + processDigitArticle)
# ---------------------------------------------------------------------------------------------------------------

# Removed (or turned into a space, see process_punctuation). Note: no "." (handled apart), no "'" and no ":".
_PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!",
)  # fmt: skip
# A comma between two digits ("3,000") switches every punctuation mark to plain removal.
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
# Official pattern: "(?!<=\d)(\.)(?!\d)". Its "(?!<=\d)" is a typo for a look-behind: as a look-ahead for "<="
# at the position of a "." it always succeeds, so the pattern is "a period not followed by a digit".
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
_MAX_PERIODS_REMOVED = 32  # official passes re.UNICODE (== 32) as the positional `count` of Pattern.sub

_NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

# The official table, entry for entry (including its oddities: keys with capitals never match because words are
# lower-cased first, and "somebody'd" maps to "somebodyd").
_CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip


def process_punctuation(text: str) -> str:
    """Official ``processPunctuation``: drop or space out punctuation, drop periods not followed by a digit.

    A mark is removed outright when it touches a space anywhere in ``text`` (``"yes ,"``) or when ``text`` has a
    comma between digits (``"3,000"`` → ``"3000"``); otherwise it becomes a space
    (``"t-shirt"`` → ``"t shirt"``).
    The tests look at the *input* text, not the text as it is being rewritten. Then every ``"."`` not followed by
    a digit is removed (``"yes."`` → ``"yes"``, ``"2.5"`` kept), at most 32 of them (official quirk).
    """
    strip_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        if strip_all or (mark + " ") in text or (" " + mark) in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out, count=_MAX_PERIODS_REMOVED)


def process_digit_article(text: str) -> str:
    """Official ``processDigitArticle``: lower-case, number words → digits, drop articles, restore contractions.

    Words are split on whitespace and re-joined with single spaces: ``"Two  Dogs"`` → ``"2 dogs"``,
    ``"a dog"`` → ``"dog"``, ``"dont"`` → ``"don't"``.
    """
    words = [_NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES)


@lru_cache(maxsize=1 << 16)
def normalize_answer(answer: str) -> str:
    """The official answer normalisation: :func:`process_punctuation` then :func:`process_digit_article`.

    Note that the official scorer applies it only to questions whose human answers disagree (module docstring).
    """
    return process_digit_article(process_punctuation(answer))


def _clean_whitespace(answer: str) -> str:
    """Official first step for predictions and human answers: tabs / newlines → spaces, then ``strip()``."""
    return answer.replace("\n", " ").replace("\t", " ").strip()


# ---------------------------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------------------------


def question_accuracy(answer: str, human_answers: Sequence[str]) -> float:
    """Official VQA accuracy of one predicted ``answer`` against the human answers, in [0, 1] (not ×100).

    Args:
        answer: the predicted answer, raw.
        human_answers: the human answers (10 in VQA v2), raw.

    Raises:
        ValueError: ``human_answers`` is empty.
    """
    if len(human_answers) == 0:
        raise ValueError("question_accuracy needs at least one human answer")
    prediction = _clean_whitespace(answer)
    humans = [_clean_whitespace(human) for human in human_answers]
    if len(set(humans)) > 1:  # official quirk: normalise only when the humans disagree
        humans = [normalize_answer(human) for human in humans]
        prediction = normalize_answer(prediction)
    total_matches = sum(human == prediction for human in humans)
    # Leave-one-out: the subset without human i has `total_matches - [human i matched]` matches.
    subset_scores = [min(1, float(total_matches - (human == prediction)) / 3) for human in humans]
    return float(sum(subset_scores)) / len(subset_scores)


class _Annotation(NamedTuple):
    question_type: str
    answer_type: str
    answers: tuple[str, ...]


def vqa_accuracy(
    questions: Mapping[str, Any] | None,
    annotations: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    missing: MissingPolicy = "zero",
) -> dict[str, Any]:
    """Official VQA v2 accuracy of ``results`` (already parsed JSON).

    Args:
        questions: the questions file, ``{"questions": [{"image_id", "question", "question_id"}, ...]}``; used to
            check that every annotated question exists there (catches mixed-up splits). ``None`` skips the check.
        annotations: the annotations file, ``{"annotations": [{"question_id", "question_type", "answer_type",
            "answers": [{"answer", ...}, ...], ...}, ...]}``. The scored question set (official: the annotations).
        results: official results format, ``[{"question_id": int, "answer": str}, ...]``.
        missing: what to do with annotated questions that have no result: ``"zero"`` (default) scores them 0,
            ``"error"`` raises :class:`VQAFormatError` (the official API asserts), ``"skip"`` leaves them out.

    Returns:
        ``{"overall": float, "perAnswerType": {type: float}, "perQuestionType": {type: float},
        "perQuestion": {question_id: float}}``, all percentages rounded to 2 decimals like the official scorer;
        types and question ids in annotation order. JSON-serialisable (question ids become strings in JSON).

    Raises:
        VQAFormatError: malformed input, a result whose question id is not annotated, duplicate result ids,
            missing results with ``missing="error"``, or nothing to score.
    """
    return _vqa_accuracy(questions, annotations, results, missing, _Sources())


def score_vqa_files(
    questions_path: str | Path,
    annotations_path: str | Path,
    results_path: str | Path,
    missing: MissingPolicy = "zero",
) -> dict[str, Any]:
    """:func:`vqa_accuracy` on the official JSON files; errors name the offending file."""
    sources = _Sources(
        questions=f"questions file {questions_path}",
        annotations=f"annotations file {annotations_path}",
        results=f"results file {results_path}",
    )
    questions = _load_json(questions_path, sources.questions)
    annotations = _load_json(annotations_path, sources.annotations)
    results = _load_json(results_path, sources.results)
    return _vqa_accuracy(questions, annotations, results, missing, sources)


class _Sources(NamedTuple):
    """How error messages name each input."""

    questions: str = "questions"
    annotations: str = "annotations"
    results: str = "results"


def _vqa_accuracy(
    questions: Any, annotations: Any, results: Any, missing: str, sources: _Sources
) -> dict[str, Any]:
    if missing not in _MISSING_POLICIES:
        raise ValueError(f"missing must be one of {_MISSING_POLICIES}, got {missing!r}")
    annotated = _parse_annotations(annotations, sources.annotations)
    if questions is not None:
        _check_questions(questions, annotated, sources)
    predictions = _parse_results(results, annotated, sources)

    unanswered = [question_id for question_id in annotated if question_id not in predictions]
    if unanswered and missing == "error":
        raise VQAFormatError(
            f"{sources.results}: no result for {len(unanswered)} of {len(annotated)} annotated questions "
            f"(first question_id: {unanswered[:5]})"
        )

    per_question: dict[Any, float] = {}
    by_question_type: dict[str, list[float]] = {}
    by_answer_type: dict[str, list[float]] = {}
    for question_id, annotation in annotated.items():  # annotation order, like the official loop
        if question_id in predictions:
            accuracy = question_accuracy(predictions[question_id], annotation.answers)
        elif missing == "zero":
            accuracy = 0.0
        else:  # "skip"
            continue
        per_question[question_id] = accuracy
        by_question_type.setdefault(annotation.question_type, []).append(accuracy)
        by_answer_type.setdefault(annotation.answer_type, []).append(accuracy)
    if not per_question:
        raise VQAFormatError(f"{sources.results}: nothing to score (no answered annotated question)")

    return {
        "overall": _percent_mean(list(per_question.values())),
        "perAnswerType": {kind: _percent_mean(values) for kind, values in by_answer_type.items()},
        "perQuestionType": {kind: _percent_mean(values) for kind, values in by_question_type.items()},
        "perQuestion": {qid: round(100 * accuracy, _DECIMALS) for qid, accuracy in per_question.items()},
    }


def _percent_mean(values: list[float]) -> float:
    """Official ``setAccuracy`` arithmetic, operation for operation: ``round(100 * sum / count, 2)``."""
    return round(100 * float(sum(values)) / len(values), _DECIMALS)


# ---------------------------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------------------------


def _load_json(path: str | Path, source: str) -> Any:
    return read_json(path, top=None, error=VQAFormatError, file=source)


def _field(record: Any, key: str, kind: type | tuple[type, ...], where: str, source: str) -> Any:
    """``record[key]`` checked to be of ``kind``; ``where`` is the record's path, e.g. ``annotations[3]``."""
    return require(record, key, kind, source, where, error=VQAFormatError)


def _parse_annotations(annotations: Any, source: str) -> dict[Any, _Annotation]:
    """Question id → annotation, in file order; every field the scorer reads is checked."""
    if not isinstance(annotations, Mapping) or not isinstance(annotations.get("annotations"), list):
        raise VQAFormatError(f"{source}: expected an object with an 'annotations' list")
    parsed: dict[Any, _Annotation] = {}
    for index, record in enumerate(annotations["annotations"]):
        where = f"annotations[{index}]"
        question_id = _field(record, "question_id", (int, str), where, source)
        if question_id in parsed:
            raise VQAFormatError(f"{source}: {where}.question_id {question_id!r} appears twice")
        question_type = _field(record, "question_type", str, where, source)
        answer_type = _field(record, "answer_type", str, where, source)
        answers = _field(record, "answers", list, where, source)
        if not answers:
            raise VQAFormatError(f"{source}: {where}.answers is empty (question_id {question_id!r})")
        texts = tuple(
            _field(answer, "answer", str, f"{where}.answers[{position}]", source)
            for position, answer in enumerate(answers)
        )
        parsed[question_id] = _Annotation(question_type, answer_type, texts)
    return parsed


def _check_questions(questions: Any, annotated: Mapping[Any, _Annotation], sources: _Sources) -> None:
    if not isinstance(questions, Mapping) or not isinstance(questions.get("questions"), list):
        raise VQAFormatError(f"{sources.questions}: expected an object with a 'questions' list")
    known = {
        _field(record, "question_id", (int, str), f"questions[{index}]", sources.questions)
        for index, record in enumerate(questions["questions"])
    }
    orphans = [question_id for question_id in annotated if question_id not in known]
    if orphans:
        raise VQAFormatError(
            f"{sources.annotations}: {len(orphans)} annotated question(s) are not in {sources.questions} "
            f"(first question_id: {orphans[:5]}); are the files from the same split?"
        )


def _parse_results(results: Any, annotated: Mapping[Any, _Annotation], sources: _Sources) -> dict[Any, str]:
    """Question id → predicted answer; unknown and duplicate question ids are errors."""
    if not isinstance(results, list):
        raise VQAFormatError(
            f"{sources.results}: expected a list of {{'question_id', 'answer'}} objects, "
            f"got {type(results).__name__}"
        )
    predictions: dict[Any, str] = {}
    first_index: dict[Any, int] = {}
    for index, record in enumerate(results):
        where = f"results[{index}]"
        question_id = _field(record, "question_id", (int, str), where, sources.results)
        if question_id not in annotated:
            raise VQAFormatError(
                f"{sources.results}: {where}.question_id {question_id!r} is not in {sources.annotations}"
            )
        if question_id in predictions:
            raise VQAFormatError(
                f"{sources.results}: question_id {question_id!r} is answered twice "
                f"(results[{first_index[question_id]}] and {where})"
            )
        predictions[question_id] = _field(record, "answer", str, where, sources.results)
        first_index[question_id] = index
    return predictions
