"""A synthetic audio classification set of five sound kinds, written as real wav files plus a manifest::

    root/
      {split}.jsonl               one {"path": "{split}/000000.wav", "label": "rising_chirp"} per line
      {split}/000000.wav ...      mono, 16-bit PCM, ``seconds`` long at ``sample_rate``

Classes (every parameter random per clip; peak amplitude 0.1 to 0.7, random phase, a faint noise floor):

* ``tone``: a sine, 200 Hz to 4 kHz (log-uniform);
* ``rising_chirp`` / ``falling_chirp``: an exponential sweep between ``f_low`` (200 Hz to 1.5 kHz) and 2 to 4
  times ``f_low``, upwards or downwards. A falling chirp is a rising one played backwards, so the two have the
  same spectrum over the clip: only the order in time separates them;
* ``am_tone``: a sine whose loudness swings 2 to 8 times a second (depth 50% to 100%);
* ``noise``: white Gaussian noise.

Everything is a pure function of ``(seed, split, index)``: the same arguments give byte-identical files, and
labels are balanced (each block of ``len(CLASSES)`` consecutive samples holds every class once, in a random order).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.data.synthetic._manifest import balanced_label, check_split_n_seed, write_manifest
from mmadapt.data.synthetic.generated import GeneratedConfig, generated_manifest
from mmadapt.errors import ConfigError
from mmadapt.io.audio import write_audio

__all__ = ["CLASSES", "synthesize", "write_audio_dataset"]

CLASSES = ("tone", "rising_chirp", "falling_chirp", "am_tone", "noise")
_HIGHEST_HZ = 6000  # 1.5 kHz times 4: the top of the fastest sweep
_NOISE_FLOOR = 0.003  # standard deviation of the white noise under every clip


def synthesize(rng: np.random.Generator, label: str, sample_rate: int = 16000, seconds: float = 1.0) -> np.ndarray:
    """float32 ``[S]`` (``S = round(seconds * sample_rate)``), a random clip of class ``label``, within [-1, 1]."""
    if label not in CLASSES:
        raise ConfigError(f"label: expected one of {CLASSES}, got {label!r}")
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    amplitude = rng.uniform(0.1, 0.7)
    phase = rng.uniform(0.0, 2 * np.pi)
    if label == "tone":
        signal = np.sin(2 * np.pi * _log_uniform(rng, 200.0, 4000.0) * t + phase)
    elif label in ("rising_chirp", "falling_chirp"):
        f_low, ratio = _log_uniform(rng, 200.0, 1500.0), rng.uniform(2.0, 4.0)
        # instantaneous frequency f_low * ratio ** (u / seconds), u the time since the low end of the sweep
        u = t if label == "rising_chirp" else seconds - t
        sweep = 2 * np.pi * f_low * seconds * (ratio ** (u / seconds) - 1) / np.log(ratio)
        signal = np.sin(sweep + phase)
    elif label == "am_tone":
        carrier, rate, depth = _log_uniform(rng, 200.0, 4000.0), rng.uniform(2.0, 8.0), rng.uniform(0.5, 1.0)
        envelope = 1 - depth * 0.5 * (1 - np.cos(2 * np.pi * rate * t + rng.uniform(0.0, 2 * np.pi)))
        signal = envelope * np.sin(2 * np.pi * carrier * t + phase)
    else:  # noise: peak about 3 standard deviations
        signal = rng.standard_normal(len(t)) / 3
    waveform = amplitude * signal + _NOISE_FLOOR * rng.standard_normal(len(t))
    return np.clip(waveform, -1.0, 1.0).astype(np.float32)


def write_audio_dataset(
    root: str | os.PathLike[str],
    split: str,
    n: int,
    seed: int,
    sample_rate: int = 16000,
    seconds: float = 1.0,
) -> Path:
    """Write ``n`` clips of ``split`` under ``root`` (16-bit wav, ``seconds`` at ``sample_rate``) and the
    manifest ``root/{split}.jsonl``; returns the manifest's path."""
    check_split_n_seed(split, n, seed)
    if sample_rate <= 2 * _HIGHEST_HZ:
        raise ConfigError(
            f"sample_rate: expected > {2 * _HIGHEST_HZ} (chirps reach {_HIGHEST_HZ} Hz, below Nyquist), got {sample_rate}"
        )
    if not seconds > 0:
        raise ConfigError(f"seconds: expected > 0, got {seconds}")
    root = Path(root)
    (root / split).mkdir(parents=True, exist_ok=True)
    split_key = zlib.crc32(split.encode("utf-8"))
    records = []
    for index in range(n):
        label = balanced_label(CLASSES, seed, split_key, index)
        waveform = synthesize(np.random.default_rng([seed, split_key, index, 1]), label, sample_rate, seconds)
        relative = f"{split}/{index:06d}.wav"
        write_audio(root / relative, waveform, sample_rate)
        records.append({"path": relative, "label": label})
    return write_manifest(root / f"{split}.jsonl", records)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


@dataclass
class SyntheticAudioConfig(GeneratedConfig):
    """Wav clips of five sound kinds (tones, rising / falling chirps, ...), labelled by kind. Generated under ``root``
    (``split``, ``n_samples``, ``seed``)."""


@register_format("synthetic_audio", SyntheticAudioConfig, serves=("labelled",))
def read_synthetic_audio(cfg: SyntheticAudioConfig, ctx: ReadContext) -> Split:
    return generated_manifest(cfg, ctx, write_audio_dataset)
