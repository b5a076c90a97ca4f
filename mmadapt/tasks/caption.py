"""Captioning (images, audio, any perceptual input) in the COCO results format, scored with the COCO
caption metrics.

Training: one example per (input, reference caption). Evaluation: one generated caption per input, written
as ``eval/<task>_results.json`` (official COCO results format) and scored with BLEU-1..4, METEOR, ROUGE-L,
CIDEr (and SPICE where it can run) against all references of the input.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from mmadapt.data.examples import Example
from mmadapt.data.formats.coco_captions import CaptionSample, write_caption_results
from mmadapt.eval.caption_metric import caption_scores
from mmadapt.io.shard_member import media_source
from mmadapt.registry import register
from mmadapt.tasks.base import EvalRun, Task, TextTaskConfig, predict_all, write_json


@register("tasks", "caption")
class CaptionTask(Task):
    name = "caption"
    sample_kind = "caption"
    config_class = TextTaskConfig

    def _samples(self, which: str) -> list[CaptionSample]:
        return self.split(which).samples

    @property
    def prefix(self) -> str:
        return self.config.prompt

    def train_examples(self) -> list[Example]:
        if self.config.train is None:
            return []
        return [Example(media_source(s.image_path), self.prefix, c, self.config.prefix_loss_weight, self.key,
                        self.config.target_separator) for s in self._samples("train") for c in s.captions]

    def evaluate(self, model, out_dir: Path, run: EvalRun = EvalRun()) -> dict:
        samples = run.first(self._samples("eval"))

        def caption(inputs, kept: list[CaptionSample]) -> list[str]:
            return model.generate(inputs["pixel_values"], [self.prefix] * len(kept),
                                  max_new_tokens=self.config.max_new_tokens, num_beams=self.config.num_beams,
                                  max_length=self.config.max_length)

        captions, bad = predict_all(f"eval {self.key}", samples,
                                    lambda chunk: model.load_batch([s.image_path for s in chunk]), caption, run)
        if not run.shard.main:
            return {}
        results = [(s.image_id, c) for s, c in zip(samples, captions) if c is not None]
        out_dir.mkdir(parents=True, exist_ok=True)
        write_caption_results(out_dir / f"{self.key}_results.json", results)
        refs = {s.image_id: s.captions for s in samples}
        scores = caption_scores(refs, dict(results))
        scores["n_images"] = len(results)
        scores["n_errors"] = len(bad)
        write_json(out_dir / f"{self.key}.json", scores)
        if bad:
            write_json(out_dir / f"{self.key}_errors.json",
                       [{"image_id": samples[i].image_id, "image": str(samples[i].image_path), "error": e}
                        for i, e in bad])
        return scores

    def baselines(self, out_dir: Path) -> dict[str, float]:
        """CIDEr of a constant caption: the most common training caption, given for every image."""
        train = self._samples("train") if self.config.train is not None else self._samples("eval")
        constant = Counter(c for s in train for c in s.captions).most_common(1)[0][0]
        refs = {s.image_id: s.captions for s in self._samples("eval")}
        scores = caption_scores(refs, {i: constant for i in refs}, spice=False)
        return {"constant_CIDEr": scores["CIDEr"], "constant_Bleu_4": scores["Bleu_4"]}
