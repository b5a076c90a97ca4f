"""A generated multi-task dense scene set with exact per-pixel labels, written in the PASCAL-Context
multi-task layout, so :mod:`mmadapt.data.formats.pascal_context` reads it like the real benchmark.

Each image (default 64×64) shows 1–3 objects of :data:`SHAPES` standing on a ground plane. Every object is a
height field over the image plane with an analytic gradient:

* ``dome``: a spherical cap; ``pyramid``: square base, four planar faces; ``ridge``: a half-cylinder
  (elliptic cross-section) lying along an axis at 0° or 90°, or at any angle; ``box``: a flat top with
  slanted planar bevels; ``cone``: a circular cone.

The scene's height is the maximum over the objects (overlaps allowed, the taller wins), its normals
``normalise(-dh/dx, -dh/dy, 1)`` of the winning object in image axes (x right, y down, z towards the viewer;
ground ``(0, 0, 1)``). The image is Lambertian shading under a fixed light plus ambient, times each object's
random albedo over a randomly tinted ground, plus mild Gaussian noise — so shape, class and normals can all
be read from the pixels. Labels, per pixel:

* ``semseg``: 0 background, 1..5 = :data:`SHAPES` (:data:`SEMSEG_CLASSES`);
* ``parts``: the quadrant of the pixel within its own object, relative to the object's centre in image axes:
  0 background, 1 top-left, 2 top-right, 3 bottom-left, 4 bottom-right (:data:`PARTS_CLASSES`);
* ``saliency``: the largest visible object (by pixel count; the first drawn on ties) is salient;
* ``normals``: png-encoded (:func:`~mmadapt.data.formats.pascal_context.encode_png_normals`).

Files (``id = {split}_{index:05d}``)::

    root/JPEGImages/{id}.jpg                      quality 95, 4:4:4
    root/semseg/pascal-context/{id}.png           uint8 class map
    root/human_parts/{id}.png                     uint8 quadrant map
    root/sal_distill/{id}.png                     0 / 255
    root/normals_distill/{id}.png                 RGB = round((n + 1) * 127.5)
    root/ImageSets/Context/{split}.txt            written last
    root/mmadapt_dense.json                       class names, generator version, description

Every sample is a pure function of ``(seed, split, index)`` (:func:`render_dense_scene`), so the same
arguments write byte-identical files. The first object's shape is balanced: each block of five consecutive
indices holds each shape once as its first object.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mmadapt.data.formats.pascal_context import (
    IMAGE_DIR,
    METADATA_FILE,
    SPLIT_DIR,
    TASK_DIRS,
    dense_split,
    encode_png_normals,
)
from mmadapt.data.split import ReadContext, Split, register_format, require_fields
from mmadapt.data.synthetic.generated import GeneratedConfig, ensure_generated
from mmadapt.errors import ConfigError

__all__ = [
    "SHAPES",
    "SEMSEG_CLASSES",
    "PARTS_CLASSES",
    "GENERATOR_VERSION",
    "LIGHT",
    "DenseScene",
    "render_dense_scene",
    "write_dense_dataset",
    "ensure_dense_dataset",
]

PathLike = str | os.PathLike[str]

SHAPES: tuple[str, ...] = ("dome", "pyramid", "ridge", "box", "cone")
SEMSEG_CLASSES: tuple[str, ...] = ("background", *SHAPES)
PARTS_CLASSES: tuple[str, ...] = ("background", "top-left", "top-right", "bottom-left", "bottom-right")
GENERATOR_VERSION = 1
#: unit light direction (image axes: from the upper left, towards the viewer)
LIGHT: np.ndarray = np.array([-0.5, -0.6, 1.0]) / np.linalg.norm([-0.5, -0.6, 1.0])
_AMBIENT = 0.3
_NOISE = 0.02  # image noise standard deviation (intensity 0..1)
_MAX_SLOPE = 20.0  # gradient magnitude cap (the rim of a dome / ridge is vertical)
_DESCRIPTION = (
    "Synthetic multi-task dense scenes (mmadapt.data.synthetic.dense): 1-3 height-field objects (dome, pyramid, "
    "ridge, box, cone) on a ground plane, Lambertian-shaded; exact semseg (shape class), parts (quadrant of "
    "the pixel within its object), saliency (largest visible object) and surface normals."
)


@dataclass(frozen=True)
class DenseScene:
    """One rendered scene: ``image`` uint8 ``[S, S, 3]``; ``semseg`` / ``parts`` / ``saliency`` / ``instances``
    int64 ``[S, S]`` (``instances``: index of the visible object, -1 ground); ``normals`` float32 ``[S, S, 3]``
    unit vectors; ``shapes``: the shape of each object, in drawing order."""

    image: np.ndarray
    semseg: np.ndarray
    parts: np.ndarray
    saliency: np.ndarray
    normals: np.ndarray
    instances: np.ndarray
    shapes: tuple[str, ...]


@dataclass(frozen=True)
class _Object:
    shape: str
    cx: float  # centre, pixels (image axes)
    cy: float
    params: dict[str, float]
    albedo: np.ndarray  # [3] in 0..1


# A height field: (object, dx [S, S], dy [S, S]) → (inside mask, height, dh/dx, dh/dy), dx/dy from the centre.
FieldOut = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
Field = Callable[[_Object, np.ndarray, np.ndarray], FieldOut]


# ------------------------------------------------------------------------------------------------ writing
def write_dense_dataset(root: PathLike, split: str, n_samples: int, seed: int, size: int = 64) -> Path:
    """Write ``n_samples`` scenes of ``split`` under ``root`` in the PASCAL-Context multi-task layout and
    return the split list ``root/ImageSets/Context/{split}.txt`` (written last)."""
    if n_samples < 1:
        raise ConfigError(f"n_samples: expected >= 1 scenes, got {n_samples}")
    if size < 16:
        raise ConfigError(f"size: expected >= 16 pixels, got {size}")
    if not split or any(c in split for c in "/\\") or split.strip() != split:
        raise ConfigError(f"split: expected a plain name such as 'train', got {split!r}")
    root = Path(root)
    folders = {task: root / TASK_DIRS[task][0] for task in TASK_DIRS}
    for folder in (root / IMAGE_DIR, root / SPLIT_DIR, *folders.values()):
        folder.mkdir(parents=True, exist_ok=True)
    _write_metadata(root, split)
    ids = []
    for index in range(n_samples):
        scene = render_dense_scene(seed, split, index, size)
        sample_id = f"{split}_{index:05d}"
        Image.fromarray(scene.image).save(root / IMAGE_DIR / f"{sample_id}.jpg", quality=95, subsampling=0)
        Image.fromarray(scene.semseg.astype(np.uint8)).save(folders["semseg"] / f"{sample_id}.png")
        Image.fromarray(scene.parts.astype(np.uint8)).save(folders["parts"] / f"{sample_id}.png")
        Image.fromarray((scene.saliency * 255).astype(np.uint8)).save(folders["saliency"] / f"{sample_id}.png")
        Image.fromarray(encode_png_normals(scene.normals)).save(folders["normals"] / f"{sample_id}.png")
        ids.append(sample_id)
    path = root / SPLIT_DIR / f"{split}.txt"
    tmp = path.with_name(f".{split}.txt.tmp")
    tmp.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    tmp.replace(path)
    return path


def ensure_dense_dataset(root: PathLike, split: str, n_samples: int, seed: int, size: int = 64) -> Path:
    """:func:`write_dense_dataset` through :func:`~mmadapt.data.synthetic.generated.ensure_generated`: written once
    under a lock, reused while the request (n_samples, seed, size) is unchanged. Returns the split list."""
    return ensure_generated(root, split, n_samples, seed, write_dense_dataset, size=size)


def _write_metadata(root: Path, split: str) -> None:
    """``mmadapt_dense.json``: the same bytes for every split (splits may be written in parallel)."""
    meta = {
        "generator": "mmadapt.data.synthetic.dense",
        "version": GENERATOR_VERSION,
        "description": _DESCRIPTION,
        "tasks": {
            "semseg": {"classes": list(SEMSEG_CLASSES)},
            "parts": {"classes": list(PARTS_CLASSES)},
            "saliency": {"classes": ["background", "salient"]},
            "normals": {"encoding": "rgb = round((n + 1) * 127.5), image axes x right, y down, z to viewer"},
        },
    }
    path = root / METADATA_FILE
    tmp = root / f".{METADATA_FILE}.{split}.tmp"
    tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------- rendering
def render_dense_scene(seed: int, split: str, index: int, size: int = 64) -> DenseScene:
    """The scene ``index`` of ``split``: a pure function of its arguments (what the writer saves)."""
    split_key = zlib.crc32(split.encode("utf-8"))
    block = np.random.default_rng([seed, split_key, index // len(SHAPES), 7]).permutation(len(SHAPES))
    rng = np.random.default_rng([seed, split_key, index])
    n_objects = int(rng.integers(1, 4))
    shapes = [SHAPES[block[index % len(SHAPES)]]] + [SHAPES[int(rng.integers(len(SHAPES)))]
                                                     for _ in range(n_objects - 1)]
    objects = _place(shapes, size, rng)
    ground = np.clip(rng.uniform(0.2, 0.45) + rng.uniform(-0.08, 0.08, size=3), 0.05, 1.0)
    return _render(objects, size, ground, rng)


def _place(shapes: list[str], size: int, rng: np.random.Generator) -> list[_Object]:
    """Random parameters and centres; a centre is redrawn (up to 30 times) while it lies too close to an
    earlier object, so that objects overlap a little at most."""
    objects: list[_Object] = []
    for shape in shapes:
        params = _PARAMS[shape](rng, size)
        extent = params.pop("extent")
        for _ in range(30):
            cx, cy = rng.uniform(0.15 * size, 0.85 * size, size=2)
            if all(np.hypot(cx - o.cx, cy - o.cy) >= 0.75 * (extent + o.params["_extent"]) for o in objects):
                break
        hue = rng.uniform(0.3, 1.0, size=3)
        albedo = hue / hue.max() * rng.uniform(0.8, 1.0)
        objects.append(_Object(shape, float(cx), float(cy), {**params, "_extent": extent}, albedo))
    return objects


def _render(objects: list[_Object], size: int, ground: np.ndarray, rng: np.random.Generator) -> DenseScene:
    coords = np.arange(size, dtype=np.float64) + 0.5  # pixel centres
    x, y = np.meshgrid(coords, coords, indexing="xy")  # [S, S]: x varies along columns, y along rows
    heights = np.full((len(objects), size, size), -np.inf)
    grads = np.zeros((len(objects), 2, size, size))
    for k, obj in enumerate(objects):
        inside, height, gx, gy = _FIELDS[obj.shape](obj, x - obj.cx, y - obj.cy)
        heights[k][inside] = height[inside]
        grads[k, 0], grads[k, 1] = gx, gy
    winner = heights.argmax(axis=0)
    visible = np.isfinite(heights.max(axis=0))
    instances = np.where(visible, winner, -1)
    rows, cols = np.indices((size, size))
    gx = np.where(visible, grads[winner, 0, rows, cols], 0.0)
    gy = np.where(visible, grads[winner, 1, rows, cols], 0.0)
    slope = np.hypot(gx, gy)
    scale = np.minimum(1.0, _MAX_SLOPE / np.maximum(slope, 1e-12))
    normals = np.stack([-gx * scale, -gy * scale, np.ones_like(gx)], axis=-1)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)

    classes = np.array([SHAPES.index(o.shape) + 1 for o in objects])
    semseg = np.where(visible, classes[winner], 0)
    centres = np.array([[o.cx, o.cy] for o in objects])
    right = x >= centres[winner, 0]
    below = y >= centres[winner, 1]
    parts = np.where(visible, 1 + right.astype(np.int64) + 2 * below.astype(np.int64), 0)
    counts = np.bincount(instances[visible], minlength=len(objects))
    saliency = (instances == int(counts.argmax())).astype(np.int64)

    albedo = np.concatenate([ground[None], np.stack([o.albedo for o in objects])])  # [K + 1, 3]
    shade = _AMBIENT + (1 - _AMBIENT) * np.clip(normals @ LIGHT, 0.0, None)
    image = albedo[instances + 1] * shade[..., None] + rng.normal(0.0, _NOISE, size=(size, size, 3))
    image = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    return DenseScene(image, semseg.astype(np.int64), parts, saliency, normals.astype(np.float32),
                      instances.astype(np.int64), tuple(o.shape for o in objects))


# ------------------------------------------------------------------------------------------------- shapes
def _rotate(obj: _Object, dx: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Object-local coordinates ``(u, v)`` (u along the object's angle) and the angle's cos / sin."""
    c, s = np.cos(obj.params["angle"]), np.sin(obj.params["angle"])
    return c * dx + s * dy, -s * dx + c * dy, c, s


def _to_image(gu: np.ndarray, gv: np.ndarray, c: float, s: float) -> tuple[np.ndarray, np.ndarray]:
    """A local gradient ``(dh/du, dh/dv)`` in image axes ``(dh/dx, dh/dy)``."""
    return gu * c - gv * s, gu * s + gv * c


def _dome(obj: _Object, dx: np.ndarray, dy: np.ndarray) -> FieldOut:
    r, h = obj.params["radius"], obj.params["height"]
    sphere = (r * r + h * h) / (2 * h)  # radius of the sphere whose cap of height h has base radius r
    d2 = dx * dx + dy * dy
    inside = d2 < r * r
    root = np.sqrt(np.maximum(sphere * sphere - d2, 1e-12))
    return inside, root - (sphere - h), -dx / root, -dy / root


def _pyramid(obj: _Object, dx: np.ndarray, dy: np.ndarray) -> FieldOut:
    r, h = obj.params["radius"], obj.params["height"]
    u, v, c, s = _rotate(obj, dx, dy)
    along_u = np.abs(u) >= np.abs(v)  # which pair of faces
    inside = np.maximum(np.abs(u), np.abs(v)) < r
    gu = np.where(along_u, -h / r * np.sign(u), 0.0)
    gv = np.where(along_u, 0.0, -h / r * np.sign(v))
    return inside, h * (1 - np.maximum(np.abs(u), np.abs(v)) / r), *_to_image(gu, gv, c, s)


def _ridge(obj: _Object, dx: np.ndarray, dy: np.ndarray) -> FieldOut:
    r, h, half = obj.params["radius"], obj.params["height"], obj.params["half_length"]
    u, v, c, s = _rotate(obj, dx, dy)
    inside = (np.abs(u) < half) & (np.abs(v) < r)
    root = np.sqrt(np.maximum(r * r - v * v, 1e-12))
    k = h / r  # elliptic cross-section of width 2r and height h
    gv = -k * v / root
    return inside, k * root, *_to_image(np.zeros_like(gv), gv, c, s)


def _box(obj: _Object, dx: np.ndarray, dy: np.ndarray) -> FieldOut:
    a, b, h, w = obj.params["half_u"], obj.params["half_v"], obj.params["height"], obj.params["bevel"]
    u, v, c, s = _rotate(obj, dx, dy)
    eu, ev = a - np.abs(u), b - np.abs(v)  # distances to the edges
    edge = np.minimum(eu, ev)
    inside = edge > 0
    on_bevel = edge < w
    gu = np.where(on_bevel & (eu <= ev), -h / w * np.sign(u), 0.0)
    gv = np.where(on_bevel & (eu > ev), -h / w * np.sign(v), 0.0)
    return inside, h * np.minimum(1.0, edge / w), *_to_image(gu, gv, c, s)


def _cone(obj: _Object, dx: np.ndarray, dy: np.ndarray) -> FieldOut:
    r, h = obj.params["radius"], obj.params["height"]
    d = np.hypot(dx, dy)
    inside = d < r
    safe = np.maximum(d, 1e-12)
    slope = np.where(d > 1e-9, h / r, 0.0)
    return inside, h * (1 - d / r), -slope * dx / safe, -slope * dy / safe


_FIELDS: dict[str, Field] = {"dome": _dome, "pyramid": _pyramid, "ridge": _ridge, "box": _box, "cone": _cone}


def _dome_params(rng: np.random.Generator, size: int) -> dict[str, float]:
    r = rng.uniform(0.12, 0.22) * size
    return {"radius": r, "height": rng.uniform(0.5, 0.9) * r, "angle": 0.0, "extent": r}


def _pyramid_params(rng: np.random.Generator, size: int) -> dict[str, float]:
    r = rng.uniform(0.1, 0.19) * size
    return {"radius": r, "height": rng.uniform(0.6, 1.2) * r, "angle": rng.uniform(0, np.pi / 2),
            "extent": r * np.sqrt(2)}


def _ridge_params(rng: np.random.Generator, size: int) -> dict[str, float]:
    r = rng.uniform(0.07, 0.12) * size
    half = rng.uniform(0.18, 0.3) * size
    angle = rng.choice([0.0, np.pi / 2]) if rng.random() < 0.5 else rng.uniform(0, np.pi)
    return {"radius": r, "height": rng.uniform(0.6, 1.0) * r, "half_length": half, "angle": float(angle),
            "extent": half}


def _box_params(rng: np.random.Generator, size: int) -> dict[str, float]:
    a = rng.uniform(0.11, 0.19) * size
    b = a * rng.uniform(0.6, 1.0)
    return {"half_u": a, "half_v": b, "height": rng.uniform(0.3, 0.6) * b, "bevel": rng.uniform(0.3, 0.45) * b,
            "angle": rng.uniform(0, np.pi / 2), "extent": float(np.hypot(a, b))}


def _cone_params(rng: np.random.Generator, size: int) -> dict[str, float]:
    r = rng.uniform(0.12, 0.2) * size
    return {"radius": r, "height": rng.uniform(0.8, 1.5) * r, "angle": 0.0, "extent": r}


_PARAMS: dict[str, Callable[[np.random.Generator, int], dict[str, float]]] = {
    "dome": _dome_params, "pyramid": _pyramid_params, "ridge": _ridge_params, "box": _box_params,
    "cone": _cone_params,
}  # fmt: skip


@dataclass
class SyntheticDenseConfig(GeneratedConfig):
    """Generated scenes with exact labels for every dense task, in the PASCAL-Context multi-task layout under
    ``root`` (``split``, ``n_samples``, ``seed``)."""


@register_format("synthetic_dense", SyntheticDenseConfig, serves=("dense",))
def read_synthetic_dense(cfg: SyntheticDenseConfig, ctx: ReadContext) -> Split:
    require_fields(cfg, ("root", "split", "n_samples"), ctx.where)
    ensure_dense_dataset(cfg.root, cfg.split, cfg.n_samples, cfg.seed)
    return dense_split(cfg.root, cfg.split, ctx)
