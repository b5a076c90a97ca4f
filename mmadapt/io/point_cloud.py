"""Load point clouds (.npy, .txt / .xyz, .ply, .off meshes, ScanObjectNN-style .h5) into float32 tensors.

What :func:`load_point_cloud` guarantees:

* a float32 tensor ``[n_points, 3]`` (``[n_points, 3 + C]`` with ``keep_extra``: the file's other per-point
  columns, e.g. ModelNet40's normals, in file order), with only finite values;
* the format is chosen by extension: ``.npy`` (an array ``[N, >=3]``), ``.txt`` / ``.xyz`` (one point per line,
  whitespace or comma separated, ``#`` comments), ``.ply`` (the ``vertex`` element; ascii,
  binary_little_endian and binary_big_endian; ``x, y, z`` first, then the other vertex properties), ``.off``
  (a mesh: ``n_points`` are sampled uniformly on its surface; without faces of positive area, or with
  ``n_points=None``, its vertices are the points; ModelNet's ``OFF`` glued to the counts line, e.g.
  ``OFF490 518 0``, is accepted; polygons are split into triangle fans);
* ``n_points``: a random subset without replacement when the file has more points, all points plus random
  repeats when it has fewer, the file's points in order when it has exactly that many, all points for
  ``None``. Every random choice draws from ``generator``, so a seeded generator gives the same cloud;
* ``normalize``: after sampling, ``x, y, z`` are centred on their mean and scaled so that the farthest point
  has norm 1 (extra columns are left as they are);
* every failure is a :class:`~mmadapt.errors.DataError` with a one-line message that starts with the path:
  missing, directory, empty or unreadable file, unsupported extension, broken header or counts, a bad value
  (with its line), 0 points, fewer than 3 columns, NaN / Inf coordinates (with the point index).

The file parsers (:mod:`mmadapt.io.point_files`: PLY and OFF are small numpy readers) need no mesh library.
A source is a path or a member of a WebDataset shard (:class:`~mmadapt.io.shard_member.ShardMember`, parsed
from its bytes, named ``shard.tar:member``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from mmadapt.errors import ConfigError, DataError
from mmadapt.io._files import check_file, check_media, one_line
from mmadapt.io.point_files import ARRAY_READERS, SUFFIXES, check_columns, read_off
from mmadapt.io.shard_member import MediaBlob, MediaSource, source_name

__all__ = ["load_h5_point_clouds", "load_point_cloud", "prepare_points", "sample_surface", "write_off", "write_ply"]

PathLike = str | os.PathLike[str]
ArrayLike = torch.Tensor | np.ndarray



def load_point_cloud(
    path: MediaSource,
    n_points: int | None = 1024,
    normalize: bool = True,
    keep_extra: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Read one point cloud file; returns float32 ``[n_points, 3]`` (``[n_points, 3 + C]`` with ``keep_extra``).

    Raises:
        DataError: see the module docstring; the message is one line, ``"{path}: {what is wrong}"``.
        ConfigError: ``n_points`` is not ``None`` or a positive int.
    """
    where = source_name(path)
    if n_points is not None and (isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 1):
        raise ConfigError(f"n_points: expected a positive int or None, got {n_points!r}")
    suffix = (path.suffix if isinstance(path, MediaBlob) else Path(where).suffix).lower()
    if suffix not in SUFFIXES:
        expected = ", ".join(SUFFIXES)
        raise DataError(f"{where}: unsupported point cloud extension {suffix!r} (expected one of {expected})")
    check_media(path, "point cloud")
    if suffix == ".off":
        vertices, faces = read_off(path)
        _check_points(vertices, where)
        vertices_t = torch.from_numpy(vertices)
        faces_t = torch.from_numpy(faces)
        if n_points is not None and len(faces) and _triangle_areas(vertices_t[faces_t]).sum() > 0:
            points = sample_surface(vertices_t, faces_t, n_points, generator)
        else:
            points = _resample(vertices_t, n_points, generator)
    else:
        array = ARRAY_READERS[suffix](path)
        array = array if keep_extra else array[:, :3]
        _check_points(array, where)
        points = _resample(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64)), n_points, generator)
    if normalize:
        points = _normalize(points)
    return points.float()


def sample_surface(
    vertices: torch.Tensor, faces: torch.Tensor, n_points: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Sample ``n_points`` uniformly on a triangle mesh's surface: ``[V, 3]`` + long ``[F, 3]`` → ``[n_points, 3]``.

    A triangle is picked with probability proportional to its area, then a uniform point inside it (reflected
    barycentric coordinates). Deterministic given ``generator``; the output has the dtype of ``vertices``.
    At least one face must have a positive area.
    """
    corners = vertices[faces]  # [F, 3 corners, 3]
    chosen = torch.multinomial(_triangle_areas(corners), n_points, replacement=True, generator=generator)
    uv = torch.rand(n_points, 2, generator=generator, dtype=vertices.dtype)
    outside = uv.sum(dim=1) > 1
    uv[outside] = 1 - uv[outside]
    a, b, c = corners[chosen].unbind(dim=1)
    return a + uv[:, :1] * (b - a) + uv[:, 1:] * (c - a)


def load_h5_point_clouds(path: PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a ScanObjectNN / ModelNet-h5 style file: datasets ``data`` ``[M, N, >=3]`` and ``label`` ``[M]``.

    Returns ``(points float32 [M, N, 3], labels long [M])``; a ``label`` of shape ``[M, 1]`` is flattened. The
    points are returned as stored (no sampling, no normalisation).

    Raises:
        DataError: missing / empty / non-HDF5 file, a missing ``data`` or ``label`` dataset (named), shapes
            that do not match, non-integer labels, or non-finite coordinates.
    """
    import h5py

    where = os.fspath(path)
    check_file(where, "point cloud")
    try:
        handle = h5py.File(where, "r")
    except OSError as exc:
        raise DataError(f"{where}: not a readable HDF5 file ({one_line(exc)})") from None
    with handle:
        for name in ("data", "label"):
            if not isinstance(handle.get(name), h5py.Dataset):
                raise DataError(f"{where}: missing dataset {name!r} (has: {', '.join(sorted(handle)) or 'nothing'})")
        data = np.asarray(handle["data"][()])
        label = np.asarray(handle["label"][()])
    if data.ndim != 3 or data.shape[2] < 3 or not np.issubdtype(data.dtype, np.number):
        raise DataError(f"{where}: dataset 'data' must be numeric [M, N, >=3], got {data.dtype} {list(data.shape)}")
    if label.ndim == 2 and label.shape[1] == 1:
        label = label[:, 0]
    if label.shape != (data.shape[0],):
        raise DataError(f"{where}: dataset 'label' must be [M] = [{data.shape[0]}], got {list(label.shape)}")
    if not np.issubdtype(label.dtype, np.integer):
        raise DataError(f"{where}: dataset 'label' must hold integers, got {label.dtype}")
    xyz = data[..., :3]
    bad = np.argwhere(~np.isfinite(xyz))
    if len(bad):
        cloud, point, _ = bad[0]
        raise DataError(f"{where}: dataset 'data' has a non-finite coordinate in cloud {cloud}, point {point}")
    return torch.from_numpy(xyz.astype(np.float32)), torch.from_numpy(label.astype(np.int64))


def write_ply(path: PathLike, points: ArrayLike) -> Path:
    """Write ``points`` ``[N, 3]`` as an ascii PLY (``float`` x, y, z; 9 significant digits, exact for float32)."""
    array = _as_matrix(points, "points", np.float32)
    header = f"ply\nformat ascii 1.0\nelement vertex {len(array)}\n" + "".join(
        f"property float {axis}\n" for axis in "xyz"
    )
    target = Path(path)
    with open(target, "w", encoding="ascii") as f:
        f.write(header + "end_header\n")
        np.savetxt(f, array, fmt="%.9g")
    return target


def write_off(path: PathLike, vertices: ArrayLike, faces: ArrayLike) -> Path:
    """Write a mesh as OFF: ``vertices`` ``[V, 3]`` (stored as float32) and polygon ``faces`` long ``[F, k >= 3]``."""
    verts = _as_matrix(vertices, "vertices", np.float32)
    polys = np.asarray(faces, dtype=np.int64).reshape(len(faces), -1) if len(faces) else np.zeros((0, 3), np.int64)
    if polys.shape[1] < 3:
        raise ConfigError(f"write_off: faces must be [F, k >= 3], got shape {list(polys.shape)}")
    if polys.size and (polys.min() < 0 or polys.max() >= len(verts)):
        raise ConfigError(f"write_off: face indices must lie in [0, {len(verts)}), got {polys.min()}..{polys.max()}")
    target = Path(path)
    with open(target, "w", encoding="ascii") as f:
        f.write(f"OFF\n{len(verts)} {len(polys)} 0\n")
        np.savetxt(f, verts, fmt="%.9g")
        np.savetxt(f, np.concatenate([np.full((len(polys), 1), polys.shape[1]), polys], axis=1), fmt="%d")
    return target


# ---------------------------------------------------------------------------------------------- sampling


def prepare_points(points: ArrayLike, n_points: int | None = 1024, normalize: bool = True,
                   generator: torch.Generator | None = None, where: str = "points") -> torch.Tensor:
    """Points already in memory (e.g. a row of a ScanObjectNN ``.h5``) → float32 ``[n_points, C]``, checked,
    sampled and normalised exactly as :func:`load_point_cloud` does for a file; ``where`` names the source
    in errors."""
    array = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    if array.ndim != 2:
        raise DataError(f"{where}: points must be [N, C], got shape {list(array.shape)}")
    check_columns(array, where)
    _check_points(array, where)
    out = _resample(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64)), n_points, generator)
    return (_normalize(out) if normalize else out).float()


def _resample(points: torch.Tensor, n_points: int | None, generator: torch.Generator | None) -> torch.Tensor:
    """``[N, C]`` → ``[n_points, C]``: random subset if N > n_points, all points + random repeats if N < n_points."""
    total = points.shape[0]
    if n_points is None or n_points == total:
        return points
    if total > n_points:
        return points[torch.randperm(total, generator=generator)[:n_points]]
    repeats = torch.randint(total, (n_points - total,), generator=generator)
    return torch.cat([points, points[repeats]])


def _normalize(points: torch.Tensor) -> torch.Tensor:
    """Centre ``x, y, z`` (the first 3 of ``[N, C]``) on their mean and scale the farthest point to norm 1."""
    xyz = points[:, :3] - points[:, :3].mean(dim=0)
    radius = xyz.norm(dim=1).max()
    if radius > 0:
        xyz = xyz / radius
    return torch.cat([xyz, points[:, 3:]], dim=1)


def _triangle_areas(corners: torch.Tensor) -> torch.Tensor:
    """Triangle corners ``[F, 3, 3]`` → area of each triangle ``[F]``."""
    a, b, c = corners.unbind(dim=1)
    return 0.5 * torch.linalg.cross(b - a, c - a).norm(dim=1)


# ---------------------------------------------------------------------------------------------- checks


def _check_points(array: np.ndarray, where: str) -> None:
    """0 points and non-finite values (first bad point and column named) are errors."""
    if len(array) == 0:
        raise DataError(f"{where}: point cloud has 0 points")
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        point, column = bad[0]
        raise DataError(f"{where}: non-finite value {array[point, column]} at point {point}, column {column}")


def _as_matrix(values: ArrayLike, name: str, dtype: type) -> np.ndarray:
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ConfigError(f"{name}: expected shape [N, 3], got {list(array.shape)}")
    return array.astype(dtype)
