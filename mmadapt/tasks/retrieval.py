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

from pathlib import Path

import torch
from tqdm.auto import tqdm

from mmadapt.data.examples import MatchExample
from mmadapt.data.formats.msrvtt_retrieval import Caption
from mmadapt.errors import DataError
from mmadapt.eval.retrieval_metric import chance_metrics, retrieval_metrics
from mmadapt.io.shard_member import media_source
from mmadapt.registry import register
from mmadapt.tasks.base import EvalRun, Task, batched, predict_all, write_json


@register("tasks", "retrieval")
class RetrievalTask(Task):
    name = "retrieval"

    sample_kind = "pairs"

    def captions(self, which: str) -> list[Caption]:
        return self.split(which).samples

    def train_examples(self) -> list[MatchExample]:
        if self.config.train is None:
            return []
        return [MatchExample(media_source(c.video_path), c.sentence, self.key) for c in self.captions("train")]

    @torch.no_grad()
    def score_matrix(self, model, clips: torch.Tensor, texts: list[str], run: EvalRun = EvalRun(quiet=True)
                     ) -> torch.Tensor:
        """``clips`` [n_videos, T, 3, S, S], ``texts`` → pair scores [n_texts, n_videos] (on rank 0 of a distributed
        ``run``: each rank scores its own texts' rows against every clip)."""
        rows: dict[int, torch.Tensor] = {}
        mine = list(run.shard.mine(len(texts)))
        for i in tqdm(mine, desc=f"eval {self.key}", disable=run.quiet):
            row = torch.empty(clips.shape[0])
            for chunk in batched(range(clips.shape[0]), run.batch_size):
                idx = list(chunk)
                row[idx] = model.match_logits(clips[idx], [texts[i]] * len(idx)).float().cpu()
            rows[i] = row
        rows = run.shard.gather(rows)
        return torch.stack([rows[i] for i in range(len(texts))]) if rows else torch.empty(0, clips.shape[0])

    def evaluate(self, model, out_dir: Path, run: EvalRun = EvalRun()) -> dict:
        captions = run.first(self.captions("eval"))
        videos = list(dict.fromkeys(c.video_path for c in captions))  # unique, in order
        # every rank reads every clip (its texts are scored against all of them), so the loading is not sharded
        local = EvalRun(run.batch_size, quiet=True, loading=run.loading)
        clips, bad = predict_all(f"load {self.key}", videos, model.load_batch,
                                 lambda inputs, kept: inputs["pixel_values"], local)
        errors = [{"video": str(videos[i]), "error": e} for i, e in bad]
        ok = [i for i, clip in enumerate(clips) if clip is not None]
        readable = {videos[i]: k for k, i in enumerate(ok)}
        kept = [c for c in captions if c.video_path in readable]
        if not kept:
            raise DataError(f"tasks.{self.key}.eval: no readable clip ({len(errors)} failed; first: "
                            f"{errors[0]['error'] if errors else 'none'})")
        pixels = torch.stack([clips[i] for i in ok])
        scores = self.score_matrix(model, pixels, [c.sentence for c in kept], run)
        if not run.shard.main:
            return {}
        metrics = retrieval_metrics(scores, [readable[c.video_path] for c in kept])
        metrics["chance"] = chance_metrics(len(ok))
        metrics["skipped_captions"] = len(captions) - len(kept)
        metrics["n_errors"] = len(errors)
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
