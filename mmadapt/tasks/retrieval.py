"""Video–text retrieval in the MSR-VTT layout: train on (clip, caption) pairs, rank every pair to evaluate.

Data (``tasks.<key>.train`` / ``eval``): ``msrvtt_retrieval`` (the 1k-A CSV or ``MSRVTT_data.json``) or
``synthetic_video_text`` (generated, same CSV layout). The model scores a pair with one forward pass through
its shared encoder (single-stream, as All-in-One ranks with its matching head), so evaluation costs
``n_texts × n_videos`` pair scores — the 1k-A test set is a million pairs; ``eval.max_samples`` caps the
captions. Writes ``eval/<key>.json`` (Recall@1/5/10, median / mean rank, both directions, beside the chance
values), ``eval/<key>_scores.json`` (the score matrix) and ``eval/<key>_errors.json`` for unreadable clips
(their captions are left out and counted).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mmadapt.errors import ConfigError, DataError
from mmadapt.eval.retrieval_metric import chance_metrics, retrieval_metrics
from mmadapt.io._files import template_path
from mmadapt.registry import register
from mmadapt.tasks.base import Task, batched, load_batch_images, write_json
from mmadapt.training.data import MatchExample

DEFAULT_TEMPLATE = "{video_id}.mp4"


@dataclass(frozen=True)
class Caption:
    video_id: str
    video_path: Path
    sentence: str


def read_captions(path: Path, video_root: Path, template: str) -> list[Caption]:
    """MSR-VTT captions: a CSV with ``video_id`` and ``sentence`` columns (other columns are kept for the
    template, e.g. ``video``) or ``MSRVTT_data.json`` (``sentences``: [{video_id, caption}])."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from None
        items = data.get("sentences") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise DataError(f"{path}: expected MSRVTT_data.json's layout, an object with a 'sentences' list")
        rows = [{**item, "sentence": item.get("caption")} if isinstance(item, dict) else item for item in items]
    else:
        rows = list(csv.DictReader(text.splitlines()))
    captions = []
    for i, row in enumerate(rows):
        where = f"{path}: [{i}]"
        if not isinstance(row, dict) or row.get("video_id") in (None, "") or not isinstance(row.get("sentence"), str):
            raise DataError(f"{where}: needs a video_id and a sentence (caption)")
        video_path = template_path(video_root, template, row, where)
        captions.append(Caption(str(row["video_id"]), video_path, row["sentence"].strip()))
    if not captions:
        raise DataError(f"{path}: no captions")
    return captions


@register("tasks", "retrieval")
class RetrievalTask(Task):
    name = "retrieval"

    def captions(self, split: str) -> list[Caption]:
        ds = getattr(self.config, split)
        where = f"tasks.{self.key}.{split}"
        if ds is None:
            raise ConfigError(f"{where}: no dataset configured")
        if ds.format == "synthetic_video_text":
            from mmadapt.data.generated import ensure_generated
            from mmadapt.data.synthetic_video_text import write_video_text_dataset

            if not ds.root or not ds.split or not ds.n_samples:
                raise ConfigError(f"{where}: synthetic_video_text needs root, split and n_samples")
            path = ensure_generated(ds.root, ds.split, ds.n_samples, ds.seed, write_video_text_dataset)
            rows = read_captions(path, Path(ds.root), "{video}")
        elif ds.format == "msrvtt_retrieval":
            if ds.annotations is None:
                raise ConfigError(f"{where}.annotations: required for msrvtt_retrieval (captions CSV or JSON)")
            path = Path(ds.annotations)
            rows = read_captions(path, Path(ds.image_root) if ds.image_root else path.parent,
                                 ds.image_template or DEFAULT_TEMPLATE)
        else:
            raise ConfigError(f"{where}.format: retrieval reads msrvtt_retrieval or synthetic_video_text, "
                              f"got {ds.format!r}")
        return rows[: ds.limit] if ds.limit else rows

    def train_examples(self) -> list[MatchExample]:
        if self.config.train is None:
            return []
        return [MatchExample(str(c.video_path), c.sentence, self.key) for c in self.captions("train")]

    @torch.no_grad()
    def score_matrix(self, model, clips: torch.Tensor, texts: list[str], batch_size: int,
                     quiet: bool = True) -> torch.Tensor:
        """``clips`` [n_videos, T, 3, S, S], ``texts`` → pair scores [n_texts, n_videos]."""
        scores = torch.empty(len(texts), clips.shape[0])
        for i, text in enumerate(tqdm(texts, desc=f"eval {self.key}", disable=quiet)):
            for chunk in batched(range(clips.shape[0]), batch_size):
                idx = list(chunk)
                scores[i, idx] = model.match_logits(clips[idx], [text] * len(idx)).float().cpu()
        return scores

    def evaluate(self, model, out_dir: Path, batch_size: int, max_samples: int | None = None,
                 quiet: bool = False) -> dict:
        captions = self.captions("eval")[:max_samples] if max_samples else self.captions("eval")
        videos = list(dict.fromkeys(c.video_path for c in captions))  # unique, in order
        ok, clips, bad = load_batch_images(videos, model.vision.load)
        errors = [{"video": str(videos[i]), "error": e} for i, e in bad]
        readable = {videos[i]: k for k, i in enumerate(ok)}
        kept = [c for c in captions if c.video_path in readable]
        if not kept:
            raise DataError(f"tasks.{self.key}.eval: no readable clip ({len(errors)} failed; first: "
                            f"{errors[0]['error'] if errors else 'none'})")
        pixels = torch.cat([model.vision.preprocess(list(chunk)) for chunk in batched(clips, batch_size)])
        scores = self.score_matrix(model, pixels, [c.sentence for c in kept], batch_size, quiet)
        metrics = retrieval_metrics(scores, [readable[c.video_path] for c in kept])
        metrics["chance"] = chance_metrics(len(ok))
        metrics["skipped_captions"] = len(captions) - len(kept)
        write_json(out_dir / f"{self.key}_scores.json", {"videos": [str(videos[i]) for i in ok],
                                                         "texts": [c.sentence for c in kept],
                                                         "scores": scores.tolist()})
        write_json(out_dir / f"{self.key}.json", metrics)
        if errors:
            write_json(out_dir / f"{self.key}_errors.json", errors)
        return metrics

    def baselines(self, out_dir: Path) -> dict[str, float]:
        """A random ranking's expected text → video scores."""
        n = len({c.video_path for c in self.captions("eval")})
        return chance_metrics(n)
