"""Visual question answering, scored with the official VQA accuracy (images, video or any perceptual input).

Training target: the annotation's ``multiple_choice_answer`` (the most common human answer), or with
``train_answer: sampled`` one of the annotator answers drawn at every read. Evaluation answers either by
generation (greedy / beam search) or by ranking a candidate list (``answer_mode: rank``; default candidates:
every training answer), writes ``eval/<task>_results.json`` in the official results format and scores it
with the official VQA accuracy — against the split's VQA v2 files, or against files written from its
samples for formats stored otherwise (video QA, LLaVA conversations).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mmadapt.data.examples import Example
from mmadapt.data.formats.msrvtt_qa import write_vqa_files
from mmadapt.data.formats.vqa_v2 import VQASample, training_answer, write_vqa_results
from mmadapt.data.split import LabelSpace
from mmadapt.errors import ConfigError
from mmadapt.eval.vqa_metric import score_vqa_files
from mmadapt.io.shard_member import media_source
from mmadapt.registry import register
from mmadapt.tasks.base import EvalRun, Task, TextTaskConfig, predict_all, write_json


@dataclass
class VQATaskConfig(TextTaskConfig):
    """A VQA task: the text keys of every text task, and how it trains and answers."""

    # the training answer — the annotation's most common one, or ``sampled`` (eP-ALM's authors): drawn each
    # time the question is read, among its distinct annotator answers with weight min(1, 0.3 · count)
    train_answer: Literal["most_common", "sampled"] = "most_common"
    answer_mode: Literal["generate", "rank"] = "generate"
    candidates: str | None = None  # rank mode: a JSON list of answers; default: training answers
    rank_top_k: int = 16  # rank mode: candidates kept by first-token probability before full scoring


@register("tasks", "vqa")
class VQATask(Task):
    name = "vqa"
    sample_kind = "vqa"
    config_class = VQATaskConfig

    def _samples(self, which: str) -> list[VQASample]:
        return self.split(which).samples

    def _scoring_files(self, out_dir: Path) -> tuple[Path, Path | None]:
        """The VQA v2 questions / annotations to score against (written from the samples when the split
        has no such files)."""
        split = self.split("eval")
        if split.questions is not None:
            return split.questions, split.annotations
        return write_vqa_files(split.samples, out_dir / f"{self.key}_vqa_questions.json",
                               out_dir / f"{self.key}_vqa_annotations.json")

    def prefix(self, question: str) -> str:
        return self.config.prompt.format(question=question)

    def train_examples(self) -> list[Example]:
        if self.config.train is None:
            return []
        sampled = self.config.train_answer == "sampled"
        return [Example(media_source(s.image_path), self.prefix(s.question), _target(s), self.config.prefix_loss_weight,
                        self.key, self.config.target_separator, answer_choices(s) if sampled else ())
                for s in self._samples("train")]

    def candidates(self) -> list[str]:
        """The answers ranked in ``answer_mode: rank`` (and an answer classifier's outputs): the JSON list in
        ``candidates``, else every training answer, sorted."""
        if self.config.candidates:
            path = Path(self.config.candidates)
            try:
                answers = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ConfigError(f"tasks.{self.key}.candidates: cannot read {path}: {exc}") from None
            if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
                raise ConfigError(f"tasks.{self.key}.candidates: {path} must hold a JSON list of strings")
            return answers
        for s in self._samples("train"):
            _target(s)  # a training question without answers is an error here too
        return list(self.split("train").label_space.answers)

    def label_space(self) -> LabelSpace:
        space = super().label_space()
        if self.config.train is not None or self.config.candidates:
            space.answers = self.candidates()
        return space

    def evaluate(self, model, out_dir: Path, run: EvalRun = EvalRun()) -> dict:
        split = self.split("eval")
        if split.questions is not None and split.annotations is None:
            raise ConfigError(f"tasks.{self.key}.eval.annotations: needed to score VQA")
        samples = run.first(split.samples)
        cands = self.candidates() if self.config.answer_mode == "rank" else None

        def answer(inputs, kept: list[VQASample]) -> list[str]:
            prefixes = [self.prefix(s.question) for s in kept]
            if cands is not None:
                return model.rank(inputs["pixel_values"], prefixes, cands, top_k=self.config.rank_top_k,
                                  separator=self.config.target_separator)
            return model.generate(inputs["pixel_values"], prefixes, max_new_tokens=self.config.max_new_tokens,
                                  max_length=self.config.max_length, num_beams=self.config.num_beams)

        answers, bad = predict_all(f"eval {self.key}", samples,
                                   lambda chunk: model.load_batch([s.image_path for s in chunk]), answer, run)
        if not run.shard.main:
            return {}
        questions, annotations = self._scoring_files(out_dir)
        results = [(s.question_id, a) for s, a in zip(samples, answers) if a is not None]
        out_dir.mkdir(parents=True, exist_ok=True)
        results_path = write_vqa_results(out_dir / f"{self.key}_results.json", results)
        # questions that were never answered (bad images) score 0 — unless the run was limited on purpose
        scores = score_vqa_files(questions, annotations, results_path,
                                 missing="skip" if run.max_samples or split.limited else "zero")
        scores["n_errors"] = len(bad)
        write_json(out_dir / f"{self.key}.json", scores)
        if bad:
            write_json(out_dir / f"{self.key}_errors.json",
                       [{"question_id": samples[i].question_id, "image": str(samples[i].image_path), "error": e}
                        for i, e in bad])
        return scores

    def baselines(self, out_dir: Path) -> dict[str, float]:
        """Constant answer (the most common training answer) and per-question-type prior."""
        train, evals = self._samples("train"), self._samples("eval")
        questions, annotations = self._scoring_files(out_dir)
        overall = Counter(_target(s) for s in train).most_common(1)[0][0]
        by_type: dict[str, Counter] = {}
        for s in train:
            by_type.setdefault(s.question_type or "", Counter())[_target(s)] += 1
        prior = {t: c.most_common(1)[0][0] for t, c in by_type.items()}
        out = {}
        for name, answer_of in (("constant", lambda s: overall),
                                ("question_type_prior", lambda s: prior.get(s.question_type or "", overall))):
            path = write_vqa_results(out_dir / f"{self.key}_baseline_{name}.json",
                                     [(s.question_id, answer_of(s)) for s in evals])
            out[name] = score_vqa_files(questions, annotations, path, missing="skip")["overall"]
            path.unlink()
        return out


def answer_choices(s: VQASample) -> tuple[tuple[str, float], ...]:
    """The distinct annotator answers of ``s`` with the soft VQA score the authors' labels carry and their
    training draw is weighted by: min(1, 0.3 · count) (1 → 0.3, 2 → 0.6, 3 → 0.9, ≥ 4 → 1), most common first."""
    return tuple((a, min(1.0, 0.3 * n)) for a, n in Counter(s.answers).most_common())


def _target(s: VQASample) -> str:
    answer = training_answer(s)
    if answer is None:
        raise ConfigError(f"question {s.question_id}: no answers to train on (is this a test split?)")
    return answer
