"""Image captioning in the COCO formats (COCO captions JSON or Karpathy's split file).

Training: one example per (image, reference caption). Evaluation: one generated caption per image, written
as ``eval/<task>_results.json`` (official COCO results format) and scored with BLEU-1..4, METEOR, ROUGE-L,
CIDEr (and SPICE where it can run) against all references of the image.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from mmadapt.data.coco_captions import CaptionSample, load_coco_captions, load_karpathy, write_caption_results
from mmadapt.errors import ConfigError
from mmadapt.eval.caption_metric import caption_scores
from mmadapt.registry import register
from mmadapt.tasks.base import Task, batched, load_batch_images, resolve_split, write_json
from mmadapt.training.data import Example


@register("tasks", "caption")
class CaptionTask(Task):
    name = "caption"

    def _samples(self, split: str) -> list[CaptionSample]:
        ds = getattr(self.config, split)
        if ds is None:
            raise ConfigError(f"tasks.{self.key}.{split}: no dataset configured")
        if ds.format == "karpathy":
            if not ds.split:
                raise ConfigError(f"tasks.{self.key}.{split}.split: required for format karpathy")
            parts = tuple(ds.split.split("+"))  # e.g. "train+restval", the usual 113k training images
            samples = load_karpathy(ds.annotations, ds.image_root, parts if len(parts) > 1 else parts[0])
        elif ds.format == "synthetic_scenes":
            from mmadapt.data.synthetic import load_scenes_captions

            resolve_split(ds, f"tasks.{self.key}.{split}")  # writes the set if it is missing
            samples = load_scenes_captions(ds.root, ds.split)
        elif ds.format in ("audiocaps", "synthetic_audiocaps"):
            from mmadapt.data.audiocaps import load_audiocaps

            files = resolve_split(ds, f"tasks.{self.key}.{split}") if ds.format == "synthetic_audiocaps" else None
            if files is not None:
                samples = load_audiocaps(files.annotations, files.image_root, files.image_template)
            elif ds.annotations is None:
                raise ConfigError(f"tasks.{self.key}.{split}.annotations: required for format audiocaps (the CSV)")
            else:
                samples = load_audiocaps(ds.annotations, ds.image_root, ds.image_template)
        elif ds.format == "coco_captions":
            if ds.annotations is None:
                raise ConfigError(f"tasks.{self.key}.{split}.annotations: required for format coco_captions")
            samples = load_coco_captions(ds.annotations, ds.image_root)
        else:
            raise ConfigError(f"tasks.{self.key}.{split}.format: {ds.format} is not a caption format")
        return samples[: ds.limit] if ds.limit else samples

    @property
    def prefix(self) -> str:
        return self.config.prompt

    def train_examples(self) -> list[Example]:
        if self.config.train is None:
            return []
        return [Example(str(s.image_path), self.prefix, c, self.config.prefix_loss_weight, self.key,
                        self.config.target_separator) for s in self._samples("train") for c in s.captions]

    def evaluate(self, model, out_dir: Path, batch_size: int, max_samples: int | None = None,
                 quiet: bool = False) -> dict:
        samples = self._samples("eval")
        if max_samples:
            samples = samples[:max_samples]
        results, errors = [], []
        for chunk in tqdm(list(batched(samples, batch_size)), desc=f"eval {self.key}", disable=quiet):
            ok, images, bad = load_batch_images([s.image_path for s in chunk], model.vision.load)
            errors += [{"image_id": chunk[i].image_id, "image": str(chunk[i].image_path), "error": e} for i, e in bad]
            if not ok:
                continue
            captions = model.generate(model.vision.preprocess(images), [self.prefix] * len(ok),
                                      max_new_tokens=self.config.max_new_tokens, num_beams=self.config.num_beams,
                                      max_length=self.config.max_length)
            results += [(chunk[i].image_id, c) for i, c in zip(ok, captions)]
        out_dir.mkdir(parents=True, exist_ok=True)
        write_caption_results(out_dir / f"{self.key}_results.json", results)
        refs = {s.image_id: s.captions for s in samples}
        scores = caption_scores(refs, dict(results))
        scores["n_images"] = len(results)
        scores["n_errors"] = len(errors)
        write_json(out_dir / f"{self.key}.json", scores)
        if errors:
            write_json(out_dir / f"{self.key}_errors.json", errors)
        return scores

    def baselines(self, out_dir: Path) -> dict[str, float]:
        """CIDEr of a constant caption: the most common training caption, given for every image."""
        train = self._samples("train") if self.config.train is not None else self._samples("eval")
        constant = Counter(c for s in train for c in s.captions).most_common(1)[0][0]
        refs = {s.image_id: s.captions for s in self._samples("eval")}
        scores = caption_scores(refs, {i: constant for i in refs}, spice=False)
        return {"constant_CIDEr": scores["CIDEr"], "constant_Bleu_4": scores["Bleu_4"]}
