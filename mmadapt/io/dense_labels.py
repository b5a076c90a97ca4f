"""Label files of dense prediction tasks → arrays (the PASCAL-Context multi-task conventions):

* ``semseg`` / ``parts``: a class-index png (mode ``P`` / ``L`` / ``I``) or a ``.mat`` class map → int64
  ``[H, W]`` class indices (255 = ignore);
* ``saliency``: an 8-bit grey png → int64 ``[H, W]`` in {0, 1} (grey > 127 is salient);
* ``normals``: an RGB png (``n = 2 * rgb / 255 - 1``) or a ``.mat`` ``[H, W, 3]`` array → float32 unit
  vectors; a vector shorter than 0.5 before renormalising, a non-finite one or an all-zero png pixel is
  invalid, ``(0, 0, 0)``.

Every problem is a one-line :class:`~mmadapt.errors.DataError` naming the file. A label file is a path or a
member of a WebDataset shard (:class:`~mmadapt.io.shard_member.ShardMember`, decoded from its bytes and named
``shard.tar:member``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, UnidentifiedImageError

from mmadapt.errors import DataError
from mmadapt.io._files import check_media, one_line
from mmadapt.io.shard_member import MediaSource, open_media

IGNORE_INDEX = 255
_MIN_NORMAL_NORM = 0.5  # decoded normals shorter than this (before renormalising) are invalid
_SALIENT_ABOVE = 127  # grey level: salient where > this


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of ``[H, W, ...]`` to ``size = (H', W')`` (pixel centres mapped)."""
    height, width = array.shape[:2]
    rows = np.minimum(((np.arange(size[0]) + 0.5) * height / size[0]).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * width / size[1]).astype(np.int64), width - 1)
    return array[rows[:, None], cols[None, :]]


def renormalise(vectors: np.ndarray) -> np.ndarray:
    """Unit vectors ``[H, W, 3]`` float32; vectors shorter than 0.5 or non-finite become ``(0, 0, 0)``."""
    vectors = vectors.astype(np.float64)
    finite = np.isfinite(vectors).all(axis=-1)
    vectors[~finite] = 0.0
    norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
    valid = norm[..., 0] >= _MIN_NORMAL_NORM
    unit = np.divide(vectors, norm, out=np.zeros_like(vectors), where=norm > 0)
    unit[~valid] = 0.0
    return unit.astype(np.float32)


def decode_png_normals(rgb: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, 3]`` → float32 unit normals ``[H, W, 3]``: ``n = 2 * rgb / 255 - 1``, renormalised.
    Invalid, ``(0, 0, 0)``: pixels whose ``n`` is shorter than 0.5 (mid-grey, ``(128, 128, 128)``-ish) and
    all-zero pixels (the usual "no data" fill; their ``(-1, -1, -1)`` would face away from the camera)."""
    rgb = np.asarray(rgb)
    normals = renormalise(2.0 * rgb.astype(np.float64) / 255.0 - 1.0)
    normals[(rgb == 0).all(axis=-1)] = 0.0
    return normals


def encode_png_normals(normals: np.ndarray) -> np.ndarray:
    """float ``[H, W, 3]`` unit normals (zero = invalid) → uint8 ``[H, W, 3]``, the inverse of
    :func:`decode_png_normals` up to quantisation: ``rgb = round((n + 1) * 127.5)``; invalid pixels are
    written as ``(0, 0, 0)``."""
    normals = np.asarray(normals, dtype=np.float64)
    rgb = np.clip(np.rint((normals + 1.0) * 127.5), 0, 255).astype(np.uint8)
    rgb[np.linalg.norm(normals, axis=-1) < _MIN_NORMAL_NORM] = 0
    return rgb


# ------------------------------------------------------------------------------------------------ decoders
def _open_png(path: MediaSource, task: str) -> Image.Image:
    """A fully decoded label image (``Image.load()``, so truncation fails here), errors naming ``path``."""
    where = check_media(path, f"{task} label")
    opened_source = open_media(path)
    try:
        with Image.open(opened_source) as opened:
            opened.load()
            return opened.copy()
    except UnidentifiedImageError:
        raise DataError(f"{where}: not a recognised image file ({task} label)") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise OSError, SyntaxError, EOFError, ...
        text = one_line(exc)
        if "truncated" in text.lower() or isinstance(exc, EOFError):
            text = "truncated file"
        raise DataError(f"{where}: cannot decode {task} label ({text})") from None


def _class_png(path: MediaSource, task: str) -> np.ndarray:
    """An index png (mode ``P``, ``L`` or ``I``/``I;16``) → int64 ``[H, W]``; colour pngs are refused."""
    image = _open_png(path, task)
    if image.mode not in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
        raise DataError(f"{path}: {task} label has image mode {image.mode!r}; expected a class-index png "
                        f"(mode 'P' or 'L': one class index per pixel)")
    return np.asarray(image).astype(np.int64)


def _load_mat(path: MediaSource, task: str, keys: tuple[str, ...]) -> np.ndarray:
    """The array of a ``.mat`` label: the first of ``keys`` present, else the only non-``__`` variable."""
    where = check_media(path, f"{task} label")
    try:
        import scipy.io
    except ImportError:
        raise DataError(f"{where}: reading .mat labels needs scipy (pip install scipy)") from None
    opened_source = open_media(path)
    try:
        content = scipy.io.loadmat(opened_source)
    except Exception as exc:  # noqa: BLE001 - scipy raises ValueError, MatReadError, TypeError, OSError, ...
        raise DataError(f"{where}: cannot read .mat {task} label ({one_line(exc)})") from None
    variables = {k: v for k, v in content.items() if not k.startswith("__")}
    key = next((k for k in keys if k in variables), None)
    if key is None:
        if len(variables) != 1:
            raise DataError(f"{where}: .mat {task} label: expected a variable named one of {list(keys)} or a "
                            f"single variable, found {sorted(variables)}")
        key = next(iter(variables))
    array = variables[key]
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise DataError(f"{where}: .mat {task} label: variable {key!r} is not a numeric array "
                        f"(got {getattr(array, 'dtype', type(array).__name__)}); raw PASCAL-Part 'anno' "
                        f"structs must be converted to a class-index map first")
    return array


def _decode_classes(path: MediaSource, task: str) -> np.ndarray:
    if path.suffix.lower() == ".mat":
        array = _load_mat(path, task, (task, "label", "labels", "anno"))
        if array.ndim != 2:
            raise DataError(f"{path}: .mat {task} label: expected a [H, W] class map, got shape {array.shape}")
        if array.dtype.kind == "f":
            if not np.isfinite(array).all() or (array != np.round(array)).any():
                raise DataError(f"{path}: .mat {task} label: class indices must be whole numbers")
        array = array.astype(np.int64)
    else:
        array = _class_png(path, task)
    if array.size and (array.min() < 0):
        raise DataError(f"{path}: {task} label has negative class index {int(array.min())}")
    return array


def _decode_semseg(path: MediaSource) -> np.ndarray:
    return _decode_classes(path, "semseg")


def _decode_parts(path: MediaSource) -> np.ndarray:
    return _decode_classes(path, "parts")


def _decode_saliency(path: MediaSource) -> np.ndarray:
    image = _open_png(path, "saliency")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        raise DataError(f"{path}: saliency label has image mode {image.mode!r}; expected an 8-bit grey png")
    grey = np.asarray(image.convert("L"))
    return (grey > _SALIENT_ABOVE).astype(np.int64)


def _decode_normals(path: MediaSource) -> np.ndarray:
    if path.suffix.lower() == ".mat":
        array = _load_mat(path, "normals", ("normals", "normal", "norm"))
        if array.ndim != 3 or array.shape[2] != 3:
            raise DataError(f"{path}: .mat normals: expected a [H, W, 3] array, got shape {array.shape}")
        return renormalise(array)
    image = _open_png(path, "normals")
    if image.mode == "RGBA":
        image = image.convert("RGB")
    if image.mode != "RGB":
        raise DataError(f"{path}: normals label has image mode {image.mode!r}; expected an RGB png "
                        f"(n = 2 * rgb / 255 - 1)")
    return decode_png_normals(np.asarray(image))


def decode_label(task: str, path: MediaSource) -> np.ndarray:
    """The label file of a dense ``task`` (``semseg``, ``parts``, ``saliency``, ``normals``) as an array."""
    return _DECODERS[task](path)


_DECODERS = {
    "semseg": _decode_semseg,
    "parts": _decode_parts,
    "saliency": _decode_saliency,
    "normals": _decode_normals,
}
