"""Graph → one token per node: node features + degree embedding + Laplacian eigenvector encoding.

``token = Linear(features) + DegreeEmbedding(min(degree, max_degree)) + Linear(lap_pe · s)``, where
``lap_pe`` holds the node's entries in the ``lap_k`` eigenvectors of the symmetric normalised Laplacian
with the smallest non-trivial eigenvalues (:func:`mmadapt.io.graph.structural_encodings`). An eigenvector
is only defined up to its sign, so in training mode every graph's eigenvectors get random signs
``s ∈ {±1}^k`` (Dwivedi et al., 2020); in eval mode ``s = 1``. Graphs without node features use one learned
constant feature vector. Padded node slots are masked out and their tokens are zero.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mmadapt.errors import ConfigError
from mmadapt.registry import register
from mmadapt.tokenizers.base import TokenBatch, Tokenizer

__all__ = ["GraphTokenizer", "GraphTokenizerConfig"]


@dataclass
class GraphTokenizerConfig:
    """Node token settings.

    - ``node_feature_dim``: F of the graphs' node features; 0: every node gets the learned constant feature
      (any node features the graphs carry are then not used).
    - ``max_degree``: degrees above it share the last row of the degree embedding.
    - ``lap_k``: Laplacian eigenvectors per node (zero-padded for graphs with fewer than ``lap_k + 1`` nodes).
    - ``sign_flip``: random eigenvector signs in training mode.
    - ``max_nodes``: larger graphs are refused with an error naming the file (the Laplacian encodings hold
      an ``n × n`` matrix and its eigendecomposition: 4096 nodes take 128 MiB and a few seconds).
    """

    name: str = "graph"
    node_feature_dim: int = 0
    max_degree: int = 32
    lap_k: int = 8
    sign_flip: bool = True
    max_nodes: int = 4096

    def validate(self) -> None:
        if self.node_feature_dim < 0:
            raise ConfigError(f"node_feature_dim: expected >= 0 (0: no node features), got {self.node_feature_dim}")
        if self.max_degree < 1:
            raise ConfigError(f"max_degree: expected >= 1, got {self.max_degree}")
        if self.lap_k < 1:
            raise ConfigError(f"lap_k: expected >= 1, got {self.lap_k}")
        if self.max_nodes < 2:
            raise ConfigError(f"max_nodes: expected >= 2, got {self.max_nodes}")


@register("tokenizers", "graph")
class GraphTokenizer(Tokenizer):
    """``degree`` [B, n_max] long, ``lap_pe`` [B, n_max, lap_k], ``node_mask`` [B, n_max] bool and (when
    ``node_feature_dim`` > 0) ``node_features`` [B, n_max, F] → ``tokens`` [B, n_max, D], mask = node_mask,
    no coords."""

    config_class = GraphTokenizerConfig

    def __init__(self, dim: int, config: GraphTokenizerConfig | None = None):
        super().__init__()
        cfg = self._set_config(dim, config)
        if cfg.node_feature_dim:
            self.feature_proj = nn.Linear(cfg.node_feature_dim, dim)
        else:
            self.constant_feature = nn.Parameter(torch.randn(dim) * 0.02)
        self.degree_embed = nn.Embedding(cfg.max_degree + 1, dim)
        nn.init.normal_(self.degree_embed.weight, std=0.02)
        self.pe_proj = nn.Linear(cfg.lap_k, dim)

    # ------------------------------------------------------------------------------------------ data side
    def load(self, source: str | os.PathLike[str] | Any) -> Any:
        """A graph file → :class:`mmadapt.io.graph.Graph`; a ``Graph`` passes through."""
        if not isinstance(source, (str, os.PathLike)):
            return source
        from mmadapt.io.graph import load_graph

        return load_graph(source, max_nodes=self.config.max_nodes)

    def collate(self, samples: list[Any]) -> dict[str, torch.Tensor]:
        """Graphs → ``degree`` [B, n_max], ``lap_pe`` [B, n_max, lap_k], ``node_mask`` [B, n_max] and, when
        ``node_feature_dim`` > 0, ``node_features`` [B, n_max, F]; padded slots are zero / False."""
        from mmadapt.io.graph import structural_encodings

        if not samples:
            raise ValueError("graph tokenizer: collate got no samples")
        cfg = self.config
        for i, graph in enumerate(samples):
            if graph.num_nodes > cfg.max_nodes:
                raise ValueError(f"graph tokenizer: sample {i} has {graph.num_nodes} nodes, more than "
                                 f"max_nodes={cfg.max_nodes}")
        B, n_max = len(samples), max(g.num_nodes for g in samples)
        degree = torch.zeros(B, n_max, dtype=torch.long)
        lap_pe = torch.zeros(B, n_max, cfg.lap_k)
        node_mask = torch.zeros(B, n_max, dtype=torch.bool)
        features = torch.zeros(B, n_max, cfg.node_feature_dim)
        for i, graph in enumerate(samples):
            n = graph.num_nodes
            degree[i, :n], lap_pe[i, :n] = structural_encodings(graph, k=cfg.lap_k)
            node_mask[i, :n] = True
            if cfg.node_feature_dim:
                given = graph.node_features
                if given is None or tuple(given.shape) != (n, cfg.node_feature_dim):
                    got = "none" if given is None else list(given.shape)
                    raise ValueError(f"graph tokenizer: sample {i} node_features must be [{n}, "
                                     f"node_feature_dim={cfg.node_feature_dim}], got {got}")
                features[i, :n] = given
        batch = {"degree": degree, "lap_pe": lap_pe, "node_mask": node_mask}
        if cfg.node_feature_dim:
            batch["node_features"] = features
        return batch

    # ------------------------------------------------------------------------------------------ model side
    def forward(self, degree: torch.Tensor, lap_pe: torch.Tensor, node_mask: torch.Tensor,
                node_features: torch.Tensor | None = None) -> TokenBatch:
        """→ TokenBatch(tokens [B, n_max, D], mask = node_mask [B, n_max], coords None)."""
        self._check(degree, lap_pe, node_mask, node_features)
        B, n = degree.shape
        if self.config.node_feature_dim:
            tokens = self.feature_proj(node_features)
        else:
            tokens = self.constant_feature.expand(B, n, self.dim)
        tokens = tokens + self.degree_embed(degree.clamp(0, self.config.max_degree))
        if self.training and self.config.sign_flip:
            signs = torch.randint(0, 2, (B, 1, lap_pe.shape[2]), device=lap_pe.device) * 2 - 1
            lap_pe = lap_pe * signs
        tokens = (tokens + self.pe_proj(lap_pe)) * node_mask[..., None]
        return TokenBatch(tokens, node_mask.bool())

    def _check(self, degree: torch.Tensor, lap_pe: torch.Tensor, node_mask: torch.Tensor,
               node_features: torch.Tensor | None) -> None:
        cfg = self.config
        if degree.ndim != 2:
            raise ValueError(f"graph tokenizer: degree must be [B, n_max], got {list(degree.shape)}")
        if degree.is_floating_point() or degree.dtype == torch.bool:
            raise ValueError(f"graph tokenizer: degree must hold integer degrees, got {degree.dtype} "
                             f"{list(degree.shape)}")
        B, n = degree.shape
        expected = {"lap_pe": (lap_pe, (B, n, cfg.lap_k)), "node_mask": (node_mask, (B, n))}
        if cfg.node_feature_dim:
            if node_features is None:
                raise ValueError(f"graph tokenizer: node_features [B, n_max, {cfg.node_feature_dim}] missing "
                                 f"(tokenizer.node_feature_dim = {cfg.node_feature_dim})")
            expected["node_features"] = (node_features, (B, n, cfg.node_feature_dim))
        elif node_features is not None:
            raise ValueError(f"graph tokenizer: got node_features {list(node_features.shape)} but "
                             "tokenizer.node_feature_dim = 0 (set it to use them)")
        for key, (tensor, shape) in expected.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(f"graph tokenizer: {key} must be {list(shape)} (from degree [B, n_max] = "
                                 f"{[B, n]}), got {list(tensor.shape)}")
