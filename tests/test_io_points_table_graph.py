"""Point cloud, table and graph loaders, and the synthetic point / tabular / graph sets, on real files."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import h5py
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_wine

from mmadapt.data.formats.sklearn_table import sklearn_table_schema, write_sklearn_table
from mmadapt.data.synthetic.graph import CLASSES as GRAPH_CLASSES
from mmadapt.data.synthetic.graph import write_graph_dataset
from mmadapt.data.synthetic.points import CLASSES as SHAPE_CLASSES
from mmadapt.data.synthetic.points import write_point_cloud_dataset
from mmadapt.data.synthetic.tabular import COLOURS, SIZES, tabular_schema, write_tabular_dataset
from mmadapt.errors import ConfigError, DataError
from mmadapt.io.graph import Graph, from_networkx, load_graph, structural_encodings
from mmadapt.io.point_cloud import load_h5_point_clouds, load_point_cloud, write_off, write_ply
from mmadapt.io.table import TableSchema, load_table


def _data_error(call, path: Path, *words: str) -> str:
    """``call()`` must raise a one-line DataError that names ``path`` and contains each of ``words``."""
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ================================================================================================ point clouds

CUBE_VERTICES = np.array([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)])
CUBE_QUADS = np.array([(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)])
CUBE_TRIANGLES = np.concatenate([CUBE_QUADS[:, [0, 1, 2]], CUBE_QUADS[:, [0, 2, 3]]])


def _cloud(n: int = 50) -> np.ndarray:
    """A float32 cloud far from the origin and not unit-sized, so normalisation has work to do."""
    rng = np.random.default_rng(0)
    return (rng.normal(size=(n, 3)) * [3.0, 1.0, 0.5] + [10.0, -4.0, 2.0]).astype(np.float32)


def _normalized(points: np.ndarray) -> np.ndarray:
    centred = points.astype(np.float64) - points.astype(np.float64).mean(axis=0)
    return centred / np.linalg.norm(centred, axis=1).max()


def _binary_ply(path: Path, points: np.ndarray, endian: str) -> None:
    """x, y, z as float, a double nx and a uchar red per vertex, then a face element (list property)."""
    vertex = np.zeros(len(points), dtype=[("x", f"{endian}f4"), ("nx", f"{endian}f8"), ("y", f"{endian}f4"),
                                          ("z", f"{endian}f4"), ("red", "u1")])  # fmt: skip
    vertex["x"], vertex["y"], vertex["z"] = points.T
    vertex["nx"] = np.arange(len(points)) * 0.5
    vertex["red"] = 200
    face_bytes = bytes([3]) + np.array([0, 1, 2], dtype=f"{endian}i4").tobytes()  # uchar count, int indices
    fmt = "binary_little_endian" if endian == "<" else "binary_big_endian"
    header = (
        f"ply\nformat {fmt} 1.0\ncomment made by hand\nelement vertex {len(points)}\nproperty float x\n"
        "property double nx\nproperty float y\nproperty float z\nproperty uchar red\nelement face 1\n"
        "property list uchar int vertex_indices\nend_header\n"
    )
    path.write_bytes(header.encode("ascii") + vertex.tobytes() + face_bytes)


def test_a_cloud_round_trips_through_every_format(tmp_path: Path) -> None:
    cloud = _cloud()
    np.save(tmp_path / "a.npy", cloud)
    lines = "\n".join(",".join(f"{v:.9g}" for v in row) for row in cloud)
    (tmp_path / "a.txt").write_text("# x,y,z\n" + lines + "\n\n")
    (tmp_path / "a.xyz").write_text(lines.replace(",", " ") + "\n")
    write_ply(tmp_path / "a.ply", cloud)
    _binary_ply(tmp_path / "le.ply", cloud, "<")
    _binary_ply(tmp_path / "be.ply", cloud, ">")
    write_off(tmp_path / "a.off", cloud, np.zeros((0, 3), np.int64))  # no faces: the vertices are the cloud
    expected = _normalized(cloud)
    for name in ("a.npy", "a.txt", "a.xyz", "a.ply", "le.ply", "be.ply", "a.off"):
        points = load_point_cloud(tmp_path / name, n_points=None)
        assert points.dtype == torch.float32 and points.shape == (50, 3), name
        np.testing.assert_allclose(points.numpy(), expected, atol=1e-6, err_msg=name)
        raw = load_point_cloud(tmp_path / name, n_points=None, normalize=False)
        np.testing.assert_array_equal(raw.numpy(), cloud, err_msg=name)


def test_keep_extra_returns_the_other_columns_in_file_order(tmp_path: Path) -> None:
    cloud = _cloud(10)
    _binary_ply(tmp_path / "le.ply", cloud, "<")
    points = load_point_cloud(tmp_path / "le.ply", n_points=None, keep_extra=True)
    assert points.shape == (10, 5)  # x, y, z, nx, red
    np.testing.assert_allclose(points[:, :3].numpy(), _normalized(cloud), atol=1e-6)
    np.testing.assert_array_equal(points[:, 3].numpy(), np.arange(10) * 0.5)  # extras are not normalised
    np.testing.assert_array_equal(points[:, 4].numpy(), np.full(10, 200.0))
    modelnet = np.concatenate([cloud, np.tile([0.0, 0.0, 1.0], (10, 1))], axis=1)  # x,y,z,nx,ny,nz
    np.savetxt(tmp_path / "m.txt", modelnet, fmt="%.9g", delimiter=",")
    assert load_point_cloud(tmp_path / "m.txt", n_points=None).shape == (10, 3)
    with_normals = load_point_cloud(tmp_path / "m.txt", n_points=None, keep_extra=True)
    np.testing.assert_array_equal(with_normals[:, 3:].numpy(), modelnet[:, 3:])


def test_normalisation_centres_on_the_mean_and_scales_the_farthest_point_to_one(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", _cloud(300))
    points = load_point_cloud(tmp_path / "a.npy", n_points=128, generator=_seeded(0)).double()
    assert torch.allclose(points.mean(dim=0), torch.zeros(3, dtype=torch.float64), atol=1e-6)
    assert points.norm(dim=1).max().item() == pytest.approx(1.0, abs=1e-6)


def test_sampling_down_and_up_is_deterministic_given_a_generator(tmp_path: Path) -> None:
    cloud = _cloud(100)
    np.save(tmp_path / "a.npy", cloud)
    rows = {tuple(row) for row in cloud.tolist()}

    def load(n: int, seed: int) -> np.ndarray:
        return load_point_cloud(tmp_path / "a.npy", n_points=n, normalize=False, generator=_seeded(seed)).numpy()

    down = load(30, 0)
    assert down.shape == (30, 3) and len({tuple(r) for r in down.tolist()}) == 30  # without replacement
    assert {tuple(r) for r in down.tolist()} <= rows
    np.testing.assert_array_equal(down, load(30, 0))
    assert not np.array_equal(down, load(30, 1))
    up = load(250, 0)
    assert up.shape == (250, 3)
    np.testing.assert_array_equal(up[:100], cloud)  # every point kept, then random repeats
    assert {tuple(r) for r in up.tolist()} == rows
    np.testing.assert_array_equal(up, load(250, 0))
    assert not np.array_equal(up, load(250, 1))
    np.testing.assert_array_equal(load(100, 5), cloud)  # exactly n points: the file's order


def test_off_surface_samples_lie_on_the_faces_and_follow_their_area(tmp_path: Path) -> None:
    write_off(tmp_path / "cube.off", CUBE_VERTICES, CUBE_TRIANGLES)
    points = load_point_cloud(tmp_path / "cube.off", n_points=3000, normalize=False, generator=_seeded(0)).numpy()
    assert points.shape == (3000, 3)
    np.testing.assert_allclose(np.abs(points).max(axis=1), 1.0, atol=1e-6)  # on a face of the unit cube
    assert np.abs(points).max() <= 1 + 1e-6
    face = np.abs(points).argmax(axis=1) * 2 + (points[np.arange(3000), np.abs(points).argmax(axis=1)] > 0)
    assert np.bincount(face, minlength=6).min() > 3000 / 6 * 0.8  # equal areas, equal shares
    again = load_point_cloud(tmp_path / "cube.off", n_points=3000, normalize=False, generator=_seeded(0))
    np.testing.assert_array_equal(again.numpy(), points)
    # Each triangle gets points in proportion to its area.
    write_off(tmp_path / "two.off", [[0, 0, 0], [3, 0, 0], [0, 2, 0], [0, 0, 1], [0, 1, 1]], [[0, 1, 2], [0, 3, 4]])
    two = load_point_cloud(tmp_path / "two.off", n_points=4000, normalize=False, generator=_seeded(1)).numpy()
    on_big = np.isclose(two[:, 2], 0.0)
    assert on_big.mean() == pytest.approx(3 / 3.5, abs=0.03)  # areas 3 and 0.5


def test_modelnet_off_with_glued_header_comments_and_quads(tmp_path: Path) -> None:
    vertex_lines = "\n".join(" ".join(f"{v:g}" for v in row) for row in CUBE_VERTICES)
    quad_lines = "\n".join("4 " + " ".join(map(str, quad)) for quad in CUBE_QUADS)
    path = tmp_path / "chair_0001.off"
    path.write_text(f"OFF8 6 0\n# ModelNet glues the counts to OFF\n{vertex_lines}\n{quad_lines}\n")
    points = load_point_cloud(path, n_points=600, normalize=False, generator=_seeded(0)).numpy()
    np.testing.assert_allclose(np.abs(points).max(axis=1), 1.0, atol=1e-6)
    mixed = tmp_path / "mixed.off"  # a quad and a triangle: the slow, per-line face parser
    mixed.write_text("OFF\n4 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n3 0 1 2\n")
    flat = load_point_cloud(mixed, n_points=200, normalize=False, generator=_seeded(0)).numpy()
    assert np.all(flat[:, 2] == 0) and flat[:, :2].min() >= 0 and flat[:, :2].max() <= 1


def test_h5_point_clouds(tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(size=(4, 16, 3)).astype(np.float32)
    with h5py.File(tmp_path / "scan.h5", "w") as f:
        f["data"] = data
        f["label"] = np.array([[3], [0], [1], [3]], dtype=np.uint8)  # ModelNet h5 stores [M, 1]
    points, labels = load_h5_point_clouds(tmp_path / "scan.h5")
    assert points.shape == (4, 16, 3) and points.dtype == torch.float32
    np.testing.assert_array_equal(points.numpy(), data)
    assert labels.dtype == torch.long and labels.tolist() == [3, 0, 1, 3]
    with h5py.File(tmp_path / "nolabel.h5", "w") as f:
        f["data"] = data
    _data_error(lambda: load_h5_point_clouds(tmp_path / "nolabel.h5"), tmp_path / "nolabel.h5", "'label'")


PLY_HEAD = "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("empty.txt", "", ["empty file (0 bytes)"]),
        ("a.stl", "solid x\n", ["unsupported", ".stl"]),
        ("none.npy", None, ["0 points"]),
        ("comments.txt", "# only a comment\n", ["0 points"]),
        ("nan.txt", "0 0 0\n1 1 1\nnan 2 2\n", ["non-finite", "point 2"]),
        ("inf.xyz", "0 0 inf\n", ["non-finite", "point 0"]),
        ("two.txt", "0 0\n1 1\n", ["at least 3 columns"]),
        ("ragged.txt", "0 0 0\n1 1\n", ["line 2", "expected 3 values"]),
        ("word.txt", "0 0 0\n1 one 1\n", ["line 2", "'one'"]),
        ("noend.ply", PLY_HEAD + "0 0 0\n1 1 1\n", ["broken PLY header", "end_header"]),
        ("badprop.ply", PLY_HEAD.replace("float y", "quaternion y") + "end_header\n0 0 0\n", ["line 5"]),
        ("noply.ply", "PLY?\n", ["not a PLY file"]),
        ("novertex.ply", "ply\nformat ascii 1.0\nelement face 0\nend_header\n", ["no 'element vertex'"]),
        ("short.ply", PLY_HEAD + "end_header\n0 0 0\n", ["truncated", "2 vertices"]),
        ("cut.ply", None, ["truncated", "need 24 bytes"]),
        ("counts.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n3 0 2 1\n", ["3 vertices + 1 faces", "5 lines"]),
        ("badcounts.off", "OFF\nthree 1 0\n", ["line 2", "malformed OFF counts"]),
        ("outside.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", ["line 6", "outside [0, 3)"]),
        ("notoff.off", "PLY\n", ["not an OFF file"]),
    ],
)
def test_bad_point_cloud_files_raise_one_line_errors(tmp_path: Path, name: str, content, words) -> None:
    path = tmp_path / name
    if name == "none.npy":
        np.save(path, np.zeros((0, 3), np.float32))
    elif name == "cut.ply":
        path.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty float x\n"
                         b"property float y\nproperty float z\nend_header\n" + bytes(20))  # fmt: skip
    else:
        path.write_text(content)
    _data_error(lambda: load_point_cloud(path), path, *words)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    _data_error(lambda: load_point_cloud(tmp_path / "nope.npy"), tmp_path / "nope.npy", "file not found")
    (tmp_path / "dir.ply").mkdir()
    _data_error(lambda: load_point_cloud(tmp_path / "dir.ply"), tmp_path / "dir.ply", "directory")
    with pytest.raises(ConfigError, match="n_points"):
        load_point_cloud(tmp_path / "nope.npy", n_points=0)


# ================================================================================================ tables

TRAIN_CSV = """age,score,colour,label
31,0.5,red,yes
,1.25, blue ,no
40,-2,,yes
27,NA,green,no
"""


def test_table_values_missing_values_and_unseen_categories(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text(TRAIN_CSV)
    schema = TableSchema(numeric=["score", "age"], categorical=["colour"], target="label")
    data = load_table(tmp_path / "train.csv", schema)
    nan = float("nan")
    torch.testing.assert_close(
        data.numeric, torch.tensor([[0.5, 31], [1.25, nan], [-2, 40], [nan, 27]]), equal_nan=True, rtol=0, atol=0
    )
    assert data.schema.categories == {"colour": ["blue", "green", "red"], "label": ["no", "yes"]}
    assert data.categorical.tolist() == [[3], [1], [0], [2]]  # " blue " is "blue"; missing → 0
    assert data.target.dtype == torch.long and data.target.tolist() == [1, 0, 1, 0]
    assert data.columns == ["score", "age", "colour"] and len(data) == 4
    assert data.schema.cardinalities == [4] and data.schema.classes == ["no", "yes"]
    (tmp_path / "val.csv").write_text("label,colour,age,score,extra\nno,purple,1,2,x\nyes,red,3,4,y\n")
    val = load_table(tmp_path / "val.csv", data.schema)  # the training table's categories
    assert val.categorical.tolist() == [[0], [3]]  # unseen "purple" → 0
    assert val.target.tolist() == [0, 1]
    assert val.numeric.tolist() == [[2.0, 1.0], [4.0, 3.0]]


def test_csv_and_parquet_give_identical_table_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "x": rng.normal(size=20),
        "n": pd.array(rng.integers(0, 5, 20), dtype="Int64"),
        "city": rng.choice(["oslo", "rome", "lima"], 20),
        "code": pd.array(rng.integers(1, 4, 20), dtype="Int64"),  # integer categories compare as "1", "2", ...
        "y": rng.choice(["a", "b", "c"], 20),
    })  # fmt: skip
    frame.loc[[2, 7], "x"] = np.nan
    frame.loc[[3], "n"] = pd.NA
    frame.loc[[4, 5], "city"] = None
    frame.loc[[6], "code"] = pd.NA
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    schema = TableSchema(numeric=["x", "n"], categorical=["city", "code"], target="y")
    from_csv, from_parquet = load_table(tmp_path / "t.csv", schema), load_table(tmp_path / "t.parquet", schema)
    torch.testing.assert_close(from_csv.numeric, from_parquet.numeric, equal_nan=True, rtol=0, atol=0)
    assert torch.equal(from_csv.categorical, from_parquet.categorical)
    assert torch.equal(from_csv.target, from_parquet.target)
    assert from_csv.schema == from_parquet.schema
    assert from_csv.schema.categories["code"] == ["1", "2", "3"]
    assert from_csv.numeric[:, 0].isnan().nonzero().flatten().tolist() == [2, 7]
    assert (from_csv.categorical[:, 0] == 0).nonzero().flatten().tolist() == [4, 5]


def test_target_kinds(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,price,klass\n1,2.5,0\n2,3.75,1\n3,1,1\n")
    regression = load_table(tmp_path / "t.csv", TableSchema(["a"], [], target="price"))
    assert regression.schema.target_kind == "numeric" and regression.target.dtype == torch.float32
    assert regression.target.tolist() == [2.5, 3.75, 1.0]
    classes = load_table(tmp_path / "t.csv", TableSchema(["a"], [], target="klass"))  # integer ids → classes
    assert classes.schema.target_kind == "categorical" and classes.target.tolist() == [0, 1, 1]
    forced = load_table(tmp_path / "t.csv", TableSchema(["a"], [], target="klass", target_kind="numeric"))
    assert forced.target.tolist() == [0.0, 1.0, 1.0]
    assert load_table(tmp_path / "t.csv", TableSchema(["a", "price"], [])).target is None


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("missing.csv", "a,b\n1,2\n", ["missing column(s) 'colour', 'label'", "the table has: a, b"]),
        ("text.csv", "a,colour,label\n1,red,x\n2,red,x\nabc,red,x\n", ["column 'a'", "row 2", "line 4", "'abc'"]),
        ("inf.csv", "a,colour,label\ninf,red,x\n", ["column 'a'", "row 0", "not a finite number"]),
        ("header.csv", "a,colour,label\n", ["no data rows"]),
        ("blank.csv", "\n\n", ["no header line"]),
        ("empty.csv", "", ["empty file (0 bytes)"]),
        ("table.xlsx", "a", ["unsupported table extension"]),
        ("notarget.csv", "a,colour,label\n1,red,\n", ["column 'label'", "row 0", "missing target"]),
        ("ragged.csv", "a,colour,label\n1,red,x\n1,2,3,4,5\n", ["cannot parse CSV", "line 3"]),
    ],
)
def test_bad_tables_raise_one_line_errors(tmp_path: Path, name: str, content: str, words: list[str]) -> None:
    path = tmp_path / name
    path.write_text(content)
    schema = TableSchema(numeric=["a"], categorical=["colour"], target="label")
    _data_error(lambda: load_table(path, schema), path, *words)


def test_unknown_target_class_and_bad_schemas(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,label\n1,cat\n2,emu\n")
    schema = TableSchema(["a"], [], target="label", categories={"label": ["cat", "dog"]})
    _data_error(lambda: load_table(tmp_path / "t.csv", schema), tmp_path / "t.csv", "row 1", "unknown class 'emu'")
    _data_error(lambda: load_table(tmp_path / "no.csv", schema), tmp_path / "no.csv", "file not found")
    with pytest.raises(ConfigError, match="'a'"):
        TableSchema(["a"], ["a"])
    with pytest.raises(ConfigError, match="at least one"):
        TableSchema([], [], target="y")


# ================================================================================================ graphs

EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (3, 4)]  # a 4-cycle with a tail; node 5 is isolated


def _check_canonical(graph: Graph) -> None:
    pairs = graph.edge_index.T.tolist()
    assert all(u != v for u, v in pairs)
    assert len(set(map(tuple, pairs))) == len(pairs)
    assert {(v, u) for u, v in pairs} == set(map(tuple, pairs))
    assert pairs == sorted(pairs)


def test_every_graph_format_gives_the_same_graph(tmp_path: Path) -> None:
    g = nx.Graph()
    g.add_nodes_from(range(6))
    g.add_edges_from(EDGES)
    (tmp_path / "g.json").write_text(json.dumps(nx.node_link_data(g)))
    legacy = nx.node_link_data(g)
    legacy["links"] = legacy.pop("edges")  # networkx < 3.4 wrote "links"
    (tmp_path / "legacy.json").write_text(json.dumps(legacy))
    # The simple form with a duplicate, a reversed duplicate and a self loop, which are dropped.
    (tmp_path / "simple.json").write_text(json.dumps({"num_nodes": 6, "edges": [*EDGES, [0, 1], [1, 0], [2, 2]]}))
    nx.write_edgelist(nx.Graph(EDGES), tmp_path / "g.edgelist")  # "u v {}" lines, no isolated node 5
    (tmp_path / "g.txt").write_text("# comment\n" + "\n".join(f"{v} {u}" for u, v in EDGES) + "\n5 5\n")
    nx.write_graphml(g, tmp_path / "g.graphml")
    expected = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3, 3, 4], [1, 3, 0, 2, 1, 3, 0, 2, 4, 3]])
    for name in ("g.json", "legacy.json", "simple.json", "g.txt", "g.graphml"):
        graph = load_graph(tmp_path / name)
        assert graph.num_nodes == 6 and graph.num_edges == 5, name
        assert torch.equal(graph.edge_index, expected), name
        _check_canonical(graph)
    from_edges = load_graph(tmp_path / "g.edgelist")
    assert from_edges.num_nodes == 5 and torch.equal(from_edges.edge_index, expected)
    assert torch.equal(from_networkx(g).edge_index, expected)


def test_node_ids_features_and_construction(tmp_path: Path) -> None:
    g = nx.Graph()
    g.add_node("b", features=[1.0, 2.0])
    g.add_node("a", features=[3.0, 4.0])
    g.add_edge("a", "b")
    (tmp_path / "named.json").write_text(json.dumps(nx.node_link_data(g)))
    graph = load_graph(tmp_path / "named.json")  # string ids: numbered in file order, b = 0, a = 1
    assert graph.edge_index.tolist() == [[0, 1], [1, 0]]
    assert graph.node_features.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    shuffled = nx.Graph()
    shuffled.add_nodes_from([2, 0, 1])  # ids 0..n-1 in another order: the ids are the indices
    shuffled.add_edge(2, 0)
    assert from_networkx(shuffled).edge_index.tolist() == [[0, 2], [2, 0]]
    (tmp_path / "f.json").write_text(json.dumps({"num_nodes": 2, "edges": [[0, 1]], "node_features": [[1], [2]]}))
    assert load_graph(tmp_path / "f.json").node_features.tolist() == [[1.0], [2.0]]
    assert Graph(3, torch.tensor([[2], [1]])).edge_index.tolist() == [[1, 2], [2, 1]]


def _laplacian(graph: Graph) -> np.ndarray:
    adjacency = nx.to_numpy_array(nx.Graph(graph.edge_index.T.tolist()), nodelist=range(graph.num_nodes))
    scale = 1 / np.sqrt(adjacency.sum(axis=1))
    return np.eye(graph.num_nodes) - scale[:, None] * adjacency * scale[None, :]


@pytest.mark.parametrize(
    ("graph", "eigenvalues"),
    [
        (nx.cycle_graph(10), sorted(1 - math.cos(2 * math.pi * j / 10) for j in range(10))[1:6]),
        (nx.path_graph(9), [1 - math.cos(math.pi * j / 8) for j in range(1, 6)]),
    ],
    ids=["cycle", "path"],
)
def test_laplacian_eigenvectors_satisfy_the_eigen_equation(graph: nx.Graph, eigenvalues: list[float]) -> None:
    g = from_networkx(graph)
    degree, lap_pe = structural_encodings(g, k=5)
    assert degree.dtype == torch.long and degree.tolist() == [d for _, d in sorted(graph.degree)]
    assert lap_pe.shape == (g.num_nodes, 5) and lap_pe.dtype == torch.float32
    laplacian = _laplacian(g)
    vectors = lap_pe.double().numpy()
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(5), atol=1e-5)  # orthonormal
    found = np.einsum("nk,nm,mk->k", vectors, laplacian, vectors)  # Rayleigh quotients
    np.testing.assert_allclose(found, eigenvalues, atol=1e-5)
    np.testing.assert_allclose(laplacian @ vectors, vectors * found, atol=1e-5)  # L v = λ v
    assert np.all(vectors.max(axis=0) >= np.abs(vectors).max(axis=0) - 1e-6)  # sign: the largest entry is positive


def test_laplacian_encodings_are_zero_padded_for_small_graphs() -> None:
    degree, lap_pe = structural_encodings(from_networkx(nx.path_graph(4)), k=8)
    assert degree.tolist() == [1, 2, 2, 1]
    assert lap_pe.shape == (4, 8)
    assert torch.all(lap_pe[:, 3:] == 0) and torch.all(lap_pe[:, :3].norm(dim=0) > 0.99)


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("bad.json", '{"num_nodes": 3, "edges": [[0, 1],]}', ["invalid JSON", "line 1 column"]),
        ("out.json", '{"num_nodes": 3, "edges": [[0, 1], [1, 3]]}', ["edges[1]", "outside [0, 3)"]),
        ("neg.json", '{"num_nodes": 3, "edges": [[-1, 1]]}', ["edges[0]", "outside [0, 3)"]),
        ("pair.json", '{"num_nodes": 3, "edges": [[0, 1, 2]]}', ["edges[0]", "expected [u, v]"]),
        ("zero.json", '{"num_nodes": 0, "edges": []}', ["empty graph"]),
        (
            "link.json",
            '{"nodes": [{"id": 0}, {"id": 1}], "edges": [{"source": 0, "target": 9}]}',
            ["edges[0].target", "9"],
        ),
        ("other.json", "[1, 2]", ["expected node-link JSON"]),
        ("feat.json", '{"num_nodes": 2, "edges": [], "node_features": [[1], [2], [3]]}', ["node_features", "[3, 1]"]),
        ("words.txt", "0 1\n1 two\n", ["line 2", "integer node ids"]),
        ("neg.edgelist", "0 1\n-2 1\n", ["line 2", "outside [0, n)"]),
        ("empty.edgelist", "# nothing\n", ["empty graph"]),
        ("zero.txt", "", ["empty file (0 bytes)"]),
        ("g.gml", "graph []", ["unsupported graph extension"]),
        ("broken.graphml", "<graphml><graph>", ["cannot parse GraphML"]),
    ],
)
def test_bad_graph_files_raise_one_line_errors(tmp_path: Path, name: str, content: str, words: list[str]) -> None:
    path = tmp_path / name
    path.write_text(content)
    _data_error(lambda: load_graph(path), path, *words)


def _node_link(n: int) -> str:
    return json.dumps({"nodes": [{"id": i} for i in range(n)], "links": [{"source": 0, "target": n - 1}]})


@pytest.mark.parametrize(
    ("name", "content", "max_nodes", "words"),
    [
        ("huge.edgelist", "0 1\n1 2000000000\n", 100,
         ["2000000001 nodes (an edge list numbers nodes 0 .. its largest id, 2000000000), more than max_nodes=100"]),
        ("huge.json", '{"num_nodes": 1000000000000, "edges": []}', 100,
         ["1000000000000 nodes (num_nodes), more than max_nodes=100"]),
        ("huge_default.json", '{"num_nodes": 1000000000000, "edges": []}', None,
         ["1000000000000 nodes (num_nodes), more than max_nodes=2147483648"]),
        ("many.json", _node_link(101), 100, ["101 nodes, more than max_nodes=100"]),
    ],
)
def test_graphs_over_max_nodes_are_refused_before_they_are_built(
    tmp_path: Path, name: str, content: str, max_nodes: int | None, words: list[str]
) -> None:
    path = tmp_path / name
    path.write_text(content)
    _data_error(lambda: load_graph(path, max_nodes=max_nodes), path, *words)


def test_graph_tokenizer_applies_its_max_nodes_to_files_and_to_graphs(tmp_path: Path) -> None:
    from mmadapt.tokenizers.graph import GraphTokenizer, GraphTokenizerConfig

    tokenizer = GraphTokenizer(8, GraphTokenizerConfig(max_nodes=100))
    small, large = tmp_path / "small.graphml", tmp_path / "large.graphml"
    nx.write_graphml(nx.path_graph(100), small)
    nx.write_graphml(nx.path_graph(101), large)
    assert tokenizer.collate([tokenizer.load(small)])["node_mask"].shape == (1, 100)
    _data_error(lambda: tokenizer.load(large), large, "101 nodes, more than max_nodes=100")
    with pytest.raises(ValueError, match=r"sample 1 has 101 nodes, more than max_nodes=100"):
        tokenizer.collate([load_graph(small), load_graph(large)])


def test_missing_graph_file(tmp_path: Path) -> None:
    _data_error(lambda: load_graph(tmp_path / "g.json"), tmp_path / "g.json", "file not found")


# ================================================================================================ synthetic sets


def _manifest(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_synthetic_point_clouds_are_deterministic_balanced_and_learnable(tmp_path: Path) -> None:
    for root in ("a", "b"):
        write_point_cloud_dataset(tmp_path / root, "train", 100, seed=0, n_points=256)
    write_point_cloud_dataset(tmp_path / "c", "train", 100, seed=1, n_points=256)
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")
    assert _tree_bytes(tmp_path / "a") != _tree_bytes(tmp_path / "c")
    val = write_point_cloud_dataset(tmp_path / "a", "val", 100, seed=0, n_points=256)

    def features(split: str) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        records = _manifest(tmp_path / "a" / f"{split}.jsonl")
        clouds = torch.stack([
            load_point_cloud(tmp_path / "a" / r["path"], n_points=256, generator=_seeded(0)) for r in records
        ])  # fmt: skip
        labels = np.array([SHAPE_CLASSES.index(r["label"]) for r in records])
        histogram = torch.stack([torch.histc(c.norm(dim=1), bins=10, min=0, max=1) for c in clouds]) / 256
        return clouds, histogram, labels

    train_records = _manifest(tmp_path / "a" / "train.jsonl")
    assert Counter(r["label"] for r in train_records) == {name: 20 for name in SHAPE_CLASSES}
    assert {Path(r["path"]).suffix for r in train_records} == {".npy", ".ply", ".off", ".txt"}
    clouds, train_x, train_y = features("train")
    assert clouds.shape == (100, 256, 3) and val.name == "val.jsonl"
    _, val_x, val_y = features("val")
    # The distribution of distances to the centroid tells the shapes apart (nearest class mean, chance 0.2)...
    centroids = torch.stack([train_x[train_y == k].mean(dim=0) for k in range(len(SHAPE_CLASSES))])
    accuracy = (torch.cdist(val_x, centroids).argmin(dim=1).numpy() == val_y).mean()
    assert accuracy > 0.6, accuracy
    # ...while random rotations leave no preferred axis: each class spreads evenly over x, y and z.
    spread = (clouds**2).mean(dim=1)  # [clouds, 3]
    for k in range(len(SHAPE_CLASSES)):
        share = spread[train_y == k].mean(dim=0) / spread[train_y == k].mean(dim=0).sum()
        assert torch.allclose(share, torch.full((3,), 1 / 3), atol=0.06), (SHAPE_CLASSES[k], share)


def test_synthetic_graphs_are_deterministic_balanced_and_structural(tmp_path: Path) -> None:
    manifest = write_graph_dataset(tmp_path / "a", "train", 60, seed=3, min_nodes=8, max_nodes=20)
    write_graph_dataset(tmp_path / "b", "train", 60, seed=3, min_nodes=8, max_nodes=20)
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")
    records = _manifest(manifest)
    assert Counter(r["label"] for r in records) == {name: 20 for name in GRAPH_CLASSES}
    for record in records:
        graph = load_graph(tmp_path / "a" / record["path"])
        _check_canonical(graph)
        g = nx.node_link_graph(json.loads((tmp_path / "a" / record["path"]).read_text()))
        assert 8 <= graph.num_nodes <= 20 and nx.is_connected(g)
        largest_clique = max(len(c) for c in nx.find_cliques(g))
        if record["label"] == "tree":
            assert nx.is_tree(g)
        elif record["label"] == "cycle":
            assert g.number_of_edges() == g.number_of_nodes() and largest_clique <= 3
        else:
            assert 4 <= largest_clique <= 6
    with pytest.raises(ConfigError, match="min_nodes"):
        write_graph_dataset(tmp_path / "c", "train", 3, seed=0, min_nodes=3)


def test_synthetic_table_follows_its_rule_with_missing_values(tmp_path: Path) -> None:
    path = write_tabular_dataset(tmp_path / "a", "train", 600, seed=0)
    assert path.read_bytes() == write_tabular_dataset(tmp_path / "b", "train", 600, seed=0).read_bytes()
    assert path.read_bytes() != write_tabular_dataset(tmp_path / "a", "val", 600, seed=0).read_bytes()
    data = load_table(path, tabular_schema())
    assert data.target.bincount().tolist() == [200, 200, 200]
    missing = torch.cat([data.numeric.isnan(), data.categorical == 0], dim=1).float().mean().item()
    assert 0.02 < missing < 0.08
    complete = ~data.numeric[:, :3].isnan().any(dim=1) & (data.categorical != 0).all(dim=1)
    x = data.numeric[complete].double()
    colour = torch.tensor(list(COLOURS.values()))[data.categorical[complete, 0] - 1]
    size = torch.tensor(list(SIZES.values()))[data.categorical[complete, 1] - 1]
    score = x[:, 0] - x[:, 1] + colour + size * x[:, 2]
    rule = torch.where(score < -0.6, 0, torch.where(score > 0.6, 2, 1))
    assert complete.sum() > 400 and torch.equal(rule, data.target[complete])


def _sorted_rows(table: np.ndarray) -> np.ndarray:
    return table[np.lexsort(table.T[::-1])]


def test_sklearn_wine_table_is_a_stratified_split_of_the_real_data(tmp_path: Path) -> None:
    train_path = write_sklearn_table(tmp_path, "wine", "train", seed=0)
    val_path = write_sklearn_table(tmp_path, "wine", "val", seed=0)
    train = load_table(train_path, sklearn_table_schema("wine"))
    val = load_table(val_path, train.schema)
    wine = load_wine()
    assert len(train) + len(val) == 178 and train.numeric.shape[1] == 13
    assert val.target.bincount().tolist() == [round(0.25 * c) for c in np.bincount(wine.target)]
    rows = np.concatenate([train.numeric.numpy(), val.numeric.numpy()])
    expected = wine.data.astype(np.float32)
    np.testing.assert_array_equal(_sorted_rows(rows), _sorted_rows(expected))  # the same rows, as sets
    assert train.schema.classes == ["class_0", "class_1", "class_2"]
