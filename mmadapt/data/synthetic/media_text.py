"""Text over the synthetic videos and sounds, in the real formats: video QA (MSRVTT-QA JSON) and audio
captioning (AudioCaps CSV), for eP-ALM's offline video and audio runs.

- :func:`write_videoqa_dataset`: the clips of :func:`~mmadapt.data.synthetic.video.write_video_dataset`
  (a shape moving right / left / down / up) and two questions per clip — "which way does the shape move?"
  (needs the frame order) and "what shape is moving?" (square / disc / diamond) — as ``<split>_qa.json``.
- :func:`write_audiocaps_dataset`: the clips of :func:`~mmadapt.data.synthetic.audio.write_audio_dataset`
  (tone, rising / falling chirp, pulsing tone, noise) with five reference captions each (paraphrases of the
  sound's class, drawn per clip), as ``<split>.csv`` in the AudioCaps columns.

Both are deterministic given (split, seed) and return the path of the file they wrote. They are the formats
``synthetic_videoqa`` and ``synthetic_audiocaps``, registered here together since they share the words of
this module.

The same clips told in words — :func:`motion_facts` / :func:`motion_questions` and :func:`sound_facts` with
:data:`CAPTIONS` — are part of the zoo LM's pretraining text (:mod:`mmadapt.zoo.tiny_opt`): a pretrained LM
knows the words "up", "disc" or "chirp"; the zoo's tiny one learns them there, and eP-ALM then only has to
turn what the frozen video / audio encoder sees into something the LM reads like those facts.
"""

from __future__ import annotations

import csv
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from mmadapt.data.formats.audiocaps import load_audiocaps
from mmadapt.data.formats.msrvtt_qa import load_video_qa
from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.data.synthetic.audio import write_audio_dataset
from mmadapt.data.synthetic.generated import GeneratedConfig, generate
from mmadapt.data.synthetic.video import CLASSES as VIDEO_CLASSES
from mmadapt.data.synthetic.video import write_video_dataset

PathLike = str | os.PathLike[str]
VIDEO_TEMPLATE = "{video}"  # the synthetic QA files name each clip by its path under the root
AUDIO_TEMPLATE = "{youtube_id}.wav"

CAPTIONS: dict[str, tuple[str, ...]] = {
    "tone": ("a steady tone", "a single steady beep", "a constant pitch sounds", "one tone holds steady",
             "a steady electronic tone plays"),
    "rising_chirp": ("a tone rises in pitch", "a rising whistle", "the pitch sweeps upward", "a chirp going up",
                     "a sound that rises in pitch"),
    "falling_chirp": ("a tone falls in pitch", "a falling whistle", "the pitch sweeps downward",
                      "a chirp going down", "a sound that falls in pitch"),
    "am_tone": ("a pulsing tone", "a tone that throbs", "a beeping tone pulses on and off", "a wavering tone",
                "a tone that pulses rapidly"),
    "noise": ("white noise hisses", "a steady hiss of static", "static noise", "a loud hissing noise",
              "noise like rushing air"),
}


#: how each sound class is stated as a fact ("the sound is a rising chirp .")
SOUND_NAMES: dict[str, str] = {
    "tone": "a steady tone",
    "rising_chirp": "a rising chirp",
    "falling_chirp": "a falling chirp",
    "am_tone": "a pulsing tone",
    "noise": "white noise",
}
DIRECTION_QUESTION = "which way does the shape move?"
SHAPE_QUESTION = "what shape is moving?"


def direction_word(label: str) -> str:
    """``"moving_up"`` → ``"up"``: the answer to :data:`DIRECTION_QUESTION`."""
    return label.removeprefix("moving_")


def motion_facts(shape: str, direction: str, rng: random.Random) -> str:
    """One moving shape stated as text, in one of a few phrasings: ``"the disc moves up ."``."""
    template = rng.choice(("the {s} moves {d} .", "a {s} is moving {d} .", "the {s} goes {d} ."))
    return template.format(s=shape, d=direction)


def motion_questions(shape: str, direction: str, rng: random.Random) -> list[tuple[str, str]]:
    """(question, answer) pairs about one moving shape: the two of the video QA set, and variants."""
    other = rng.choice([d for d in (direction_word(c) for c in VIDEO_CLASSES) if d != direction])
    asked = rng.choice((direction, other))
    return [
        (DIRECTION_QUESTION, direction),
        (SHAPE_QUESTION, shape),
        (f"which way does the {shape} move?", direction),
        (f"is the shape moving {asked}?", "yes" if asked == direction else "no"),
    ]


def sound_facts(label: str, rng: random.Random) -> str:
    """One sound class stated as text: ``"the sound is a rising chirp ."``."""
    return rng.choice(("the sound is {} .", "you hear {} .", "there is {} .")).format(SOUND_NAMES[label])


def write_videoqa_dataset(root: PathLike, split: str, n: int, seed: int) -> Path:
    """``n`` clips and ``2 n`` questions of ``split``; returns ``<root>/<split>_qa.json`` (MSRVTT-QA format)."""
    root = Path(root)
    manifest = write_video_dataset(root, split, n, seed)
    items = []
    for video_id, line in enumerate(manifest.read_text(encoding="utf-8").splitlines()):
        clip = json.loads(line)
        common = {"video_id": video_id, "video": clip["path"]}
        items.append({"id": 2 * video_id, **common, "question": DIRECTION_QUESTION,
                      "answer": direction_word(clip["label"])})
        items.append({"id": 2 * video_id + 1, **common, "question": SHAPE_QUESTION, "answer": clip["shape"]})
    path = root / f"{split}_qa.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(items, indent=0), encoding="utf-8")
    tmp.replace(path)
    return path


def write_audiocaps_dataset(root: PathLike, split: str, n: int, seed: int) -> Path:
    """``n`` clips of ``split`` with five captions each; returns ``<root>/<split>.csv`` (AudioCaps columns)."""
    root = Path(root)
    manifest = write_audio_dataset(root, split, n, seed)
    rng = random.Random(f"audiocaps/{split}/{seed}")
    rows = []
    for index, line in enumerate(manifest.read_text(encoding="utf-8").splitlines()):
        clip = json.loads(line)
        youtube_id = clip["path"].removesuffix(".wav")
        for caption in rng.sample(CAPTIONS[clip["label"]], len(CAPTIONS[clip["label"]])):
            rows.append({"audiocap_id": len(rows), "youtube_id": youtube_id, "start_time": 0, "caption": caption})
    path = root / f"{split}.csv"
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["audiocap_id", "youtube_id", "start_time", "caption"])
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


@dataclass
class SyntheticVideoQAConfig(GeneratedConfig):
    """Moving-shape clips with two questions each (direction, shape) in the MSRVTT-QA layout, generated under
    ``root`` (``split``, ``n_samples``, ``seed``)."""


@register_format("synthetic_videoqa", SyntheticVideoQAConfig, serves=("vqa",))
def read_synthetic_videoqa(cfg: SyntheticVideoQAConfig, ctx: ReadContext) -> Split:
    return Split("vqa", load_video_qa(generate(cfg, ctx, write_videoqa_dataset), cfg.root, VIDEO_TEMPLATE))


@dataclass
class SyntheticAudioCapsConfig(GeneratedConfig):
    """Sound clips with five captions each in the AudioCaps layout, generated under ``root`` (``split``,
    ``n_samples``, ``seed``)."""


@register_format("synthetic_audiocaps", SyntheticAudioCapsConfig, serves=("caption",))
def read_synthetic_audiocaps(cfg: SyntheticAudioCapsConfig, ctx: ReadContext) -> Split:
    return Split("caption", load_audiocaps(generate(cfg, ctx, write_audiocaps_dataset), cfg.root, AUDIO_TEMPLATE))
