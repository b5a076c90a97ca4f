"""Captioning metrics through ``pycocoevalcap``: BLEU-1..4, METEOR, ROUGE-L, CIDEr, and SPICE where it can run.

The pipeline is the COCO caption evaluation (``pycocoevalcap.eval.COCOEvalCap``): references and candidates are
tokenised with the Stanford PTB tokenizer (lower-cased, punctuation tokens dropped), then scored by the
``pycocoevalcap`` scorers. Differences from ``COCOEvalCap``, none of which changes a score:

* One tokenizer run (one JVM start) for references and candidates together, fed from a temporary directory
  instead of the package directory (which may be read-only). Every line break inside a caption (``\\r``,
  ``\\u2028``, ... not only ``\\n``) becomes a space: a stray ``\\r`` would otherwise shift every later caption
  onto the wrong image. Empty captions are not sent to the tokenizer (it drops a trailing empty line) and stay
  empty; an empty candidate scores 0.
* METEOR's long-lived ``java`` process is closed as soon as its score is read.
* SPICE needs Stanford CoreNLP jars that ``pycocoevalcap`` downloads on first use; offline that download fails
  (or hangs). SPICE is attempted only when the jars are already in ``pycocoevalcap/spice/lib``; otherwise, or if
  it fails, it is reported under ``"skipped"`` with the reason.
* Scores are ×100 and rounded to 2 decimals, as papers report them (CIDEr 1.1163 → 111.63).

CIDEr (its document frequencies) is computed over the scored images, so it depends on the set: scores on a few
images are not comparable with scores on a full split, and on a single image CIDEr is 0 whatever the caption.

Java is required (tokenizer, METEOR, SPICE); without ``java`` on ``PATH`` a :class:`JavaNotFoundError` says how
to install one.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mmadapt.errors import DataError, MMAdaptError
from mmadapt.io.json_records import read_json, require

__all__ = [
    "CaptionFormatError",
    "JavaNotFoundError",
    "caption_scores",
    "score_caption_files",
    "spice_unavailable_reason",
]

CaptionId = Hashable  # COCO image ids are ints; any hashable id works for in-memory use
_DECIMALS = 2
_BLEU_KEYS: tuple[str, ...] = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4")
_JAVA_HINT = "install a Java runtime, e.g. `apt-get install -y default-jre-headless`"
_SENTINEL = "end"  # last tokenizer line, so that no real caption is ever the (droppable) last line


class CaptionFormatError(DataError):
    """Caption references / results that cannot be scored; the message names the file and field.

    A :class:`~mmadapt.errors.DataError`, hence also a ``ValueError``.
    """


class JavaNotFoundError(MMAdaptError, RuntimeError):
    """``java`` is not on ``PATH``; the PTB tokenizer, METEOR and SPICE need it."""


# ---------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------


def caption_scores(
    references: Mapping[CaptionId, Sequence[str]],
    candidates: Mapping[CaptionId, str],
    *,
    spice: bool = True,
) -> dict[str, Any]:
    """COCO caption metrics of ``candidates`` against ``references``.

    Only the candidates' images are scored (like the official COCO evaluation, which scores the images of the
    results file); references of other images are ignored.

    Args:
        references: image id → reference captions (raw text, at least one per scored image).
        candidates: image id → the one generated caption (raw text); every id must be in ``references``.
        spice: set False to skip SPICE even where it could run (it is slow: a CoreNLP parse of every caption).

    Returns:
        ``{"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr": float, ["SPICE": float,]
        "skipped": {"SPICE": reason}}``: scores ×100 rounded to 2 decimals; ``"SPICE"`` is present only when it
        ran, otherwise ``"skipped"`` says why (``"skipped"`` is ``{}`` when SPICE ran).

    Raises:
        CaptionFormatError: no candidates, a candidate id without references, a caption that is not a string.
        JavaNotFoundError: ``java`` is not on ``PATH``.
    """
    return _caption_scores(references, candidates, spice, "references", "candidates")


def score_caption_files(
    annotations_path: str | Path, results_path: str | Path, *, spice: bool = True
) -> dict[str, Any]:
    """:func:`caption_scores` on the official COCO files.

    Args:
        annotations_path: COCO captions JSON, ``{"images": [{"id", ...}], "annotations": [{"image_id", "id",
            "caption"}, ...]}``.
        results_path: official COCO results, ``[{"image_id": int, "caption": str}, ...]``.
        spice: as in :func:`caption_scores`.

    Only the images in the results are scored (as ``COCOEvalCap`` does with ``params["image_id"] =
    cocoRes.getImgIds()``): annotated images without a result are ignored, not counted as 0.

    Raises:
        CaptionFormatError: malformed JSON or a missing / mistyped field, a result image id without reference
            captions in the annotations, an image id twice in the results, an empty results list.
    """
    annotations_source = f"annotations file {annotations_path}"
    results_source = f"results file {results_path}"
    references = _parse_references(_load_json(annotations_path, annotations_source), annotations_source)
    candidates = _parse_results(_load_json(results_path, results_source), results_source)
    return _caption_scores(references, candidates, spice, annotations_source, results_source)


def spice_unavailable_reason() -> str | None:
    """Why SPICE cannot run here (``None`` if it can be attempted), decided without any download attempt."""
    if shutil.which("java") is None:
        return f"java is not on PATH ({_JAVA_HINT})"
    from pycocoevalcap.spice import get_stanford_models as stanford  # light: no download at import

    lib = Path(stanford.SPICEDIR) / stanford.SPICELIB
    jars = (f"{stanford.JAR}.jar", f"{stanford.JAR}-models.jar")
    missing = [name for name in jars if not (lib / name).is_file()]
    if missing:
        return (
            f"Stanford CoreNLP jars {missing} are not in {lib}; pycocoevalcap downloads them on first use, "
            f"which needs internet (run `python -m pycocoevalcap.spice.get_stanford_models` once online)"
        )
    return None


# ---------------------------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------------------------


def _caption_scores(
    references: Any, candidates: Any, spice: bool, references_source: str, candidates_source: str
) -> dict[str, Any]:
    image_ids = _check_inputs(references, candidates, references_source, candidates_source)
    if shutil.which("java") is None:
        raise JavaNotFoundError(f"java is not on PATH: the PTB tokenizer and METEOR need it; {_JAVA_HINT}")

    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge

    # METEOR's JVM takes seconds to load its paraphrase table: start it first, let it load while we tokenize.
    meteor = Meteor()
    try:
        # One tokenizer run for everything: references of each image first, then the candidates.
        lines = [caption for image_id in image_ids for caption in references[image_id]]
        lines += [candidates[image_id] for image_id in image_ids]
        tokenized = iter(_ptb_tokenize(lines))
        gts = {image_id: [next(tokenized) for _ in references[image_id]] for image_id in image_ids}
        res = {image_id: [next(tokenized)] for image_id in image_ids}

        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores: dict[str, Any] = dict(zip(_BLEU_KEYS, bleu))
        scores["METEOR"] = meteor.compute_score(gts, res)[0]
    finally:
        _close_meteor(meteor)
    scores["ROUGE_L"] = Rouge().compute_score(gts, res)[0]
    scores["CIDEr"] = Cider().compute_score(gts, res)[0]

    skipped: dict[str, str] = {}
    reason = "disabled by the caller (spice=False)" if not spice else spice_unavailable_reason()
    if reason is None:
        spice_score, reason = _spice(gts, res)
        if spice_score is not None:
            scores["SPICE"] = spice_score
    if reason is not None:
        skipped["SPICE"] = reason

    rounded: dict[str, Any] = {name: round(100 * float(value), _DECIMALS) for name, value in scores.items()}
    rounded["skipped"] = skipped
    return rounded


def _ptb_tokenize(captions: Sequence[str]) -> list[str]:
    """``pycocoevalcap``'s PTBTokenizer on ``captions`` in one ``java`` run; one tokenised string per caption.

    Same command and post-processing as ``PTBTokenizer.tokenize`` (lower-cased, punctuation tokens removed).
    """
    from pycocoevalcap.tokenizer import ptbtokenizer

    # Any line boundary inside a caption would split it into two tokenizer lines: make it a space.
    flat = [" ".join(caption.splitlines()).strip() for caption in captions]
    to_send = [index for index, caption in enumerate(flat) if caption]  # empty lines may be dropped by java
    tokenized = [""] * len(flat)
    if not to_send:
        return tokenized

    jar_dir = Path(ptbtokenizer.__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="mmadapt-ptb-") as tmp:
        text_file = Path(tmp) / "captions.txt"
        text_file.write_text("\n".join([flat[index] for index in to_send] + [_SENTINEL]), encoding="utf-8")
        command = [
            "java", "-cp", ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR, "edu.stanford.nlp.process.PTBTokenizer",
            "-preserveLines", "-lowerCase", str(text_file),
        ]  # fmt: skip
        done = subprocess.run(command, cwd=jar_dir, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"PTB tokenizer failed (exit {done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}"
        )
    lines = done.stdout.decode("utf-8").split("\n")
    if len(lines) < len(to_send) + 1 or lines[len(to_send)].strip() != _SENTINEL:
        raise RuntimeError(
            f"PTB tokenizer returned {len(lines)} lines for {len(to_send)} captions: cannot align its output"
        )
    for index, line in zip(to_send, lines):
        words = line.rstrip().split(" ")
        tokenized[index] = " ".join(word for word in words if word not in ptbtokenizer.PUNCTUATIONS)
    return tokenized


def _close_meteor(meteor: Any) -> None:
    """Close pycocoevalcap's METEOR java process now rather than in ``Meteor.__del__`` at garbage collection.

    ``Meteor.compute_score`` holds its lock while talking to java and does not release it if that raises; its
    ``__del__`` would then block forever on the lock. Release it so that the later ``__del__`` (a no-op on the
    closed process) cannot hang.
    """
    _close_process(meteor.meteor_p)
    if meteor.lock.locked():
        meteor.lock.release()


def _close_process(process: subprocess.Popen[bytes]) -> None:
    """End a scorer's ``java`` child: close its stdin, kill it, reap it, close its pipes. Idempotent."""
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    if process.poll() is None:
        process.kill()
    process.wait()


def _spice(gts: dict[Any, list[str]], res: dict[Any, list[str]]) -> tuple[float | None, str | None]:
    """(SPICE score, None), or (None, why it failed). Only called when the CoreNLP jars are present."""
    from pycocoevalcap.spice.spice import Spice

    try:
        return float(Spice().compute_score(gts, res)[0]), None
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as error:
        return None, f"SPICE failed: {type(error).__name__}: {error}"


# ---------------------------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------------------------


def _check_inputs(
    references: Any, candidates: Any, references_source: str, candidates_source: str
) -> list[CaptionId]:
    """The candidate image ids (in order) after checking both mappings; raises :class:`CaptionFormatError`."""
    if not isinstance(references, Mapping):
        raise CaptionFormatError(f"{references_source}: expected a mapping image id → captions")
    if not isinstance(candidates, Mapping):
        raise CaptionFormatError(f"{candidates_source}: expected a mapping image id → caption")
    if not candidates:
        raise CaptionFormatError(f"{candidates_source}: no candidate captions to score")
    for image_id, caption in candidates.items():
        if not isinstance(caption, str):
            raise CaptionFormatError(
                f"{candidates_source}: caption of image {image_id!r} has type {type(caption).__name__}"
            )
        if image_id not in references:
            raise CaptionFormatError(
                f"{candidates_source}: image_id {image_id!r} has no reference captions in {references_source}"
            )
        refs = references[image_id]
        if isinstance(refs, str) or not isinstance(refs, Sequence) or len(refs) == 0:
            raise CaptionFormatError(
                f"{references_source}: image_id {image_id!r} needs a non-empty list of reference captions"
            )
        for position, ref in enumerate(refs):
            if not isinstance(ref, str):
                raise CaptionFormatError(
                    f"{references_source}: reference {position} of image {image_id!r} "
                    f"has type {type(ref).__name__}"
                )
    return list(candidates)


def _load_json(path: str | Path, source: str) -> Any:
    return read_json(path, top=None, error=CaptionFormatError, file=source)


def _field(record: Any, key: str, kind: type, where: str, source: str) -> Any:
    return require(record, key, kind, source, where, error=CaptionFormatError)


def _parse_references(data: Any, source: str) -> dict[int, list[str]]:
    """COCO captions file → image id → reference captions (file order)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("annotations"), list):
        raise CaptionFormatError(f"{source}: expected an object with an 'annotations' list")
    references: dict[int, list[str]] = {}
    for index, record in enumerate(data["annotations"]):
        where = f"annotations[{index}]"
        image_id = _field(record, "image_id", int, where, source)
        references.setdefault(image_id, []).append(_field(record, "caption", str, where, source))
    return references


def _parse_results(data: Any, source: str) -> dict[int, str]:
    """COCO results list → image id → caption; duplicate image ids and an empty list are errors."""
    if not isinstance(data, list):
        raise CaptionFormatError(
            f"{source}: expected a list of {{'image_id', 'caption'}} objects, got {type(data).__name__}"
        )
    if not data:
        raise CaptionFormatError(f"{source}: the results list is empty")
    candidates: dict[int, str] = {}
    first_index: dict[int, int] = {}
    for index, record in enumerate(data):
        where = f"results[{index}]"
        image_id = _field(record, "image_id", int, where, source)
        caption = _field(record, "caption", str, where, source)
        if image_id in candidates:
            raise CaptionFormatError(
                f"{source}: image_id {image_id} has two captions (results[{first_index[image_id]}] and {where})"
            )
        candidates[image_id] = caption
        first_index[image_id] = index
    return candidates
