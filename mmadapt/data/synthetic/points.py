"""A synthetic point cloud classification set: five shapes, randomly posed, written in four file formats.

Each sample is a triangle mesh of one of :data:`CLASSES` with random proportions (cylinder and cone height,
torus tube radius), an anisotropic scale jitter, a uniformly random rotation (SO(3)), a random size and
offset. Samples ``i % 4 == 2`` are written as the ``.off`` mesh itself (the loader samples its surface);
the others as ``n_points`` surface samples plus Gaussian noise, in ``.npy``, ``.ply`` (ascii) or ``.txt``
(comma separated, as ModelNet40's). The shape is learnable from the geometry (e.g. the spread of the
distances to the centroid), while the random pose makes raw coordinates uninformative::

    root/
      {split}.jsonl                 one {"path": "points/{split}/00000.npy", "label": "torus"} per line
      points/{split}/00000.npy ...

Labels are balanced (counts differ by at most one) and every file is a pure function of ``(seed, split,
index)``, so the same arguments write byte-identical files.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.data.synthetic._manifest import write_manifest
from mmadapt.data.synthetic.generated import GeneratedConfig, generated_manifest
from mmadapt.errors import ConfigError
from mmadapt.io.point_cloud import sample_surface, write_off, write_ply

__all__ = ["CLASSES", "FORMATS", "write_point_cloud_dataset"]

PathLike = str | os.PathLike[str]
Mesh = tuple[np.ndarray, np.ndarray]  # vertices float64 [V, 3], triangles int64 [F, 3]
Surface = Callable[[np.ndarray, np.ndarray], np.ndarray]  # parameters u [P], v [P] in [0, 1] → points [P, 3]

CLASSES: tuple[str, ...] = ("sphere", "cube", "cylinder", "cone", "torus")
FORMATS: tuple[str, ...] = (".npy", ".ply", ".off", ".txt")
_RESOLUTION = 24  # segments around each circle of the round meshes


def write_point_cloud_dataset(
    root: PathLike,
    split: str,
    n: int,
    seed: int,
    n_points: int = 1024,
    noise: float = 0.01,
) -> Path:
    """Write ``n`` point clouds of ``split`` under ``root`` and their manifest ``root/{split}.jsonl``.

    ``n_points``: points per cloud in the point formats; ``noise``: standard deviation of the Gaussian noise
    added to them, relative to the shape's size. Returns the manifest's path.
    """
    if n < 1:
        raise ConfigError(f"n: expected >= 1 clouds, got {n}")
    if n_points < 1:
        raise ConfigError(f"n_points: expected >= 1, got {n_points}")
    if noise < 0:
        raise ConfigError(f"noise: expected >= 0, got {noise}")
    root = Path(root)
    folder = root / "points" / split
    folder.mkdir(parents=True, exist_ok=True)
    split_key = zlib.crc32(split.encode("utf-8"))
    labels = np.random.default_rng([seed, split_key]).permutation(np.arange(n) % len(CLASSES))
    records = []
    for index, label in enumerate(labels):
        rng = np.random.default_rng([seed, split_key, index])
        name = CLASSES[label]
        vertices, faces = _MESHES[name](rng)
        vertices = _random_pose(vertices, rng)
        relative = f"points/{split}/{index:05d}{FORMATS[index % len(FORMATS)]}"
        _write_sample(root / relative, vertices, faces, n_points, noise, rng)
        records.append({"path": relative, "label": name})
    return write_manifest(root / f"{split}.jsonl", records)


def _write_sample(
    path: Path, vertices: np.ndarray, faces: np.ndarray, n_points: int, noise: float, rng: np.random.Generator
) -> None:
    """The mesh as ``.off``, or ``n_points`` noisy surface samples ``[n_points, 3]`` in a point format."""
    if path.suffix == ".off":
        write_off(path, vertices, faces)
        return
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    points = sample_surface(torch.from_numpy(vertices), torch.from_numpy(faces), n_points, generator).numpy()
    size = np.linalg.norm(vertices - vertices.mean(axis=0), axis=1).max()
    points = (points + rng.normal(0.0, noise * size, points.shape)).astype(np.float32)
    if path.suffix == ".npy":
        np.save(path, points)
    elif path.suffix == ".ply":
        write_ply(path, points)
    else:
        np.savetxt(path, points, fmt="%.6f", delimiter=",")


def _random_pose(vertices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Anisotropic scale jitter, a uniform random rotation, a random size and offset: ``[V, 3]`` → ``[V, 3]``."""
    quaternion = rng.normal(size=4)
    w, x, y, z = quaternion / np.linalg.norm(quaternion)  # uniform on S^3 → uniform rotation
    rotation = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip
    jittered = vertices * rng.uniform(0.85, 1.15, size=3)
    return jittered @ rotation.T * rng.uniform(0.5, 2.0) + rng.normal(0.0, 1.0, size=3)


# ---------------------------------------------------------------------------------------------- meshes


def _grid(surface: Surface, n_u: int, n_v: int, wrap_v: bool) -> Mesh:
    """Triangulate a parametric surface ``(u, v) ∈ [0, 1)² → xyz``; ``u`` wraps around, ``v`` wraps if asked.

    Returns ``n_u × n_v'`` vertices (``n_v' = n_v`` if ``v`` wraps, else ``n_v + 1``) and ``2 · n_u · n_v``
    triangles. Rows that collapse to a point (a pole, an apex) give zero-area triangles, which surface
    sampling never picks.
    """
    u = np.arange(n_u) / n_u
    v = np.arange(n_v) / n_v if wrap_v else np.linspace(0.0, 1.0, n_v + 1)
    grid_u, grid_v = np.meshgrid(u, v, indexing="ij")
    vertices = surface(grid_u.ravel(), grid_v.ravel())
    index = np.arange(vertices.shape[0]).reshape(n_u, len(v))
    if wrap_v:
        index = np.concatenate([index, index[:, :1]], axis=1)
    a, b = index[:, :-1], np.roll(index, -1, axis=0)[:, :-1]
    c, d = np.roll(index, -1, axis=0)[:, 1:], index[:, 1:]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return vertices, faces


def _merge(*meshes: Mesh) -> Mesh:
    offsets = np.cumsum([0] + [len(vertices) for vertices, _ in meshes[:-1]])
    vertices = np.concatenate([vertices for vertices, _ in meshes])
    faces = np.concatenate([faces + offset for (_, faces), offset in zip(meshes, offsets)])
    return vertices, faces


def _ring(radius: Callable[[np.ndarray], np.ndarray], z: Callable[[np.ndarray], np.ndarray]) -> Surface:
    """A surface of revolution around z: ``(u, v) → (r(v) cos 2πu, r(v) sin 2πu, z(v))``."""

    def surface(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        angle = 2 * np.pi * u
        return np.stack([radius(v) * np.cos(angle), radius(v) * np.sin(angle), z(v)], axis=1)

    return surface


def _sphere(rng: np.random.Generator) -> Mesh:
    surface = _ring(lambda v: np.sin(np.pi * v), lambda v: np.cos(np.pi * v))
    return _grid(surface, _RESOLUTION, _RESOLUTION // 2, False)


def _cube(rng: np.random.Generator) -> Mesh:
    corners = np.array([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = np.array([[a, b, c] for a, b, c, d in quads] + [[a, c, d] for a, b, c, d in quads])
    return corners, faces


def _cylinder(rng: np.random.Generator) -> Mesh:
    half = rng.uniform(0.6, 1.2)
    side = _grid(_ring(lambda v: np.ones_like(v), lambda v: half * (2 * v - 1)), _RESOLUTION, 4, False)
    top = _grid(_ring(lambda v: 1 - v, lambda v: np.full_like(v, half)), _RESOLUTION, 1, False)
    bottom = _grid(_ring(lambda v: v, lambda v: np.full_like(v, -half)), _RESOLUTION, 1, False)
    return _merge(side, top, bottom)


def _cone(rng: np.random.Generator) -> Mesh:
    half = rng.uniform(0.8, 1.4)
    side = _grid(_ring(lambda v: v, lambda v: half * (1 - 2 * v)), _RESOLUTION, 4, False)
    base = _grid(_ring(lambda v: 1 - v, lambda v: np.full_like(v, -half)), _RESOLUTION, 1, False)
    return _merge(side, base)


def _torus(rng: np.random.Generator) -> Mesh:
    tube = rng.uniform(0.2, 0.4)

    def surface(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        ring = 1 + tube * np.cos(2 * np.pi * v)
        angle = 2 * np.pi * u
        return np.stack([ring * np.cos(angle), ring * np.sin(angle), tube * np.sin(2 * np.pi * v)], axis=1)

    return _grid(surface, _RESOLUTION * 2, _RESOLUTION // 2, True)


_MESHES: dict[str, Callable[[np.random.Generator], Mesh]] = {
    "sphere": _sphere,
    "cube": _cube,
    "cylinder": _cylinder,
    "cone": _cone,
    "torus": _torus,
}


@dataclass
class SyntheticPointsConfig(GeneratedConfig):
    """Point clouds sampled from meshes of five shapes, labelled by shape. Generated under ``root`` (``split``,
    ``n_samples``, ``seed``)."""


@register_format("synthetic_points", SyntheticPointsConfig, serves=("labelled",))
def read_synthetic_points(cfg: SyntheticPointsConfig, ctx: ReadContext) -> Split:
    return generated_manifest(cfg, ctx, write_point_cloud_dataset)
