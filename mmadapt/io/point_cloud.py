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

The PLY and OFF parsers are small numpy readers here, so no mesh library is needed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from mmadapt.errors import ConfigError, DataError
from mmadapt.io._files import check_file, one_line

__all__ = ["load_h5_point_clouds", "load_point_cloud", "prepare_points", "sample_surface", "write_off", "write_ply"]

PathLike = str | os.PathLike[str]
ArrayLike = torch.Tensor | np.ndarray

_PLY_TYPES: dict[str, str] = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_PLY_FORMATS: dict[str, str | None] = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}

Rows = list[tuple[int, str]]  # (1-based line number in the file, text of the line without its comment)
PlyElement = tuple[str, int, list[tuple[str, str | None]]]  # (name, count, [(property, numpy code or None = list)])


def load_point_cloud(
    path: PathLike,
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
    where = os.fspath(path)
    if n_points is not None and (isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 1):
        raise ConfigError(f"n_points: expected a positive int or None, got {n_points!r}")
    suffix = Path(where).suffix.lower()
    if suffix not in _SUFFIXES:
        expected = ", ".join(_SUFFIXES)
        raise DataError(f"{where}: unsupported point cloud extension {suffix!r} (expected one of {expected})")
    check_file(where, "point cloud")
    if suffix == ".off":
        vertices, faces = _read_off(where)
        _check_points(vertices, where)
        vertices_t = torch.from_numpy(vertices)
        faces_t = torch.from_numpy(faces)
        if n_points is not None and len(faces) and _triangle_areas(vertices_t[faces_t]).sum() > 0:
            points = sample_surface(vertices_t, faces_t, n_points, generator)
        else:
            points = _resample(vertices_t, n_points, generator)
    else:
        array = _ARRAY_READERS[suffix](where)
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
    _check_columns(array, where)
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


# ---------------------------------------------------------------------------------------------- readers


def _read_npy(where: str) -> np.ndarray:
    try:
        array = np.load(where, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{where}: not a readable .npy array ({one_line(exc)})") from None
    if array.ndim != 2 or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DataError(f"{where}: expected a numeric array [N, >=3], got {array.dtype} {list(array.shape)}")
    _check_columns(array, where)
    return array


def _read_text(where: str) -> np.ndarray:
    rows = _text_rows(where, comma_is_space=True)
    array = _parse_rows(rows, where)
    _check_columns(array, where)
    return array


def _read_ply(where: str) -> np.ndarray:
    """The ``vertex`` element as float64 ``[N, P]``: x, y, z first, then the other properties in file order."""
    data = _read_bytes(where)
    fmt, elements, body_start = _parse_ply_header(data, where)
    names = [element[0] for element in elements]
    if "vertex" not in names:
        raise DataError(f"{where}: broken PLY header: no 'element vertex' (has: {', '.join(names) or 'none'})")
    position = names.index("vertex")
    _, count, props = elements[position]
    prop_names = [name for name, _ in props]
    missing = [axis for axis in "xyz" if axis not in prop_names]
    if missing:
        raise DataError(f"{where}: PLY vertex element lacks properties {', '.join(missing)}")
    if any(kind is None for _, kind in props):
        raise DataError(f"{where}: PLY vertex element has a list property, which point clouds do not use")
    before = elements[:position]
    if _PLY_FORMATS[fmt] is None:
        table = _ply_ascii_vertices(data, body_start, sum(n for _, n, _ in before), count, len(props), where)
        columns = {name: table[:, i] for i, name in enumerate(prop_names)}
    else:
        columns = _ply_binary_vertices(data, body_start, before, count, props, _PLY_FORMATS[fmt], where)
    order = ["x", "y", "z"] + [name for name in prop_names if name not in ("x", "y", "z")]
    return np.stack([np.asarray(columns[name], dtype=np.float64) for name in order], axis=1)


def _parse_ply_header(data: bytes, where: str) -> tuple[str, list[PlyElement], int]:
    """``(format, elements in file order, byte offset of the body)``; every malformed line is an error."""
    end = data.find(b"end_header")
    if not data.startswith(b"ply"):
        raise DataError(f"{where}: not a PLY file (does not start with 'ply')")
    if end < 0:
        raise DataError(f"{where}: broken PLY header: no 'end_header' line")
    newline = data.find(b"\n", end)
    body_start = len(data) if newline < 0 else newline + 1
    try:
        lines = data[:end].decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{where}: broken PLY header: non-ASCII bytes before 'end_header'") from None
    fmt: str | None = None
    elements: list[PlyElement] = []
    for number, line in enumerate(lines[1:], start=2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) == 3 and words[1] in _PLY_FORMATS:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit():
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and elements and len(words) == 3 and words[1] in _PLY_TYPES:
            elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
        elif (
            words[0] == "property" and elements and len(words) == 5 and words[1] == "list"
            and words[2] in _PLY_TYPES and words[3] in _PLY_TYPES
        ):  # fmt: skip
            elements[-1][2].append((words[4], None))
        else:
            raise DataError(f"{where}: broken PLY header: line {number}: unexpected {line.strip()!r}")
    if fmt is None:
        raise DataError(f"{where}: broken PLY header: no 'format ascii|binary_little_endian|binary_big_endian 1.0'")
    for name, _, props in elements:
        prop_names = [prop for prop, _ in props]
        if len(set(prop_names)) != len(prop_names):
            raise DataError(f"{where}: broken PLY header: element {name!r} repeats a property name")
    return fmt, elements, body_start


def _ply_ascii_vertices(data: bytes, body_start: int, skip: int, count: int, n_props: int, where: str) -> np.ndarray:
    header_lines = data[:body_start].count(b"\n")
    try:
        text = data[body_start:].decode("ascii")
    except UnicodeDecodeError:
        raise DataError(f"{where}: ascii PLY body has non-ASCII bytes") from None
    rows = [(number, line) for number, line in enumerate(text.splitlines(), start=header_lines + 1) if line.strip()]
    vertex_rows = rows[skip : skip + count]
    if len(vertex_rows) < count:
        raise DataError(f"{where}: truncated PLY: header says {count} vertices, found {len(vertex_rows)} vertex lines")
    if not count:
        return np.zeros((0, n_props))
    return _parse_rows(vertex_rows, where, n_columns=n_props)


def _ply_binary_vertices(
    data: bytes,
    body_start: int,
    before: list[PlyElement],
    count: int,
    props: list[tuple[str, str | None]],
    endian: str,
    where: str,
) -> np.ndarray:
    offset = body_start
    for name, n, element_props in before:
        if any(kind is None for _, kind in element_props):
            raise DataError(f"{where}: binary PLY with list element {name!r} before 'vertex' is not supported")
        offset += n * np.dtype([(prop, endian + str(kind)) for prop, kind in element_props]).itemsize
    dtype = np.dtype([(name, endian + str(kind)) for name, kind in props])
    needed = count * dtype.itemsize
    if len(data) - offset < needed:
        raise DataError(
            f"{where}: truncated PLY: {count} vertices need {needed} bytes, the body has {max(len(data) - offset, 0)}"
        )
    return np.frombuffer(data, dtype=dtype, count=count, offset=offset)


def _read_off(where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices float64 [V, 3], triangles int64 [T, 3])``; polygons are split into fans of triangles."""
    rows = _text_rows(where, comma_is_space=False)
    if not rows or not rows[0][1].lstrip().startswith("OFF"):
        first = rows[0][1].strip() if rows else ""
        raise DataError(f"{where}: not an OFF file (first line {first[:40]!r} does not start with 'OFF')")
    glued = rows[0][1].lstrip()[3:].strip()  # ModelNet writes "OFF490 518 0"
    if glued:
        (counts_number, _), counts_text, data = rows[0], glued, rows[1:]
    elif len(rows) > 1:
        (counts_number, counts_text), data = rows[1], rows[2:]
    else:
        raise DataError(f"{where}: OFF file has no counts line")
    words = counts_text.split()
    if len(words) not in (2, 3) or not all(word.isdigit() for word in words):
        raise DataError(
            f"{where}: line {counts_number}: malformed OFF counts, expected 'n_vertices n_faces n_edges', "
            f"got {counts_text.strip()[:40]!r}"
        )
    n_vertices, n_faces = int(words[0]), int(words[1])
    if len(data) != n_vertices + n_faces:
        raise DataError(
            f"{where}: OFF counts say {n_vertices} vertices + {n_faces} faces = {n_vertices + n_faces} lines, "
            f"but {len(data)} lines follow the counts line"
        )
    if not n_vertices:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    vertices = _parse_rows(data[:n_vertices], where)
    if vertices.shape[1] < 3:
        raise DataError(f"{where}: line {data[0][0]}: OFF vertex has {vertices.shape[1]} coordinates, expected 3")
    return vertices[:, :3], _parse_faces(data[n_vertices:], n_vertices, where)


def _parse_faces(rows: Rows, n_vertices: int, where: str) -> np.ndarray:
    """OFF face lines ``k i_1 .. i_k [colour]`` → triangles int64 ``[T, 3]`` (fan split), indices checked."""
    if not rows:
        return np.zeros((0, 3), np.int64)
    numbers = np.array([number for number, _ in rows])
    try:  # fast path: every face has the same k and integer-only columns
        table = np.loadtxt([line for _, line in rows], dtype=np.int64, ndmin=2)
        size = int(table[0, 0])
        uniform = bool((table[:, 0] == size).all()) and 3 <= size <= table.shape[1] - 1
    except ValueError:
        uniform = False
    if uniform:
        polygons = table[:, 1 : 1 + size]
        triangles = np.concatenate([polygons[:, [0, j, j + 1]] for j in range(1, size - 1)])
        owners = np.tile(numbers, size - 2)
    else:
        fans = [(number, _parse_face(number, line, where)) for number, line in rows]
        triangles = np.array([(idx[0], idx[j], idx[j + 1]) for _, idx in fans for j in range(1, len(idx) - 1)])
        owners = np.array([number for number, idx in fans for _ in range(len(idx) - 2)])
    bad = np.flatnonzero((triangles < 0).any(axis=1) | (triangles >= n_vertices).any(axis=1))
    if len(bad):
        raise DataError(
            f"{where}: line {owners[bad[0]]}: OFF face refers to a vertex outside [0, {n_vertices}) "
            f"({triangles[bad[0]].tolist()})"
        )
    return triangles


def _parse_face(number: int, line: str, where: str) -> list[int]:
    words = line.split()
    try:
        size = int(words[0])
        indices = [int(word) for word in words[1 : 1 + size]]
    except ValueError:
        raise DataError(f"{where}: line {number}: malformed OFF face {line.strip()[:40]!r}") from None
    if size < 3 or len(indices) != size:
        raise DataError(f"{where}: line {number}: malformed OFF face {line.strip()[:40]!r} (need k >= 3 indices)")
    return indices


# ---------------------------------------------------------------------------------------------- text helpers


def _text_rows(where: str, comma_is_space: bool) -> Rows:
    """Non-blank lines of a text file, ``#`` comments removed, with their 1-based line numbers."""
    try:
        text = _read_bytes(where).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not a text file ({exc.reason} at byte {exc.start})") from None
    if comma_is_space:
        text = text.replace(",", " ")
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0]
        if content.strip():
            rows.append((number, content))
    return rows


def _parse_rows(rows: Rows, where: str, n_columns: int | None = None) -> np.ndarray:
    """Parse whitespace-separated numbers, one row per line, into float64 ``[R, C]``.

    All rows must have the same number of values (``n_columns`` if given). A bad line is reported with its
    line number; the fast numpy parser runs first and the line-by-line scan only looks for the culprit.
    """
    if not rows:
        return np.zeros((0, n_columns or 3))
    try:
        table = np.loadtxt([line for _, line in rows], dtype=np.float64, ndmin=2)
        if n_columns is None or table.shape[1] == n_columns:
            return table
    except ValueError:
        pass
    expected = n_columns if n_columns is not None else len(rows[0][1].split())
    for number, line in rows:
        words = line.split()
        if len(words) != expected:
            raise DataError(f"{where}: line {number}: expected {expected} values, got {len(words)}")
        for word in words:
            try:
                float(word)
            except ValueError:
                raise DataError(f"{where}: line {number}: not a number: {word[:40]!r}") from None
    raise DataError(f"{where}: cannot parse the numbers in this file")


def _read_bytes(where: str) -> bytes:
    try:
        return Path(where).read_bytes()
    except OSError as exc:
        raise DataError(f"{where}: cannot read file ({one_line(exc)})") from None


# ---------------------------------------------------------------------------------------------- checks


def _check_columns(array: np.ndarray, where: str) -> None:
    if array.shape[1] < 3:
        raise DataError(f"{where}: points need at least 3 columns (x, y, z), got {array.shape[1]}")


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


_ARRAY_READERS = {".npy": _read_npy, ".txt": _read_text, ".xyz": _read_text, ".ply": _read_ply}
_SUFFIXES = (*_ARRAY_READERS, ".off")
