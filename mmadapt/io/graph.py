"""Load undirected graphs (node-link JSON, simple JSON, edge lists, GraphML) and compute structural encodings.

What :func:`load_graph` guarantees: a :class:`Graph` whose ``edge_index`` is long ``[2, E]`` holding every edge
in both directions, with no self loops and no duplicates, sorted by (source, target), so the same graph
read from any format gives identical tensors. Directed or multi-graph files are read as simple undirected
graphs (their edges symmetrised and de-duplicated; self loops dropped).

Formats, by extension:

* ``.json``: the node-link format written by ``networkx.node_link_data`` (``nodes`` + ``edges`` or the older
  ``links``; a node attribute ``features`` on every node becomes ``node_features``), or the simple form
  ``{"num_nodes": n, "edges": [[u, v], ...], "node_features": [[...], ...]}`` (``node_features`` optional);
* ``.edgelist`` / ``.txt``: ``u v`` per line (further columns, e.g. networkx's ``{}`` edge data, are ignored;
  ``#`` starts a comment); nodes are ``0 .. max id``;
* ``.graphml``: read with networkx (the ``graph`` extra).

Nodes are numbered by their ids when the ids are exactly the integers ``0 .. n-1`` (or their decimal strings,
as GraphML stores them), otherwise in the order the file lists them.

Every failure is a :class:`~mmadapt.errors.DataError` with a one-line message naming the file: missing /
empty / unreadable file, unsupported extension, malformed JSON (line and column), a bad record (named), an
edge pointing outside ``[0, n)``, an empty graph (0 nodes), more nodes than ``max_nodes`` (checked before
anything of that size is allocated: one edge ``0 2000000000`` in an edge list means two billion nodes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmadapt.errors import DataError
from mmadapt.io._files import check_file, one_line

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["Graph", "from_networkx", "load_graph", "structural_encodings"]

PathLike = str | os.PathLike[str]
_SUFFIXES = (".json", ".edgelist", ".txt", ".graphml")
_NODE_LIMIT = 2**31  # edge keys u * n + v must fit in int64


@dataclass(eq=False)
class Graph:
    """A simple undirected graph.

    - ``num_nodes``: ``n >= 1``;
    - ``edge_index`` long ``[2, E]``: each undirected edge appears as (u, v) and (v, u); on construction the
      edges given are symmetrised, self loops dropped, duplicates removed and the columns sorted, so
      ``Graph(3, torch.tensor([[0], [1]]))`` holds ``[[0, 1], [1, 0]]``;
    - ``node_features`` float32 ``[n, F]`` or ``None``.

    Raises:
        DataError: ``n < 1``, ``edge_index`` not ``[2, E]``, an edge outside ``[0, n)`` (the first is named),
            or ``node_features`` not ``[n, F]`` / not finite.
    """

    num_nodes: int
    edge_index: torch.Tensor
    node_features: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.num_nodes
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DataError(f"empty graph: num_nodes must be an int >= 1, got {n!r}")
        if n > _NODE_LIMIT:
            raise DataError(f"{n} nodes, more than the {_NODE_LIMIT} a Graph can hold")
        edges = torch.as_tensor(self.edge_index).long()
        if edges.ndim != 2 or edges.shape[0] != 2:
            raise DataError(f"edge_index must be [2, E], got {list(edges.shape)}")
        outside = ((edges < 0) | (edges >= n)).any(dim=0).nonzero()
        if len(outside):
            u, v = edges[:, int(outside[0])].tolist()
            raise DataError(f"edge {int(outside[0])} ({u}, {v}) points outside [0, {n})")
        both = torch.cat([edges, edges.flip(0)], dim=1)
        key = torch.unique(both[0] * n + both[1])  # sorted, de-duplicated (u, v) pairs
        key = key[key // n != key % n]
        self.edge_index = torch.stack([key // n, key % n])
        if self.node_features is not None:
            features = torch.as_tensor(self.node_features, dtype=torch.float32)
            if features.ndim != 2 or features.shape[0] != n:
                raise DataError(f"node_features must be [num_nodes={n}, F], got {list(features.shape)}")
            finite = torch.isfinite(features).all(dim=1)
            if not finite.all():
                raise DataError(f"node_features: non-finite value at node {int((~finite).nonzero()[0])}")
            self.node_features = features

    @property
    def num_edges(self) -> int:
        """Undirected edges (half the columns of ``edge_index``)."""
        return self.edge_index.shape[1] // 2


def load_graph(path: PathLike, max_nodes: int | None = None) -> Graph:
    """Read a graph file (``.json``, ``.edgelist`` / ``.txt``, ``.graphml``) as a :class:`Graph`.

    ``max_nodes`` refuses larger graphs before they are built (the graph tokenizer passes its own limit:
    its Laplacian encodings take ``n²`` memory); ``None``: up to 2³¹ nodes.

    Raises:
        DataError: see the module docstring; the message is one line, ``"{path}: {what is wrong}"``.
    """
    limit = _NODE_LIMIT if max_nodes is None else min(int(max_nodes), _NODE_LIMIT)
    where = os.fspath(path)
    suffix = Path(where).suffix.lower()
    if suffix not in _SUFFIXES:
        raise DataError(f"{where}: unsupported graph extension {suffix!r} (expected one of {', '.join(_SUFFIXES)})")
    check_file(where, "graph")
    try:
        if suffix == ".json":
            return _from_json(_read_json(where), where, limit)
        if suffix == ".graphml":
            graph = _read_graphml(where)
            _check_node_count(graph.number_of_nodes(), limit)
            return from_networkx(graph)
        return _from_edge_list(where, limit)
    except DataError as exc:
        message = str(exc)
        raise DataError(message if message.startswith(where) else f"{where}: {message}") from None


def from_networkx(graph: nx.Graph, feature_key: str = "features") -> Graph:
    """A networkx graph as a :class:`Graph`; node attribute ``feature_key``, if every node has it, → features.

    Raises:
        DataError: the graph has no nodes, or only some nodes carry ``feature_key``.
    """
    nodes = list(graph.nodes)
    index = _node_index(nodes)
    edges = [(index[u], index[v]) for u, v in graph.edges()]
    carriers = [node for node in nodes if feature_key in graph.nodes[node]]
    features = None
    if carriers:
        if len(carriers) != len(nodes):
            missing = next(node for node in nodes if feature_key not in graph.nodes[node])
            raise DataError(f"node {missing!r} has no {feature_key!r} while other nodes do")
        features = _feature_rows([graph.nodes[node][feature_key] for node in nodes], feature_key)
    return Graph(len(nodes), _edge_tensor(edges), features)


def structural_encodings(graph: Graph, k: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Node degrees long ``[n]`` and Laplacian positional encodings float32 ``[n, k]``.

    ``lap_pe`` holds the eigenvectors (unit norm) of the symmetric normalised Laplacian
    ``L = I - D^-1/2 A D^-1/2`` (an isolated node has ``L_ii = 1``) for the ``k`` smallest eigenvalues after the
    first, trivial one, in ascending order; columns beyond the ``n - 1`` available are zero. Each eigenvector's
    sign is fixed so that its largest-magnitude entry is positive. The eigenvectors of a repeated eigenvalue
    are one orthonormal basis of that eigenspace, as ``numpy.linalg.eigh`` returns it.
    """
    n = graph.num_nodes
    source, target = graph.edge_index.numpy()
    adjacency = np.zeros((n, n))
    adjacency[source, target] = 1.0
    degree = adjacency.sum(axis=1)
    scale = np.divide(1.0, np.sqrt(degree), out=np.zeros(n), where=degree > 0)
    laplacian = np.eye(n) - scale[:, None] * adjacency * scale[None, :]
    _, vectors = np.linalg.eigh(laplacian)
    chosen = vectors[:, 1 : k + 1]
    peaks = chosen[np.abs(chosen).argmax(axis=0), np.arange(chosen.shape[1])]
    chosen = chosen * np.where(peaks < 0, -1.0, 1.0)
    lap_pe = np.zeros((n, k), dtype=np.float32)
    lap_pe[:, : chosen.shape[1]] = chosen
    return torch.from_numpy(degree.astype(np.int64)), torch.from_numpy(lap_pe)


# ---------------------------------------------------------------------------------------------- formats


def _check_node_count(n: int, limit: int, why: str = "") -> None:
    if n > limit:
        raise DataError(f"{n} nodes{why}, more than max_nodes={limit}")


def _from_json(doc: Any, where: str, max_nodes: int) -> Graph:
    if isinstance(doc, dict) and isinstance(doc.get("nodes"), list):
        _check_node_count(len(doc["nodes"]), max_nodes)
        return _from_node_link(doc)
    if isinstance(doc, dict) and "num_nodes" in doc:
        return _from_simple_json(doc, max_nodes)
    raise DataError(
        f"{where}: expected node-link JSON (with 'nodes' and 'edges' / 'links') or "
        f"{{'num_nodes': n, 'edges': [[u, v], ...]}}, got {_describe(doc)}"
    )


def _from_node_link(doc: dict[str, Any]) -> Graph:
    records = doc["nodes"]
    for i, record in enumerate(records):
        if not isinstance(record, dict) or "id" not in record:
            raise DataError(f"nodes[{i}]: expected an object with an 'id', got {_describe(record)}")
    ids = [record["id"] for record in records]
    if not all(isinstance(node, Hashable) for node in ids) or len(set(ids)) != len(ids):
        raise DataError("nodes: ids must be distinct numbers or strings")
    index = _node_index(ids)
    key = "edges" if "edges" in doc else "links"
    links = doc.get(key, [])
    if not isinstance(links, list):
        raise DataError(f"{key}: expected a list, got {_describe(links)}")
    edges = []
    for i, link in enumerate(links):
        if not isinstance(link, dict) or "source" not in link or "target" not in link:
            raise DataError(f"{key}[{i}]: expected an object with 'source' and 'target', got {_describe(link)}")
        for end in ("source", "target"):
            if not isinstance(link[end], Hashable) or link[end] not in index:
                raise DataError(f"{key}[{i}].{end}: {link[end]!r} is not the id of a node in 'nodes'")
        edges.append((index[link["source"]], index[link["target"]]))
    carriers = [record for record in records if "features" in record]
    if carriers and len(carriers) != len(records):
        raise DataError("nodes: some nodes have 'features' and some do not")
    features = _feature_rows([record["features"] for record in records], "nodes[*].features") if carriers else None
    return Graph(len(records), _edge_tensor(edges), features)


def _from_simple_json(doc: dict[str, Any], max_nodes: int) -> Graph:
    n = doc["num_nodes"]
    if isinstance(n, bool) or not isinstance(n, int):
        raise DataError(f"num_nodes: expected int, got {_describe(n)}")
    _check_node_count(n, max_nodes, " (num_nodes)")
    pairs = doc.get("edges", [])
    if not isinstance(pairs, list):
        raise DataError(f"edges: expected a list of [u, v] pairs, got {_describe(pairs)}")
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, list) and len(pair) == 2 and all(_is_int(end) for end in pair)):
            raise DataError(f"edges[{i}]: expected [u, v] with integer u, v, got {_describe(pair)}")
        if not all(0 <= end < n for end in pair):
            raise DataError(f"edges[{i}] = {pair} points outside [0, {n})")
    features = doc.get("node_features")
    return Graph(n, _edge_tensor(pairs), None if features is None else _feature_rows(features, "node_features"))


def _from_edge_list(where: str, max_nodes: int) -> Graph:
    try:
        text = Path(where).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{where}: cannot read file ({one_line(exc)})") from None
    edges = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) < 2 or not all(word.lstrip("-").isdigit() for word in words[:2]):
            raise DataError(f"{where}: line {number}: expected 'u v' with integer node ids, got {line.strip()[:40]!r}")
        u, v = int(words[0]), int(words[1])
        if u < 0 or v < 0:
            raise DataError(f"{where}: line {number}: edge ({u}, {v}) points outside [0, n): negative node id")
        edges.append((u, v))
    if not edges:
        raise DataError(f"{where}: empty graph (no edges in the edge list)")
    largest = max(max(edge) for edge in edges)
    _check_node_count(largest + 1, max_nodes, f" (an edge list numbers nodes 0 .. its largest id, {largest})")
    return Graph(largest + 1, _edge_tensor(edges))


def _read_json(where: str) -> Any:
    try:
        with open(where, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{where}: cannot read file ({one_line(exc)})") from None


def _read_graphml(where: str) -> nx.Graph:
    import networkx as nx

    try:
        return nx.read_graphml(where)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - networkx / ElementTree raise NetworkXError, ParseError, KeyError, ...
        raise DataError(f"{where}: cannot parse GraphML ({one_line(exc)})") from None


# ---------------------------------------------------------------------------------------------- helpers


def _node_index(ids: Sequence[Any]) -> dict[Any, int]:
    """Node id → index: the id itself when the ids are exactly 0..n-1 (ints or decimal strings), else position."""
    as_ints = [int(node) if _is_int(node) or (isinstance(node, str) and node.isdigit()) else None for node in ids]
    if sorted(value for value in as_ints if value is not None) == list(range(len(ids))):
        return {node: value for node, value in zip(ids, as_ints)}
    return {node: i for i, node in enumerate(ids)}


def _edge_tensor(edges: Sequence[Sequence[int]]) -> torch.Tensor:
    """Pairs ``[(u, v), ...]`` → long ``[2, E]``."""
    return torch.tensor(edges, dtype=torch.long).reshape(-1, 2).T


def _feature_rows(rows: Any, name: str) -> torch.Tensor:
    """Per-node feature lists (or scalars) → float32 ``[n, F]``."""
    try:
        array = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError):
        raise DataError(f"{name}: expected one list of numbers per node, all of one length") from None
    return torch.from_numpy(array.reshape(len(array), -1))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
