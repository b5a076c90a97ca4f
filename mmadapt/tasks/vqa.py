"""Visual question answering in the VQA v2 formats: train on (image, question, answer), score officially.

Training target: the annotation's ``multiple_choice_answer`` (the most common human answer). Evaluation
answers either by generation (greedy / beam search) or by ranking a candidate list (``answer_mode: rank``;
default candidates: every training answer), writes ``eval/<task>_results.json`` in the official results
format and scores it with the official VQA accuracy.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from mmadapt.data.video_qa import load_video_qa, write_vqa_files
from mmadapt.data.vqa_v2 import VQASample, load_vqa, write_vqa_results
from mmadapt.errors import ConfigError
from mmadapt.eval.vqa_metric import score_vqa_files
from mmadapt.registry import register
from mmadapt.tasks.base import Task, batched, load_batch_images, resolve_split, write_json
from mmadapt.training.data import Example


#: formats read as video QA (MSRVTT-QA JSON lists)
VIDEO_QA_FORMATS = ("msrvtt_qa", "synthetic_videoqa", "synthetic_video_text")


@register("tasks", "vqa")
class VQATask(Task):
    name = "vqa"

    def _samples(self, split: str) -> tuple[list[VQASample], "object"]:
        ds = getattr(self.config, split)
        if ds is None:
            raise ConfigError(f"tasks.{self.key}.{split}: no dataset configured")
        files = resolve_split(ds, f"tasks.{self.key}.{split}")
        if ds.format in VIDEO_QA_FORMATS:
            samples = load_video_qa(files.questions, files.image_root, files.image_template)
        else:
            samples = load_vqa(files.questions, files.annotations, image_root=files.image_root,
                               image_template=files.image_template)
        return (samples[: ds.limit] if ds.limit else samples), files

    def _scoring_files(self, samples: list[VQASample], files, out_dir: Path) -> tuple[Path, Path | None]:
        """The VQA v2 questions / annotations to score against (video QA: written from ``samples``)."""
        if files.annotations is not None or self.config.eval.format not in VIDEO_QA_FORMATS:
            return files.questions, files.annotations
        return write_vqa_files(samples, out_dir / f"{self.key}_vqa_questions.json",
                               out_dir / f"{self.key}_vqa_annotations.json")

    def prefix(self, question: str) -> str:
        return self.config.prompt.format(question=question)

    def train_examples(self) -> list[Example]:
        if self.config.train is None:
            return []
        samples, _ = self._samples("train")
        sampled = self.config.train_answer == "sampled"
        return [Example(str(s.image_path), self.prefix(s.question), _target(s), self.config.prefix_loss_weight,
                        self.key, self.config.target_separator, answer_choices(s) if sampled else ())
                for s in samples]

    def candidates(self) -> list[str]:
        if self.config.candidates:
            path = Path(self.config.candidates)
            try:
                answers = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ConfigError(f"tasks.{self.key}.candidates: cannot read {path}: {exc}") from None
            if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
                raise ConfigError(f"tasks.{self.key}.candidates: {path} must hold a JSON list of strings")
            return answers
        samples, _ = self._samples("train")
        return sorted({_target(s) for s in samples})

    def evaluate(self, model, out_dir: Path, batch_size: int, max_samples: int | None = None,
                 quiet: bool = False) -> dict:
        samples, files = self._samples("eval")
        questions, annotations = self._scoring_files(samples, files, out_dir)
        if annotations is None:
            raise ConfigError(f"tasks.{self.key}.eval.annotations: needed to score VQA")
        if max_samples:
            samples = samples[:max_samples]
        cands = self.candidates() if self.config.answer_mode == "rank" else None
        results, errors = [], []
        for chunk in tqdm(list(batched(samples, batch_size)), desc=f"eval {self.key}", disable=quiet):
            ok, images, bad = load_batch_images([s.image_path for s in chunk], model.vision.load)
            errors += [{"question_id": chunk[i].question_id, "image": str(chunk[i].image_path), "error": e}
                       for i, e in bad]
            if not ok:
                continue
            pixels = model.vision.preprocess(images)
            prefixes = [self.prefix(chunk[i].question) for i in ok]
            if cands is not None:
                answers = model.rank(pixels, prefixes, cands, top_k=self.config.rank_top_k,
                                     separator=self.config.target_separator)
            else:
                answers = model.generate(pixels, prefixes, max_new_tokens=self.config.max_new_tokens,
                                         max_length=self.config.max_length,
                                         num_beams=self.config.num_beams)
            results += [(chunk[i].question_id, a) for i, a in zip(ok, answers)]
        out_dir.mkdir(parents=True, exist_ok=True)
        results_path = write_vqa_results(out_dir / f"{self.key}_results.json", results)
        # questions that were never answered (bad images) score 0 — unless the run was limited on purpose
        scores = score_vqa_files(questions, annotations, results_path,
                                 missing="skip" if max_samples or files_limited(self, "eval") else "zero")
        write_json(out_dir / f"{self.key}.json", scores)
        if errors:
            write_json(out_dir / f"{self.key}_errors.json", errors)
        return scores

    def baselines(self, out_dir: Path) -> dict[str, float]:
        """Constant answer (the most common training answer) and per-question-type prior."""
        train, _ = self._samples("train")
        evals, files = self._samples("eval")
        questions, annotations = self._scoring_files(evals, files, out_dir)
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


def files_limited(task: Task, split: str) -> bool:
    ds = getattr(task.config, split)
    return bool(ds is not None and ds.limit)


def answer_choices(s: VQASample) -> tuple[tuple[str, float], ...]:
    """The distinct annotator answers of ``s`` with the soft VQA score the authors' labels carry and their
    training draw is weighted by: min(1, 0.3 · count) (1 → 0.3, 2 → 0.6, 3 → 0.9, ≥ 4 → 1), most common first."""
    return tuple((a, min(1.0, 0.3 * n)) for a, n in Counter(s.answers).most_common())


def _target(s: VQASample) -> str:
    if s.multiple_choice_answer:
        return s.multiple_choice_answer
    if s.answers:
        return Counter(s.answers).most_common(1)[0][0]
    raise ConfigError(f"question {s.question_id}: no answers to train on (is this a test split?)")
