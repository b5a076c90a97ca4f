"""Video question answering in the MSRVTT-QA / MSVD-QA file format, scored as VQA.

The format (one JSON file per split, a list)::

    [{"id": 0, "video_id": 7010, "question": "what is a man doing?", "answer": "cook"}, ...]

MSRVTT-QA names videos ``video{video_id}.mp4`` (default ``template``); MSVD-QA's files carry the clip name in
``"video"`` (e.g. ``"-4wsuPCjDBc_5_15"``) — use ``template: "{video}.avi"``. Each question becomes a
:class:`~mmadapt.data.formats.vqa_v2.VQASample` whose ``image_path`` is the video file, and
:func:`write_vqa_files` writes the VQA v2 questions / annotations equivalents (the one answer repeated ten
times), so the official VQA accuracy of :mod:`mmadapt.eval.vqa_metric` scores it: with ten identical answers
it is exact match (the official scorer normalises answers only when the ten differ) — the standard video-QA
accuracy.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from mmadapt.config import DatasetConfig
from mmadapt.data.formats.vqa_v2 import VQASample
from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.errors import ConfigError, DataError
from mmadapt.io._files import template_path

PathLike = str | os.PathLike[str]
DEFAULT_TEMPLATE = "video{video_id}.mp4"


@dataclass
class MSRVTTQAConfig(DatasetConfig):
    """Video QA (MSRVTT-QA, MSVD-QA): ``questions`` = the JSON list of {id, video_id, question, answer},
    videos under ``image_root`` (default: the file's folder) named by ``image_template`` (default
    ``video{video_id}.mp4``)."""

    questions: str | None = None
    image_root: str | None = None
    image_template: str | None = None


@register_format("msrvtt_qa", MSRVTTQAConfig, serves=("vqa",))
def read_msrvtt_qa(cfg: MSRVTTQAConfig, ctx: ReadContext) -> Split:
    if cfg.questions is None:
        raise ConfigError(f"{ctx.where}.questions: required for format msrvtt_qa (the QA JSON list)")
    return Split("vqa", load_video_qa(cfg.questions, cfg.image_root, cfg.image_template))


def load_video_qa(path: PathLike, video_root: PathLike | None = None, template: str | None = None) -> list[VQASample]:
    """Read an MSRVTT-QA / MSVD-QA JSON list; ``video_root`` defaults to the file's folder."""
    path = Path(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(items, list) or not items:
        raise DataError(f"{path}: expected a non-empty JSON list of questions")
    root = Path(video_root) if video_root is not None else path.parent
    template = template or DEFAULT_TEMPLATE
    samples, seen = [], set()
    for i, item in enumerate(items):
        where = f"{path}: [{i}]"
        if not isinstance(item, dict):
            raise DataError(f"{where}: expected an object")
        missing = [k for k in ("question", "answer") if not isinstance(item.get(k), str)]
        if "video_id" not in item and "video" not in item:
            missing.append("video_id")
        if missing:
            raise DataError(f"{where}: missing or non-string field(s) {', '.join(missing)}")
        qid = item.get("id", i)
        if isinstance(qid, str) and qid.strip().isdigit():  # some MSVD-QA copies write ids as strings
            qid = int(qid)
        if isinstance(qid, bool) or not isinstance(qid, int):
            raise DataError(f"{where}.id: expected an integer question id, got {qid!r}")
        if qid in seen:
            raise DataError(f"{where}.id: duplicate question id {qid}")
        seen.add(qid)
        video_id = item.get("video_id", i)
        samples.append(VQASample(question_id=qid, image_id=int(video_id) if str(video_id).isdigit() else i,
                                 question=item["question"], image_path=template_path(root, template, item, where),
                                 answers=[item["answer"]] * 10,
                                 multiple_choice_answer=item["answer"], question_type=_question_type(item["question"]),
                                 answer_type="other"))
    return samples


def write_vqa_files(samples: list[VQASample], questions: PathLike, annotations: PathLike) -> tuple[Path, Path]:
    """The VQA v2 questions + annotations JSON of ``samples`` (for the official scorer)."""
    q = {"info": {}, "task_type": "Open-Ended", "data_type": "video", "data_subtype": "video", "license": {},
         "questions": [{"question_id": s.question_id, "image_id": s.image_id, "question": s.question}
                       for s in samples]}
    a = {"info": {}, "data_type": "video", "data_subtype": "video", "license": {},
         "annotations": [{"question_id": s.question_id, "image_id": s.image_id, "question_type": s.question_type,
                          "answer_type": s.answer_type, "multiple_choice_answer": s.multiple_choice_answer,
                          "answers": [{"answer": ans, "answer_confidence": "yes", "answer_id": k + 1}
                                      for k, ans in enumerate(s.answers)]} for s in samples]}
    out = []
    for path, obj in ((Path(questions), q), (Path(annotations), a)):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(obj))
        tmp.replace(path)
        out.append(path)
    return out[0], out[1]


def _question_type(question: str) -> str:
    """The first word (what / who / how / where / when ...), the grouping MSRVTT-QA results are reported in."""
    words = question.strip().lower().split()
    return words[0] if words else ""
