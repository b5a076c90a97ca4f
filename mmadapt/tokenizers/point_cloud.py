"""Point cloud → local-patch tokens: :class:`PointCloudTokenizer` (``point_cloud``, Point-BERT / Point-MAE
style, one grouping stage) and :class:`PointPNTokenizer` (``point_pn``, Point-PN's multi-stage parametric
encoder, Any2Point's tokenizer; see its docstring).

``point_cloud``:

``n_groups`` centres are chosen by farthest point sampling, each gathers its ``group_size`` nearest
neighbours, the neighbourhood is re-centred on its centre and embedded by a shared two-stage mini-PointNet
(per-point MLP, max-pool, the pooled feature concatenated back to every point, a second MLP, max-pool); an
MLP of the centre's xyz is added as the position embedding.

:func:`farthest_point_sample` and :func:`knn` are public (Any2Point reuses them). FPS is batched in torch:
the only Python loop is over the ``k`` picks. Its result does not depend on the order of the input points:
it starts at the point farthest from the centre of the bounding box (min and max are exact under any
permutation, unlike a floating-point mean), and every tie in distance is broken by the points' lexicographic
order of (x, y, z), so the same coordinates are picked, in the same order, for any permutation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from mmadapt.errors import ConfigError, DataError
from mmadapt.io.shard_member import MediaSource, source_name
from mmadapt.registry import register
from mmadapt.tokenizers.base import TokenBatch, Tokenizer

__all__ = ["PointCloudTokenizer", "PointCloudTokenizerConfig", "PointPNTokenizer", "PointPNTokenizerConfig",
           "farthest_point_sample", "knn"]


@torch.no_grad()
def farthest_point_sample(xyz: torch.Tensor, k: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Indices [B, k] (long) of ``k`` farthest-point samples of ``xyz`` [B, N, 3], in pick order.

    ``mask`` [B, N] (bool, True = real point) leaves padded points out. Permutation-invariant (see the
    module docstring). If ``k`` exceeds the number of distinct real points, the picks after the last distinct
    one repeat already-picked coordinates.
    """
    if xyz.ndim != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"farthest_point_sample: xyz must be [B, N, 3], got {list(xyz.shape)}")
    B, N, _ = xyz.shape
    if not 1 <= k <= N:
        raise ValueError(f"farthest_point_sample: k={k} must be in [1, N={N}] (xyz {list(xyz.shape)})")
    coords = xyz.transpose(1, 2).contiguous()  # [B, 3, N]: each step's arithmetic runs over contiguous rows
    rank = _lexicographic_rank(xyz)  # [B, N], distinct ranks; ties in distance go to the highest rank
    real = torch.ones(B, 1, N, dtype=torch.bool, device=xyz.device) if mask is None else mask[:, None].bool()
    low = coords.masked_fill(~real, torch.inf).amin(dim=2, keepdim=True)
    high = coords.masked_fill(~real, -torch.inf).amax(dim=2, keepdim=True)
    # [B, N] distance to the nearest pick so far (for the first pick: to the bounding-box centre); padded
    # points sit at -inf, which the running minimum keeps, so they are never picked.
    nearest = (coords - (low + high) / 2).square().sum(dim=1).masked_fill(~real[:, 0], -torch.inf)
    picks = torch.empty(B, k, dtype=torch.long, device=xyz.device)
    for i in range(k):
        farthest = nearest.amax(dim=1, keepdim=True)
        pick = torch.where(nearest == farthest, rank, -1).argmax(dim=1)  # [B]
        picks[:, i] = pick
        chosen = coords.gather(2, pick.view(B, 1, 1).expand(B, 3, 1))  # [B, 3, 1]
        distance = (coords - chosen).square().sum(dim=1)
        nearest = distance.masked_fill(~real[:, 0], -torch.inf) if i == 0 else torch.minimum(nearest, distance)
    return picks


@torch.no_grad()
def knn(query: torch.Tensor, points: torch.Tensor, k: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Indices [B, M, k] (long) of the ``k`` points of ``points`` [B, N, 3] nearest to each of ``query``
    [B, M, 3], nearest first (Euclidean, ``torch.cdist`` + ``topk``); ``mask`` [B, N] (True = real point)
    leaves padded points out (each cloud needs at least ``k`` real points).

    Distances are computed directly, not through the ``|q|² + |p|² - 2 q·p`` matmul expansion: in 3D that
    costs about the same (8 × 1024 × 8192 pairs on 2 CPU cores: 0.13 s vs 0.12 s), has no cancellation
    between close points, and gives every pair the same value whatever its position in the batch, so the
    neighbour sets do not depend on the order of the points."""
    if query.ndim != 3 or points.ndim != 3 or query.shape[0] != points.shape[0] or query.shape[2] != points.shape[2]:
        raise ValueError(f"knn: query [B, M, 3] and points [B, N, 3] do not match: {list(query.shape)} vs "
                         f"{list(points.shape)}")
    if not 1 <= k <= points.shape[1]:
        raise ValueError(f"knn: k={k} must be in [1, N={points.shape[1]}] (points {list(points.shape)})")
    distances = torch.cdist(query, points, compute_mode="donot_use_mm_for_euclid_dist")
    if mask is not None:
        distances = distances.masked_fill(~mask[:, None].bool(), torch.inf)
    return distances.topk(k, dim=2, largest=False, sorted=True).indices


def _lexicographic_rank(xyz: torch.Tensor) -> torch.Tensor:
    """[B, N] rank of every point in the (x, y, z) lexicographic order (stable sorts, least-significant key
    first); equal points get neighbouring ranks, which is harmless since their coordinates are equal."""
    B, N, _ = xyz.shape
    order = torch.arange(N, device=xyz.device).expand(B, N)
    for axis in (2, 1, 0):
        keys = xyz[..., axis].gather(1, order)
        order = order.gather(1, keys.sort(dim=1, stable=True).indices)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(N, device=xyz.device).expand(B, N))
    return rank


@dataclass
class PointCloudTokenizerConfig:
    """Sampling, grouping and embedding sizes.

    - ``n_points``, ``normalize``: passed to :func:`mmadapt.io.point_cloud.load_point_cloud` (normalise:
      centre and scale into the unit ball).
    - ``in_channels``: 3 for xyz; more keeps the file's extra columns (e.g. normals: 6) as point features.
    - ``n_groups``: tokens per cloud (FPS centres); ``group_size``: neighbours per centre (kNN).
    - ``hidden``: mini-PointNet width (Point-MAE: 128, giving 128 → 256, then 512 → 512 → D).
    - ``position``: ``mlp`` — an MLP of each centre's xyz is added to its token (width ``position_hidden``);
      ``none`` — no position embedding here (Any2Point adds the frozen source's own, by virtual projection).
    """

    name: str = "point_cloud"
    n_points: int = 1024
    normalize: bool = True
    in_channels: int = 3
    n_groups: int = 64
    group_size: int = 32
    hidden: int = 128
    position_hidden: int = 128
    position: Literal["mlp", "none"] = "mlp"

    def validate(self) -> None:
        for key in ("n_points", "n_groups", "group_size", "hidden", "position_hidden"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: expected >= 1, got {getattr(self, key)}")
        if self.in_channels < 3:
            raise ConfigError(f"in_channels: expected >= 3 (x, y, z first), got {self.in_channels}")
        for key in ("n_groups", "group_size"):
            if getattr(self, key) > self.n_points:
                raise ConfigError(f"{key}: must be <= n_points (got {getattr(self, key)} > {self.n_points})")


class _PointCloudInput(Tokenizer):
    """The data side both point tokenizers share: a file or in-memory points → ``[n_points, in_channels]``
    (``config.n_points``, ``normalize``, ``in_channels``), and padding collation."""

    # ------------------------------------------------------------------------------------------ data side
    def load(self, source: MediaSource | torch.Tensor) -> torch.Tensor:
        """A point-cloud file (or a member of a WebDataset shard), or points in memory ``[N, C]`` (e.g. a ScanObjectNN ``.h5`` row) → ``points``
        [n_points, in_channels], checked, sampled and normalised alike."""
        from mmadapt.io.point_cloud import load_point_cloud, prepare_points

        cfg = self.config
        if isinstance(source, torch.Tensor):
            where = f"points tensor {list(source.shape)}"
            points = prepare_points(source, n_points=cfg.n_points, normalize=cfg.normalize, where=where)
        else:
            where = source_name(source)
            points = load_point_cloud(source, n_points=cfg.n_points, normalize=cfg.normalize,
                                      keep_extra=cfg.in_channels > 3)
        if points.shape[1] < cfg.in_channels:
            raise DataError(f"{where}: {points.shape[1]} columns per point, tokenizer.in_channels "
                            f"expects {cfg.in_channels}")
        return points[:, : cfg.in_channels]

    def collate(self, samples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Clouds [N_i, C] → ``{"points": [B, max N_i, C], "lengths": [B]}``, zero-padded at the end."""
        if not samples:
            raise ValueError("point_cloud tokenizer: collate got no samples")
        channels = {s.shape[1] if s.ndim == 2 else None for s in samples}
        if len(channels) > 1 or None in channels:
            raise ValueError(f"point_cloud tokenizer: samples must be [N, C] with one C, got "
                             f"{[list(s.shape) for s in samples]}")
        lengths = torch.tensor([s.shape[0] for s in samples], dtype=torch.long)
        points = samples[0].new_zeros(len(samples), int(lengths.max()), samples[0].shape[1])
        for i, s in enumerate(samples):
            points[i, : s.shape[0]] = s
        return {"points": points, "lengths": lengths}

@register("tokenizers", "point_cloud")
class PointCloudTokenizer(_PointCloudInput):
    """``points`` [B, N, in_channels] (xyz first) → ``tokens`` [B, n_groups, D], ``coords`` = centre xyz
    [B, n_groups, 3], mask all True. Centres are in FPS order."""

    config_class = PointCloudTokenizerConfig

    def __init__(self, dim: int, config: PointCloudTokenizerConfig | None = None):
        super().__init__()
        cfg = self._set_config(dim, config)
        h = cfg.hidden
        self.point_mlp = nn.Sequential(nn.Linear(cfg.in_channels, h), nn.LayerNorm(h), nn.GELU(), nn.Linear(h, 2 * h))
        self.group_mlp = nn.Sequential(nn.Linear(4 * h, 4 * h), nn.LayerNorm(4 * h), nn.GELU(), nn.Linear(4 * h, dim))
        self.position_mlp = nn.Sequential(nn.Linear(3, cfg.position_hidden), nn.GELU(),
                                          nn.Linear(cfg.position_hidden, dim)) if cfg.position == "mlp" else None

    # ------------------------------------------------------------------------------------------ model side
    def forward(self, points: torch.Tensor, lengths: torch.Tensor | None = None) -> TokenBatch:
        """``points`` [B, N, C], ``lengths`` [B] real points per cloud (None: all N) → TokenBatch(tokens
        [B, G, D], mask [B, G], coords [B, G, 3] centre xyz). Padded points are never centres or neighbours."""
        cfg = self.config
        if points.ndim != 3 or points.shape[2] != cfg.in_channels:
            raise ValueError(f"point_cloud tokenizer: points must be [B, N, in_channels={cfg.in_channels}], "
                             f"got {list(points.shape)}")
        B, N, _ = points.shape
        device = points.device
        lengths = torch.full((B,), N, device=device) if lengths is None else lengths.to(device)
        if tuple(lengths.shape) != (B,) or lengths.is_floating_point():
            raise ValueError(f"point_cloud tokenizer: lengths must be integer counts [B={B}], got {lengths.dtype} "
                             f"{list(lengths.shape)}")
        least = max(cfg.n_groups, cfg.group_size)
        if B and (int(lengths.min()) < least or int(lengths.max()) > N):  # an empty batch (B = 0) has no clouds
            raise ValueError(f"point_cloud tokenizer: each cloud needs {least} to N={N} real points (n_groups="
                             f"{cfg.n_groups}, group_size={cfg.group_size}); got points {list(points.shape)}, "
                             f"lengths {lengths.tolist()}")
        real = torch.arange(N, device=device)[None, :] < lengths[:, None]  # [B, N]
        xyz = points[..., :3]
        batch = torch.arange(B, device=device)
        centres = xyz[batch[:, None], farthest_point_sample(xyz, cfg.n_groups, real)]  # [B, G, 3]
        neighbours = knn(centres, xyz, cfg.group_size, real)  # [B, G, K]
        groups = points[batch[:, None, None], neighbours]  # [B, G, K, C]
        local = torch.cat([groups[..., :3] - centres[:, :, None], groups[..., 3:]], dim=-1)
        features = self.point_mlp(local)  # [B, G, K, 2h]
        pooled = features.amax(dim=2, keepdim=True).expand_as(features)
        tokens = self.group_mlp(torch.cat([pooled, features], dim=-1)).amax(dim=2)  # [B, G, D]
        if self.position_mlp is not None:
            tokens = tokens + self.position_mlp(centres)
        mask = torch.ones(B, cfg.n_groups, dtype=torch.bool, device=device)
        return TokenBatch(tokens, mask, centres)


# ------------------------------------------------------------------------------------------------ Point-PN


@dataclass
class PointPNTokenizerConfig:
    """Point-PN (Zhang et al., 2023) as Any2Point's authors build it (``Point_PN_scan``).

    - ``n_points``, ``normalize``, ``in_channels``: as for ``point_cloud`` (xyz first; extra columns are
      point features).
    - ``stages``: each halves the points by FPS (1024 → 512 → 256 → 128 tokens for 3 stages) and doubles the
      width (``width`` 96 → 192 → 384 → 768); ``k``: neighbours per centre (kNN among the stage's input
      points, the centre included).
    - ``blocks``: residual blocks per stage; ``bottleneck``: each stage's block bottleneck width (None: half
      the stage's width; the authors: [None, None, 32]).
    - ``alpha``, ``beta``: the sinusoidal geometry encoding of the neighbours' relative xyz
      (``sin / cos(beta · xyz / alpha^(j / F))``, added to their features).
    - ``local_norm``: how the relative xyz of a neighbourhood is scaled — ``axis_max``: by its largest
      absolute value per axis (the authors' ScanObjectNN code), ``std``: by the standard deviation over the
      whole batch (their ModelNet40 code).
    """

    name: str = "point_pn"
    n_points: int = 1024
    normalize: bool = True
    in_channels: int = 3
    stages: int = 3
    k: int = 81
    width: int = 96
    blocks: list[int] = field(default_factory=lambda: [2, 1, 1])
    bottleneck: list[int | None] = field(default_factory=lambda: [None, None, 32])
    alpha: float = 1000.0
    beta: float = 100.0
    local_norm: Literal["axis_max", "std"] = "axis_max"

    @property
    def out_width(self) -> int:
        return self.width * 2 ** self.stages

    def validate(self) -> None:
        for key in ("n_points", "stages", "k", "width"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: expected >= 1, got {getattr(self, key)}")
        if self.in_channels < 3:
            raise ConfigError(f"in_channels: expected >= 3 (x, y, z first), got {self.in_channels}")
        if self.n_points % 2 ** self.stages:
            raise ConfigError(f"n_points: {self.n_points} does not halve {self.stages} times (stages)")
        last_input = self.n_points // 2 ** (self.stages - 1)
        if self.k > last_input:
            raise ConfigError(f"k: {self.k} neighbours, but the last stage reads only {last_input} points")
        if self.width % 3:
            raise ConfigError(f"width: must be a multiple of 3 (each stage's geometry encoding splits its width "
                              f"into sin / cos of x, y, z), got {self.width}")
        for key in ("blocks", "bottleneck"):
            if len(getattr(self, key)) != self.stages:
                raise ConfigError(f"{key}: expected one entry per stage ({self.stages}), got {getattr(self, key)}")
        if any(b < 1 for b in self.blocks):
            raise ConfigError(f"blocks: expected >= 1 per stage, got {self.blocks}")
        if any(b is not None and b < 1 for b in self.bottleneck):
            raise ConfigError(f"bottleneck: expected widths >= 1 (or null), got {self.bottleneck}")


class _PNResidual(nn.Module):
    """``x`` [..., C] → ReLU(BN(Linear(ReLU(BN(Linear(x))))) + x) (Point-PN's 1×1-conv residual block)."""

    def __init__(self, width: int, bottleneck: int):
        super().__init__()
        self.down, self.norm_down = nn.Linear(width, bottleneck), nn.BatchNorm1d(bottleneck)
        self.up, self.norm_up = nn.Linear(bottleneck, width), nn.BatchNorm1d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        h = torch.relu(self.norm_down(self.down(flat)))
        return torch.relu(self.norm_up(self.up(h)) + flat).reshape(shape)


def geometry_encoding(relative: torch.Tensor, width: int, alpha: float, beta: float) -> torch.Tensor:
    """Point-PN's sinusoidal encoding of relative xyz [..., 3] → [..., width]: with ``F = width // 6`` and
    ``e_j = alpha^(j / F)``, per axis ``[sin(beta·a / e_0..F-1), cos(beta·a / e_0..F-1)]``, axes x, y, z."""
    F = width // 6
    scale = alpha ** (torch.arange(F, device=relative.device, dtype=relative.dtype) / F)
    angles = beta * relative[..., None] / scale  # [..., 3, F]
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class _PNStage(nn.Module):
    """One stage: FPS halves the points, each centre's kNN neighbourhood ``[neighbour feature ‖ centre
    feature] + geometry encoding`` → residual blocks → max over the neighbours."""

    def __init__(self, in_width: int, blocks: int, bottleneck: int | None, cfg: PointPNTokenizerConfig):
        super().__init__()
        self.width = 2 * in_width
        self.cfg = cfg
        self.blocks = nn.Sequential(*(_PNResidual(self.width, bottleneck or self.width // 2) for _ in range(blocks)))

    def forward(self, xyz: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``xyz`` [B, N, 3], ``features`` [B, N, C] → centres [B, N/2, 3], features [B, N/2, 2C]."""
        B, N, _ = xyz.shape
        batch = torch.arange(B, device=xyz.device)
        picks = farthest_point_sample(xyz, N // 2)  # [B, G]
        centres, centre_features = xyz[batch[:, None], picks], features[batch[:, None], picks]
        neighbours = knn(centres, xyz, self.cfg.k)  # [B, G, K]
        relative = xyz[batch[:, None, None], neighbours] - centres[:, :, None]  # [B, G, K, 3]
        if self.cfg.local_norm == "axis_max":
            relative = relative / relative.abs().amax(dim=2, keepdim=True).clamp(min=torch.finfo(relative.dtype).tiny)
        else:
            relative = relative / (relative.std() + 1e-5)
        grouped = features[batch[:, None, None], neighbours]  # [B, G, K, C]
        x = torch.cat([grouped, centre_features[:, :, None].expand_as(grouped)], dim=-1)
        x = x + geometry_encoding(relative, self.width, self.cfg.alpha, self.cfg.beta).to(x.dtype)
        return centres, self.blocks(x).amax(dim=2)


@register("tokenizers", "point_pn")
class PointPNTokenizer(_PointCloudInput):
    """``points`` [B, n_points, in_channels] (xyz first) → ``tokens`` [B, n_points / 2^stages, D], ``coords``
    = the last stage's centres [B, ., 3], mask all True.

    Per point: Linear (no bias) → BatchNorm → ReLU to ``width``; then ``stages`` stages (:class:`_PNStage`); the
    last width (``width · 2^stages``) is projected to the encoder's ``D`` by a Linear when they differ (the
    authors' ``proj``). Every cloud must have exactly ``n_points`` points (the loader samples them so).
    Loading and collating are ``point_cloud``'s (:class:`_PointCloudInput`).
    """

    config_class = PointPNTokenizerConfig

    def __init__(self, dim: int, config: PointPNTokenizerConfig | None = None):
        super().__init__()
        cfg = self._set_config(dim, config)
        self.embed = nn.Linear(cfg.in_channels, cfg.width, bias=False)
        self.embed_norm = nn.BatchNorm1d(cfg.width)
        widths = [cfg.width * 2 ** i for i in range(cfg.stages)]
        self.stages = nn.ModuleList(_PNStage(w, b, n, cfg) for w, b, n in zip(widths, cfg.blocks, cfg.bottleneck))
        if cfg.out_width == dim:
            self.proj = nn.Identity()
        else:
            self.proj = nn.Linear(cfg.out_width, dim)
            nn.init.xavier_uniform_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def forward(self, points: torch.Tensor, lengths: torch.Tensor | None = None) -> TokenBatch:
        """``points`` [B, n_points, C] (``lengths``, if given, must all be n_points) → TokenBatch."""
        cfg = self.config
        if points.ndim != 3 or points.shape[1:] != (cfg.n_points, cfg.in_channels):
            raise ValueError(f"point_pn tokenizer: points must be [B, n_points={cfg.n_points}, in_channels="
                             f"{cfg.in_channels}], got {list(points.shape)}")
        if lengths is not None and bool((lengths != cfg.n_points).any()):
            raise ValueError(f"point_pn tokenizer: every cloud needs n_points={cfg.n_points} real points, got "
                             f"lengths {lengths.tolist()}")
        B, N, C = points.shape
        xyz = points[..., :3]
        features = torch.relu(self.embed_norm(self.embed(points.reshape(B * N, C)))).reshape(B, N, cfg.width)
        for stage in self.stages:
            xyz, features = stage(xyz, features)
        mask = torch.ones(B, xyz.shape[1], dtype=torch.bool, device=points.device)
        return TokenBatch(self.proj(features), mask, xyz)
