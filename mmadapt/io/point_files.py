"""The point-cloud file parsers behind :func:`mmadapt.io.point_cloud.load_point_cloud`: ``.npy``, text
(``.txt`` / ``.xyz``), ``.ply`` (ascii and binary) and ``.off`` meshes, each returning a float array
(``read_off``: vertices and triangle faces). Small numpy readers, so no mesh library is needed; every
failure is a one-line :class:`~mmadapt.errors.DataError` that starts with the path. Each reader takes a path
or a member of a WebDataset shard (:class:`~mmadapt.io.shard_member.ShardMember`, named ``shard.tar:member``)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from mmadapt.errors import DataError
from mmadapt.io._files import one_line
from mmadapt.io.shard_member import MediaBlob, MediaSource, source_name

_PLY_TYPES: dict[str, str] = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_PLY_FORMATS: dict[str, str | None] = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}

Rows = list[tuple[int, str]]  # (1-based line number in the file, text of the line without its comment)
PlyElement = tuple[str, int, list[tuple[str, str | None]]]  # (name, count, [(property, numpy code or None = list)])




def _read_npy(source: MediaSource) -> np.ndarray:
    where = source_name(source)
    try:
        array = np.load(io.BytesIO(source.read()) if isinstance(source, MediaBlob) else where, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{where}: not a readable .npy array ({one_line(exc)})") from None
    if array.ndim != 2 or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DataError(f"{where}: expected a numeric array [N, >=3], got {array.dtype} {list(array.shape)}")
    check_columns(array, where)
    return array


def _read_text(source: MediaSource) -> np.ndarray:
    where = source_name(source)
    rows = _text_rows(source, comma_is_space=True)
    array = _parse_rows(rows, where)
    check_columns(array, where)
    return array


def _read_ply(source: MediaSource) -> np.ndarray:
    """The ``vertex`` element as float64 ``[N, P]``: x, y, z first, then the other properties in file order."""
    where = source_name(source)
    data = _read_bytes(source)
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


def read_off(source: MediaSource) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices float64 [V, 3], triangles int64 [T, 3])``; polygons are split into fans of triangles."""
    where = source_name(source)
    rows = _text_rows(source, comma_is_space=False)
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


def _text_rows(source: MediaSource, comma_is_space: bool) -> Rows:
    """Non-blank lines of a text file, ``#`` comments removed, with their 1-based line numbers."""
    where = source_name(source)
    try:
        text = _read_bytes(source).decode("utf-8")
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


def _read_bytes(source: MediaSource) -> bytes:
    if isinstance(source, MediaBlob):
        return source.read()
    where = source_name(source)
    try:
        return Path(where).read_bytes()
    except OSError as exc:
        raise DataError(f"{where}: cannot read file ({one_line(exc)})") from None


def check_columns(array: np.ndarray, where: str) -> None:
    if array.shape[1] < 3:
        raise DataError(f"{where}: points need at least 3 columns (x, y, z), got {array.shape[1]}")


ARRAY_READERS = {".npy": _read_npy, ".txt": _read_text, ".xyz": _read_text, ".ply": _read_ply}
SUFFIXES = (*ARRAY_READERS, ".off")
