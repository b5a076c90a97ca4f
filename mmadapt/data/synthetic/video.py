"""A synthetic video classification set whose classes only frame ORDER can tell apart: a shape moving right,
left, down or up, written as real mp4 files plus a JSON-lines manifest::

    root/
      {split}.jsonl               one {"path": "{split}/000000.mp4", "label": "moving_right", "shape": "disc"} per line
      {split}/000000.mp4 ...      H.264 (or MPEG-4), yuv420p, size × size, n_frames frames at fps

Each clip is one shape (square, disc or diamond; random radius and colours, random background) whose centre
moves a constant ``speed`` pixels per frame (random, 1 to 2.5) in the class's direction, on a torus: it leaves
one edge and comes back at the opposite one. Two properties hold exactly, by construction:

* **no single frame tells the class**: the start position is uniform over the frame (on a 1/8-pixel grid)
  and wraps around, so at every time ``t`` the centre is uniform too, whatever the direction; every frame of
  a clip is frame ``t`` of some clip of every other class (same shape, colours and speed, another start);
* **frame order does**: reversed in time, a ``moving_right`` clip is exactly a ``moving_left`` clip (start at
  the old end) — and so on for down / up — so shuffling the frames destroys the direction. (The *set* of
  frames still shows the axis, horizontal or vertical: a model blind to frame order tops out at 50%, chance
  is 25%.)

Everything is a pure function of ``(seed, split, index)``: the same arguments give byte-identical files
(:func:`~mmadapt.io.video.write_video` encodes reproducibly), and labels are balanced (each block of
``len(CLASSES)`` consecutive samples holds every class once, in a random order).
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
from mmadapt.io.video import write_video

__all__ = [
    "CLASSES",
    "DIRECTIONS",
    "SHAPES",
    "MovingShape",
    "render_clip",
    "sample_moving_shape",
    "write_video_dataset",
]

CLASSES = ("moving_right", "moving_left", "moving_down", "moving_up")
SHAPES = ("square", "disc", "diamond")
#: class -> unit step of the centre per frame, (row, col); rows grow downwards
DIRECTIONS: dict[str, tuple[int, int]] = {
    "moving_right": (0, 1),
    "moving_left": (0, -1),
    "moving_down": (1, 0),
    "moving_up": (-1, 0),
}
_GRID = 8  # positions and speeds are multiples of 1/8 pixel, so every sum below is exact in floating point


@dataclass(frozen=True)
class MovingShape:
    """One clip's content: ``shape`` of ``radius`` pixels, ``colour`` on ``background`` (RGB 0..255), centred
    at ``start`` = (row, col) in frame 0 and moving ``speed`` pixels per frame in ``label``'s direction."""

    label: str
    shape: str
    radius: int
    colour: tuple[int, int, int]
    background: tuple[int, int, int]
    start: tuple[float, float]
    speed: float

    def centre(self, t: int, size: int) -> tuple[float, float]:
        """(row, col) of the centre in frame ``t`` of a ``size × size`` clip (wrapped around the torus)."""
        d_row, d_col = DIRECTIONS[self.label]
        return (self.start[0] + d_row * self.speed * t) % size, (self.start[1] + d_col * self.speed * t) % size


def sample_moving_shape(rng: np.random.Generator, label: str, size: int) -> MovingShape:
    """A random clip of class ``label`` for ``size × size`` frames (radius ``size // 10`` to ``size // 6``)."""
    if label not in DIRECTIONS:
        raise ConfigError(f"label: expected one of {CLASSES}, got {label!r}")
    low, high = max(2, size // 10), max(3, size // 6)
    return MovingShape(
        label=label,
        shape=SHAPES[int(rng.integers(len(SHAPES)))],
        radius=int(rng.integers(low, high + 1)),
        colour=tuple(int(c) for c in rng.integers(140, 256, size=3)),
        background=tuple(int(c) for c in rng.integers(0, 91, size=3)),
        start=(float(rng.integers(size * _GRID)) / _GRID, float(rng.integers(size * _GRID)) / _GRID),
        speed=float(rng.integers(_GRID, int(2.5 * _GRID) + 1)) / _GRID,
    )


def render_clip(clip: MovingShape, size: int, n_frames: int) -> np.ndarray:
    """uint8 ``[n_frames, size, size, 3]``: the shape drawn at its centre in each frame, on the torus."""
    pixels = np.arange(size, dtype=np.float64)
    frames = np.empty((n_frames, size, size, 3), dtype=np.uint8)
    for t in range(n_frames):
        row, col = clip.centre(t, size)
        # signed distance from the centre along each axis, wrapped into [-size / 2, size / 2)
        d_row = ((pixels - row + size / 2) % size - size / 2)[:, None]
        d_col = ((pixels - col + size / 2) % size - size / 2)[None, :]
        if clip.shape == "square":
            inside = np.maximum(np.abs(d_row), np.abs(d_col)) <= clip.radius
        elif clip.shape == "disc":
            inside = d_row**2 + d_col**2 <= clip.radius**2
        elif clip.shape == "diamond":
            inside = np.abs(d_row) + np.abs(d_col) <= clip.radius
        else:
            raise ConfigError(f"shape: expected one of {SHAPES}, got {clip.shape!r}")
        frames[t] = np.where(inside[..., None], clip.colour, clip.background)
    return frames


def write_video_dataset(
    root: str | os.PathLike[str],
    split: str,
    n: int,
    seed: int,
    size: int = 32,
    n_frames: int = 16,
    fps: float = 8.0,
) -> Path:
    """Write ``n`` clips of ``split`` under ``root`` (mp4, ``size × size``, ``n_frames`` frames at ``fps``)
    and the manifest ``root/{split}.jsonl``; returns the manifest's path."""
    check_split_n_seed(split, n, seed)
    if size < 16 or size % 2:
        raise ConfigError(f"size: expected an even number >= 16, got {size}")
    if n_frames < 2:
        raise ConfigError(f"n_frames: expected >= 2 (motion needs two frames), got {n_frames}")
    root = Path(root)
    (root / split).mkdir(parents=True, exist_ok=True)
    split_key = zlib.crc32(split.encode("utf-8"))
    records = []
    for index in range(n):
        label = balanced_label(CLASSES, seed, split_key, index)
        clip = sample_moving_shape(np.random.default_rng([seed, split_key, index, 1]), label, size)
        relative = f"{split}/{index:06d}.mp4"
        write_video(root / relative, render_clip(clip, size, n_frames), fps)
        records.append({"path": relative, "label": label, "shape": clip.shape})
    return write_manifest(root / f"{split}.jsonl", records)


@dataclass
class SyntheticVideoConfig(GeneratedConfig):
    """Clips of a shape moving in one of four directions, labelled by the direction. Generated under ``root``
    (``split``, ``n_samples``, ``seed``)."""


@register_format("synthetic_video", SyntheticVideoConfig, serves=("labelled",))
def read_synthetic_video(cfg: SyntheticVideoConfig, ctx: ReadContext) -> Split:
    return generated_manifest(cfg, ctx, write_video_dataset)
