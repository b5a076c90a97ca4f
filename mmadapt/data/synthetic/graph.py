"""A synthetic graph classification set: which structure does a random connected graph contain?

Every graph is connected, has ``min_nodes .. max_nodes`` nodes and is built around one motif, which names
its class (:data:`CLASSES`):

* ``"tree"``: a random tree (each new node attaches to a uniformly chosen earlier node), no cycle;
* ``"cycle"``: a ring of at least half the nodes (and at least 3) with random trees hanging off it: exactly
  one cycle;
* ``"clique"``: a clique of 4 to 6 nodes with random trees hanging off it.

Node ids are randomly permuted, so the id order says nothing about the motif. Graphs are written in the
networkx node-link JSON format (``{"directed": false, "multigraph": false, "graph": {}, "nodes": [{"id":
0}, ...], "edges": [{"source": u, "target": v}, ...]}``; ``networkx.node_link_graph`` reads it back)::

    root/
      {split}.jsonl                one {"path": "graphs/{split}/00000.json", "label": "cycle"} per line
      graphs/{split}/00000.json ...

Labels are balanced (counts differ by at most one) and every file is a pure function of ``(seed, split,
index)``, so the same arguments write byte-identical files.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmadapt.data.split import ReadContext, Split, register_format
from mmadapt.data.synthetic._manifest import write_manifest
from mmadapt.data.synthetic.generated import GeneratedConfig, generated_manifest
from mmadapt.errors import ConfigError

__all__ = ["CLASSES", "write_graph_dataset"]

PathLike = str | os.PathLike[str]
Edges = list[tuple[int, int]]

CLASSES: tuple[str, ...] = ("cycle", "tree", "clique")
_CLIQUE_SIZES = (4, 6)  # inclusive range of the clique motif's size


def write_graph_dataset(
    root: PathLike,
    split: str,
    n: int,
    seed: int,
    min_nodes: int = 8,
    max_nodes: int = 30,
) -> Path:
    """Write ``n`` graphs of ``split`` under ``root`` and their manifest ``root/{split}.jsonl``; returns its path."""
    if n < 1:
        raise ConfigError(f"n: expected >= 1 graphs, got {n}")
    if not _CLIQUE_SIZES[1] <= min_nodes <= max_nodes:
        raise ConfigError(
            f"min_nodes, max_nodes: expected {_CLIQUE_SIZES[1]} <= min_nodes <= max_nodes, got {min_nodes}, {max_nodes}"
        )
    root = Path(root)
    folder = root / "graphs" / split
    folder.mkdir(parents=True, exist_ok=True)
    split_key = zlib.crc32(split.encode("utf-8"))
    labels = np.random.default_rng([seed, split_key]).permutation(np.arange(n) % len(CLASSES))
    records = []
    for index, label in enumerate(labels):
        rng = np.random.default_rng([seed, split_key, index])
        name = CLASSES[label]
        size = int(rng.integers(min_nodes, max_nodes + 1))
        edges = _relabel(_MOTIFS[name](size, rng), size, rng)
        relative = f"graphs/{split}/{index:05d}.json"
        (root / relative).write_text(json.dumps(_node_link(size, edges)), encoding="utf-8")
        records.append({"path": relative, "label": name})
    return write_manifest(root / f"{split}.jsonl", records)


def _tree(size: int, rng: np.random.Generator) -> Edges:
    return _grow([], 1, size, rng)


def _cycle(size: int, rng: np.random.Generator) -> Edges:
    ring = int(rng.integers(max(3, size // 2), size + 1))
    return _grow([(i, (i + 1) % ring) for i in range(ring)], ring, size, rng)


def _clique(size: int, rng: np.random.Generator) -> Edges:
    core = int(rng.integers(_CLIQUE_SIZES[0], _CLIQUE_SIZES[1] + 1))
    return _grow([(i, j) for i in range(core) for j in range(i + 1, core)], core, size, rng)


def _grow(edges: Edges, start: int, size: int, rng: np.random.Generator) -> Edges:
    """Attach nodes ``start .. size-1`` one by one, each to a uniformly chosen earlier node (adds a forest)."""
    return edges + [(int(rng.integers(node)), node) for node in range(start, size)]


def _relabel(edges: Edges, size: int, rng: np.random.Generator) -> Edges:
    """Rename the nodes by a random permutation and list the edges sorted, each as (smaller, larger) id."""
    names = rng.permutation(size)
    return sorted((min(names[u], names[v]), max(names[u], names[v])) for u, v in edges)


def _node_link(size: int, edges: Edges) -> dict:
    return {
        "directed": False,
        "multigraph": False,
        "graph": {},
        "nodes": [{"id": node} for node in range(size)],
        "edges": [{"source": int(u), "target": int(v)} for u, v in edges],
    }


_MOTIFS = {"cycle": _cycle, "tree": _tree, "clique": _clique}


@dataclass
class SyntheticGraphConfig(GeneratedConfig):
    """Connected graphs built around a tree, a cycle or a clique, labelled by that motif. Generated under ``root``
    (``split``, ``n_samples``, ``seed``)."""


@register_format("synthetic_graph", SyntheticGraphConfig, serves=("labelled",))
def read_synthetic_graph(cfg: SyntheticGraphConfig, ctx: ReadContext) -> Split:
    return generated_manifest(cfg, ctx, write_graph_dataset)
