"""Text over the synthetic videos and sounds, in the real formats: video QA (MSRVTT-QA JSON) and audio
captioning (AudioCaps CSV), for eP-ALM's offline video and audio runs.

- :mod:`~mmadapt.data.synthetic.videoqa` (format ``synthetic_videoqa``): the clips of
  :func:`~mmadapt.data.synthetic.video.write_video_dataset` (a shape moving right / left / down / up) and two
  questions per clip — "which way does the shape move?" (needs the frame order) and "what shape is moving?"
  (square / disc / diamond) — as ``<split>_qa.json``.
- :mod:`~mmadapt.data.synthetic.audiocaps` (format ``synthetic_audiocaps``): the clips of
  :func:`~mmadapt.data.synthetic.audio.write_audio_dataset` (tone, rising / falling chirp, pulsing tone, noise)
  with five reference captions each (paraphrases of the sound's class, drawn per clip), as ``<split>.csv`` in
  the AudioCaps columns.

This module holds their words (questions, captions, how each clip is stated as a fact).

The same clips told in words — :func:`motion_facts` / :func:`motion_questions` and :func:`sound_facts` with
:data:`CAPTIONS` — are part of the zoo LM's pretraining text (:mod:`mmadapt.zoo.tiny_opt`): a pretrained LM
knows the words "up", "disc" or "chirp"; the zoo's tiny one learns them there, and eP-ALM then only has to
turn what the frozen video / audio encoder sees into something the LM reads like those facts.
"""

from __future__ import annotations

import random

from mmadapt.data.synthetic.video import CLASSES as VIDEO_CLASSES

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
