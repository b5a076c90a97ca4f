"""An image classification set from the synthetic scenes: how many objects does the picture hold?

Each image is a scene of :mod:`mmadapt.data.synthetic.scene_world` (1–3 objects of distinct shapes and colours at
random cells, rendered as PNG); its label is the object count (``one`` / ``two`` / ``three``), which no single patch
tells — a model has to look over the whole image. Written as ``<root>/<split>/<i>.png`` plus the JSON-lines manifest
``<root>/<split>.jsonl`` (``{"path", "label"}`` per line); deterministic given (split, seed).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.data.synthetic import scene_world as scenes
from mmadapt.data.synthetic._manifest import write_manifest
from mmadapt.data.synthetic.generated import GeneratedConfig, generated_manifest

CLASSES: tuple[str, ...] = ("one", "two", "three")


def write_image_dataset(root: str | os.PathLike[str], split: str, n: int, seed: int, image_size: int = 64) -> Path:
    """Write ``n`` labelled scene images (classes balanced) and return the manifest path."""
    root = Path(root)
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"images/{split}/{seed}")
    records = []
    for i in range(n):
        count = i % len(CLASSES) + 1
        scene = scenes.sample_scene(rng, max_objects=3)
        while len(scene.objects) != count:
            scene = scenes.sample_scene(rng, max_objects=3)
        scenes.render_scene(scene, image_size, rng).save(folder / f"{i:05d}.png")
        records.append({"path": f"{split}/{i:05d}.png", "label": CLASSES[count - 1]})
    return write_manifest(root / f"{split}.jsonl", records)


@dataclass
class SyntheticImagesConfig(GeneratedConfig):
    """Scene images labelled by their object count (one / two / three). Generated under ``root`` (``split``,
    ``n_samples``, ``seed``)."""


@register_format("synthetic_images", SyntheticImagesConfig, serves=("labelled",))
def read_synthetic_images(cfg: SyntheticImagesConfig, ctx: ReadContext) -> Split:
    return generated_manifest(cfg, ctx, write_image_dataset)
