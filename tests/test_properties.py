"""Property-based tests (hypothesis): whatever a user feeds the config parser or a tokenizer, the answer is a
well-formed result or the library's own clear error — never an exception from deep inside PyYAML or torch.

(a) ``Config``: random dotted overrides, random YAML-ish recipes and random recipe files either load or raise
    :class:`~mmadapt.errors.ConfigError` naming the offending key.
(b) Tokenizers that take raw input (text, image, video, audio, point cloud, tabular, graph; their ``forward``
    and ``collate``): random shapes (empty, wrong rank), values (NaN, ±inf, huge) and dtypes either give a
    consistent ``TokenBatch`` (finite where the input was) or raise a ``ValueError`` (``DataError`` /
    ``ConfigError`` are ones) from mmadapt's own code whose message names the shape that is wrong.

Examples are derandomized (the same each run) and few (``max_examples`` 50), so the file runs in seconds.
"""

from __future__ import annotations

import dataclasses
import traceback
import typing
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import mmadapt
from mmadapt import registry
from mmadapt.config import Config
from mmadapt.errors import ConfigError, DataError

PACKAGE = Path(mmadapt.__file__).resolve().parent  # errors must be raised by code under here
SETTINGS = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.large_base_example])


# ---------------------------------------------------------------------------------------------- (a) config
def _dotted_paths(tp, prefix: str) -> list[str]:
    """Every settable dotted key under the dataclass ``tp`` (``tasks`` as ``tasks.vqa``, the adapter and the
    tokenizer sections with the fields of every registered adapter / configurable tokenizer)."""
    out = []
    hints = typing.get_type_hints(tp)
    for f in dataclasses.fields(tp):
        path = f"{prefix}{f.name}"
        out.append(path)
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        inner = hint if dataclasses.is_dataclass(hint) else (args[0] if args else None)
        if typing.get_origin(hint) is dict and dataclasses.is_dataclass(typing.get_args(hint)[1]):
            out += _dotted_paths(typing.get_args(hint)[1], f"{path}.vqa.")
        elif inner is not None:
            out += _dotted_paths(inner, f"{path}.")
        elif path in ("model.adapter", "model.tokenizer"):
            kind = "adapters" if path.endswith("adapter") else "tokenizers"
            for name in registry.names(kind):
                config_class = getattr(registry.get(kind, name), "config_class", None)
                if dataclasses.is_dataclass(config_class):
                    out += [f"{path}.{g.name}" for g in dataclasses.fields(config_class)]
    return sorted(set(out))


KNOWN_PATHS = _dotted_paths(Config, "")
SEGMENTS = sorted({part for path in KNOWN_PATHS for part in path.split(".")})
BASE = {"model": {"adapter": {"name": "epalm"}}, "tasks": {"vqa": {"max_new_tokens": 3}}}

scalar_text = st.one_of(
    st.sampled_from(["1", "-1", "0", "3e-4", "1e400", ".inf", "-.nan", "true", "no", "null", "~", "", " ",
                     "[1, 2]", "[", "{a: 1}", "{", "'quoted'", "2020-01-01", "0x1F", "!!python/object:os.system",
                     "&anchor 1", "*missing", "a: b: c", "- x", "epalm", "lora", "vqa_v2", "zoo:tiny-opt",
                     "hf_vit", "bf16", "image", "\t", "\x00", "é", "💥"]),
    st.text(max_size=12),
    st.integers(min_value=-10**20, max_value=10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
key_text = st.one_of(
    st.sampled_from(KNOWN_PATHS),
    st.lists(st.one_of(st.sampled_from(SEGMENTS), st.text(max_size=6)), min_size=1, max_size=4).map(".".join),
)


def _head(override: str) -> str:
    """The top-level key an override sets, as ``apply_overrides`` reads it."""
    return override.partition("=")[0].strip().split(".")[0]


def _check_config_error(exc: ConfigError, where: str, key_heads: set[str], overrides: list[str] = ()) -> None:
    """A ConfigError from ``from_dict(..., where=where)``: one line, ``"{where}: {dotted path}: ..."`` with the
    path starting at a top-level key the input set, or ``"override '{item}': ..."`` naming a malformed one."""
    message = str(exc)
    assert "\n" not in message, message
    if any(message.startswith(f"override {item!r}: ") for item in overrides):
        return
    assert message.startswith(f"{where}: "), message
    head = message[len(where) + 2:].split(": ")[0].split(".")[0]
    heads = {str(h) for h in key_heads} | {str(h).strip() for h in key_heads} | {"model", "tasks"}
    assert head in heads | {repr(h) for h in heads} or head.split("[")[0] in heads, message


@SETTINGS
@given(key=key_text, value=scalar_text)
def test_any_dotted_override_loads_or_names_its_key(key, value):
    override = f"{key}={value}"
    try:
        cfg = Config.from_dict(BASE, [override])
    except ConfigError as exc:
        _check_config_error(exc, "config", {_head(override)}, [override])
        return
    again = Config.from_dict(cfg.to_dict())  # what loads, saves and loads again unchanged
    assert again.to_dict() == cfg.to_dict()


@SETTINGS
@given(overrides=st.lists(st.builds("{}={}".format, key_text, scalar_text), max_size=4))
def test_several_overrides_load_or_raise_a_config_error(overrides):
    try:
        Config.from_dict(BASE, overrides)
    except ConfigError as exc:
        _check_config_error(exc, "config", {_head(item) for item in overrides}, overrides)


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.text(max_size=8),
              st.sampled_from(["epalm", "vqa_v2", "hf_vit", "zoo:tiny-opt", "perceptual_lm", "adapted_encoder"])),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(SEGMENTS), st.text(max_size=5), st.integers(0, 3)), children,
                        max_size=4)),
    max_leaves=12,
)
recipes = st.dictionaries(st.sampled_from([*SEGMENTS[:5], "model", "tasks", "train", "eval", "output_dir", "bogus"]),
                          yaml_values, max_size=4)


@SETTINGS
@given(raw=recipes)
def test_a_random_recipe_loads_or_names_the_key_at_fault(raw):
    try:
        Config.from_dict(raw)
    except ConfigError as exc:
        _check_config_error(exc, "config", {str(k) for k in raw})


@SETTINGS
@given(content=st.one_of(recipes.map(lambda raw: yaml.safe_dump(raw, allow_unicode=True)), st.text(max_size=60),
                         st.binary(max_size=40)))
def test_a_random_recipe_file_loads_or_raises_a_config_error_naming_the_file(content, tmp_path_factory):
    path = tmp_path_factory.mktemp("recipe") / "recipe.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    try:
        Config.from_yaml(path)
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc), str(exc)


# keys whose value picks a class (an adapter, a tokenizer, an assembly, a format): their value is looked up
DISPATCH = ["model.adapter.name", "model.tokenizer.name", "model.adapter", "model.tokenizer", "model.assembly",
            "model.vision.kind", "tasks.vqa.train.format", "tasks.vqa", "tasks"]


@SETTINGS
@given(key=st.one_of(st.sampled_from(DISPATCH), st.sampled_from(KNOWN_PATHS)), value=yaml_values)
def test_a_known_key_set_to_any_value_loads_or_names_that_key(key, value):
    """Any YAML value (scalar, list, mapping) under a real key: the error's dotted path is that key, a section
    above it, or a key beside it (a cross-field check such as ``model.encoder: missing`` after
    ``model.assembly=adapted_encoder``)."""
    override = f"{key}={yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip()}"
    try:
        Config.from_dict(BASE, [override])
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("config: ") and "\n" not in message, message
        path = message[len("config: "):].split(": ")[0]
        parent = key.rpartition(".")[0]
        assert key.startswith(path) or path.startswith(parent), f"{override} → {message}"


def test_the_override_paths_cover_the_sections():
    assert {"train.max_steps", "model.lm.trust_remote_code", "tasks.vqa.train.format", "model.adapter.n_injected",
            "model.tokenizer.n_points"} <= set(KNOWN_PATHS)


# ---------------------------------------------------------------------------------------- (b) tokenizers
DIM = 8


def _check_raised_here(exc: BaseException, tensors: dict[str, torch.Tensor | None]) -> None:
    """``exc`` is a one-line ValueError raised by mmadapt's own code; a plain ValueError (a tokenizer's input
    check) names the input at fault or its shape (or an input is missing); a DataError / ConfigError says where
    first."""
    assert isinstance(exc, ValueError), f"{type(exc).__name__}: {exc}"
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    assert Path(frame.filename).resolve().is_relative_to(PACKAGE), f"raised in {frame.filename}: {exc!r}"
    assert "\n" not in str(exc), str(exc)
    if isinstance(exc, (DataError, ConfigError)):
        assert ": " in str(exc), str(exc)
        return
    shapes = [str(list(t.shape)) for t in tensors.values() if isinstance(t, torch.Tensor)]
    named = (any(shape in str(exc) for shape in shapes) or any(name in str(exc) for name in tensors)
             or any(t is None for t in tensors.values()))
    assert named, f"{exc} (inputs {dict(zip(tensors, shapes))})"


def _check_batch(batch, batch_size: int, finite: bool) -> None:
    tokens, mask = batch.tokens, batch.mask
    assert tokens.ndim == 3 and tokens.shape[0] == batch_size and tokens.shape[2] == DIM
    assert mask.dtype == torch.bool and tuple(mask.shape) == tuple(tokens.shape[:2])
    assert batch.coords is None or tuple(batch.coords.shape[:2]) == tuple(tokens.shape[:2])
    if finite:
        assert torch.isfinite(tokens).all(), "finite input gave non-finite tokens"


def _run(call, tensors: dict[str, torch.Tensor | None], batch_size: int, finite: bool) -> None:
    try:
        with torch.no_grad():
            batch = call()
    except ValueError as exc:
        _check_raised_here(exc, tensors)
        return
    _check_batch(batch, batch_size, finite)


def _is_tame(*tensors: torch.Tensor | None) -> bool:
    """Finite, and small enough that no layer can overflow float32."""
    return all(t is None or not t.is_floating_point() or bool((t.abs() <= 1e4).all()) for t in tensors)


SPECIAL = [float("nan"), float("inf"), -float("inf"), 1e30, -1e38, 0.0]


@st.composite
def shapes(draw, choices: list[list[int]]) -> list[int]:
    """One of ``choices`` (the valid shapes and near misses), the same with one dimension changed (to 0, 1, a
    small or a large size), or a random shape of rank 0..5."""
    kind = draw(st.sampled_from(["choice", "changed", "random"]))
    if kind == "random":
        return draw(st.lists(st.integers(0, 5), min_size=0, max_size=5))
    shape = list(draw(st.sampled_from(choices)))
    if kind == "changed" and shape:
        shape[draw(st.integers(0, len(shape) - 1))] = draw(st.sampled_from([0, 1, 2, 3, 5, 7, 17]))
    return shape


@st.composite
def tensors(draw, shape_choices: list[list[int]], dtype=torch.float32):
    """A tensor of a shape drawn by :func:`shapes`: seeded random values (floats in [-2, 2), or integers in
    [-3, 40)) with up to three entries set to NaN, ±inf, huge or 0; integer tensors come as floats at times."""
    shape = draw(shapes(shape_choices))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    if not dtype.is_floating_point and draw(st.integers(0, 9)) == 0:
        dtype = torch.float32  # e.g. degrees or category codes stored as floats
    if dtype.is_floating_point:
        out = torch.rand(shape, generator=generator, dtype=dtype) * 4 - 2
        n = out.numel()
        for index, value in draw(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(SPECIAL)), max_size=3)):
            if n:
                out.view(-1)[index % n] = value
        return out
    return torch.randint(-3, 40, shape, generator=generator, dtype=dtype)


@pytest.fixture(scope="module")
def toks():
    from mmadapt.tokenizers import (AudioTokenizer, GraphTokenizer, ImagePatchTokenizer, PointCloudTokenizer,
                                    TabularTokenizer, VideoTokenizer)
    from mmadapt.tokenizers.audio import AudioTokenizerConfig
    from mmadapt.tokenizers.graph import GraphTokenizerConfig
    from mmadapt.tokenizers.image import ImageTokenizerConfig
    from mmadapt.tokenizers.point_cloud import PointCloudTokenizerConfig
    from mmadapt.tokenizers.tabular import TabularTokenizerConfig
    from mmadapt.tokenizers.video import VideoTokenizerConfig

    torch.manual_seed(0)
    built = {
        "image": ImagePatchTokenizer(DIM, ImageTokenizerConfig(image_size=8, patch_size=4)),
        "video": VideoTokenizer(DIM, VideoTokenizerConfig(n_frames=4, image_size=8, patch_size=4, tubelet_size=2)),
        "audio": AudioTokenizer(DIM, AudioTokenizerConfig(n_mels=8, max_frames=12, patch_size=4, stride=4)),
        "point_cloud": PointCloudTokenizer(DIM, PointCloudTokenizerConfig(n_points=16, n_groups=2, group_size=3,
                                                                          hidden=4, position_hidden=4)),
        "tabular": TabularTokenizer(DIM, TabularTokenizerConfig(numeric=["a", "b"], categorical=["c"],
                                                                categories={"c": ["x", "y"]})),
        "graph": GraphTokenizer(DIM, GraphTokenizerConfig(node_feature_dim=2, lap_k=2, max_degree=4)),
    }
    return {name: tok.eval() for name, tok in built.items()}


@SETTINGS
@given(pixels=tensors([[2, 3, 8, 8], [0, 3, 8, 8], [1, 3, 4, 4], [3, 8, 8]]))
def test_image_tokenizer(toks, pixels):
    _run(lambda: toks["image"](pixels), {"pixels": pixels}, pixels.shape[0] if pixels.ndim else -1, _is_tame(pixels))


@SETTINGS
@example(frames=torch.zeros(1, 0, 3, 8, 8))  # no frames: once a crash inside Conv3d
@example(frames=torch.zeros(1, 4, 3, 0, 0))  # no pixels: likewise
@given(frames=tensors([[1, 4, 3, 8, 8], [2, 2, 3, 8, 8], [0, 4, 3, 8, 8], [1, 3, 3, 8, 8], [1, 4, 3, 4, 4]]))
def test_video_tokenizer(toks, frames):
    _run(lambda: toks["video"](frames), {"frames": frames}, frames.shape[0] if frames.ndim else -1,
         _is_tame(frames))


@SETTINGS
@given(features=tensors([[2, 8, 8], [1, 12, 8], [0, 8, 8], [1, 3, 8], [2, 8, 5]]),
       lengths=st.one_of(st.none(), tensors([[2], [1], [0], [3]], dtype=torch.long)))
def test_audio_tokenizer(toks, features, lengths):
    _run(lambda: toks["audio"](features, lengths), {"features": features, "lengths": lengths},
         features.shape[0] if features.ndim else -1, _is_tame(features))


@SETTINGS
@example(points=torch.zeros(0, 16, 3), lengths=None)  # an empty batch: found by hypothesis (lengths.min() crash)
@given(points=tensors([[2, 16, 3], [1, 4, 3], [0, 16, 3], [1, 16, 4], [2, 3, 3]]),
       lengths=st.one_of(st.none(), tensors([[2], [1], [0]], dtype=torch.long)))
def test_point_cloud_tokenizer(toks, points, lengths):
    _run(lambda: toks["point_cloud"](points, lengths), {"points": points, "lengths": lengths},
         points.shape[0] if points.ndim else -1, _is_tame(points))


@SETTINGS
@given(numeric=st.one_of(st.none(), tensors([[3, 2], [0, 2], [3, 1]])),
       categorical=st.one_of(st.none(), tensors([[3, 1], [0, 1], [2, 1]], dtype=torch.long),
                             tensors([[3, 1]], dtype=torch.float32)))
def test_tabular_tokenizer(toks, numeric, categorical):
    batch_size = numeric.shape[0] if numeric is not None and numeric.ndim else -1
    nan_is_missing = numeric is None or bool((numeric.isnan() | (numeric.abs() <= 1e4)).all())  # NaN: missing
    _run(lambda: toks["tabular"](numeric, categorical), {"numeric": numeric, "categorical": categorical},
         batch_size, nan_is_missing)


@SETTINGS
@example(degree=torch.zeros(1, 3), lap_pe=torch.zeros(1, 3, 2), node_mask=torch.ones(1, 3, dtype=torch.bool),
         node_features=torch.zeros(1, 3, 2))  # float degrees: once a crash inside nn.Embedding
@given(degree=st.one_of(tensors([[2, 5], [1, 3], [0, 4]], dtype=torch.long), tensors([[2, 5]])),
       lap_pe=tensors([[2, 5, 2], [1, 3, 2], [2, 5, 3]]),
       node_mask=tensors([[2, 5], [1, 3]], dtype=torch.long).map(lambda t: t > 0),
       node_features=st.one_of(st.none(), tensors([[2, 5, 2], [1, 3, 2], [2, 5, 1]])))
def test_graph_tokenizer(toks, degree, lap_pe, node_mask, node_features):
    _run(lambda: toks["graph"](degree, lap_pe, node_mask, node_features),
         {"degree": degree, "lap_pe": lap_pe, "node_mask": node_mask, "node_features": node_features},
         degree.shape[0] if degree.ndim else -1, _is_tame(lap_pe, node_features))


def _collate_then_forward(tok, samples: list[torch.Tensor]) -> None:
    """Clouds / features of mixed sizes through ``collate`` (which pads them) and ``forward``."""
    named = {f"sample {i}": s for i, s in enumerate(samples)}
    try:
        inputs = tok.collate(samples)
    except ValueError as exc:
        _check_raised_here(exc, named or {"samples": None})
        return
    _run(lambda: tok(**inputs), {**named, **inputs}, len(samples), _is_tame(*samples))


@SETTINGS
@given(samples=st.lists(tensors([[16, 3], [20, 3], [2, 3], [16, 4]]), min_size=0, max_size=3))
def test_point_cloud_collate_then_forward(toks, samples):
    _collate_then_forward(toks["point_cloud"], samples)


@SETTINGS
@given(samples=st.lists(tensors([[8, 8], [12, 8], [3, 8], [20, 8], [4, 5]]), min_size=0, max_size=3))
def test_audio_collate_then_forward(toks, samples):
    _collate_then_forward(toks["audio"], samples)


@SETTINGS
@given(waveform=tensors([[400], [1000], [399], [0], [1, 400], [1]]))
def test_audio_load_of_a_waveform(toks, waveform):
    """A waveform tensor ``[S]`` through ``load`` → fbank features (a 2-D tensor is taken as features as is)."""
    tok = toks["audio"]
    assume(waveform.ndim != 2)
    try:
        features = tok.load(waveform)
    except ValueError as exc:
        _check_raised_here(exc, {"waveform": waveform})
        return
    assert features.ndim == 2 and features.shape[1] == 8
    assert not _is_tame(waveform) or torch.isfinite(features).all()


@SETTINGS
@given(points=tensors([[20, 3], [5, 6], [0, 3], [4, 2], [3]]))
def test_point_cloud_load_of_points_in_memory(toks, points):
    tok = toks["point_cloud"]
    try:
        loaded = tok.load(points)
    except ValueError as exc:
        _check_raised_here(exc, {"points": points})
        return
    assert tuple(loaded.shape) == (16, 3) and torch.isfinite(loaded).all()


@pytest.fixture(scope="module")
def text_tok():
    from tiny import word_tokenizer

    from mmadapt.tokenizers import TextTokenizer

    tokenizer = word_tokenizer()
    return TextTokenizer(tokenizer, torch.nn.Embedding(len(tokenizer), DIM), max_length=6)


@SETTINGS
@given(texts=st.lists(st.one_of(st.text(max_size=30), st.sampled_from(["", " ", "what color is the disc ?",
                                                                     "x" * 500, "\x00", "é 💥"])),
                      min_size=0, max_size=4))
def test_text_tokenizer(text_tok, texts):
    try:
        with torch.no_grad():
            batch = text_tok(texts)
    except ValueError as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        assert Path(frame.filename).resolve().is_relative_to(PACKAGE), f"raised in {frame.filename}: {exc!r}"
        assert "text" in str(exc)
        return
    _check_batch(batch, len(texts), True)
    assert batch.tokens.shape[1] <= 6
    assert batch.mask.sum(dim=1).min() >= 1  # every text has at least its BOS token


def test_the_tokenizer_check_rejects_a_value_error_from_inside_torch():
    """The checker itself: a ValueError that torch raises (not mmadapt) must fail it."""
    logits = torch.zeros(2, 3)
    with pytest.raises(ValueError) as caught:
        torch.nn.functional.cross_entropy(logits, torch.zeros(3, dtype=torch.long))
    with pytest.raises(AssertionError, match="raised in"):
        _check_raised_here(caught.value, {"logits": logits})
