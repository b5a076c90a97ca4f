"""The frozen TimeSformer backbone on the zoo's tiny TimeSformer: loads by path and by zoo name, stays frozen,
reads per-block [CLS] tokens through the final LayerNorm (as eP-ALM does), loads mp4 clips and normalises
them like its saved processor. The full zoo build (minutes) is exercised by the slow test only."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mmadapt import zoo
from mmadapt.zoo import cache

NAME = "zoo:tiny-timesformer"


@pytest.fixture(scope="module")
def quick_entry(tmp_path_factory) -> Path:
    return zoo.build_entry(NAME, root=tmp_path_factory.mktemp("zoo"), quick=True)


@pytest.fixture(scope="module")
def encoder(quick_entry):
    from mmadapt.backbones.video import HFTimeSformer

    return HFTimeSformer.from_pretrained(str(quick_entry))


def _clips(n: int = 2, frames: int = 8, size: int = 32, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(frames, 3, size, size, generator=g) for _ in range(n)]


def test_loads_by_path_and_is_registered(encoder, quick_entry):
    from mmadapt import registry
    from mmadapt.backbones.video import HFTimeSformer

    assert registry.get("backbones", "hf_timesformer") is HFTimeSformer
    quick = zoo.zoo_spec(NAME, quick=True)["model"]
    assert (encoder.hidden_size, encoder.num_layers) == (quick["hidden_size"], quick["num_hidden_layers"])
    assert encoder.num_frames == 8 and encoder.image_size == (32, 32)
    assert encoder.identity == f"hf_timesformer:{quick_entry}@main"
    assert encoder.dtype == torch.float32
    assert cache.read_manifest(quick_entry)["name"] == NAME
    assert {"direction", "shape"} <= set(cache.read_manifest(quick_entry)["metrics"]["accuracy"])


def test_loads_by_zoo_name(quick_entry, monkeypatch):
    """Without a shipped entry, ``zoo:tiny-timesformer`` resolves through ``$MMADAPT_HOME``; the quick spec stands
    in for the full one, so the entry built above is found there (verified, not rebuilt)."""
    from mmadapt.backbones.video import HFTimeSformer
    from mmadapt.zoo import tiny_timesformer

    monkeypatch.setenv("MMADAPT_HOME", str(quick_entry.parents[1]))
    monkeypatch.setattr(zoo, "shipped_entry", lambda name: None)
    monkeypatch.setattr(tiny_timesformer, "DEFAULT_SPEC", zoo.zoo_spec(NAME, quick=True))
    monkeypatch.setattr(tiny_timesformer, "build", lambda *_: pytest.fail("the cached entry must be reused"))
    assert zoo.resolve_pretrained(NAME) == str(quick_entry)
    enc = HFTimeSformer.from_pretrained(NAME)
    assert enc.identity == "hf_timesformer:zoo:tiny-timesformer@main"
    by_path = HFTimeSformer.from_pretrained(str(quick_entry))
    mine, theirs = enc.state_dict(), by_path.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_stays_frozen(encoder):
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not any(m.training for m in encoder.modules()), "a frozen backbone must stay in eval mode"


def test_layer_cls_is_the_final_layernorm_of_each_blocks_cls(encoder):
    pixels = encoder.preprocess(_clips())
    assert pixels.shape == (2, 8, 3, 32, 32)
    cls = encoder.layer_cls(pixels)
    assert cls.shape == (2, encoder.num_layers, encoder.hidden_size)
    out = encoder.model(pixel_values=pixels, output_hidden_states=True)
    assert len(out.hidden_states) == encoder.num_layers + 1
    for layer in range(encoder.num_layers):
        torch.testing.assert_close(cls[:, layer], encoder.model.layernorm(out.hidden_states[layer + 1][:, 0]))
    torch.testing.assert_close(cls[:, -1], out.last_hidden_state[:, 0])  # the model's own final norm
    tokens = encoder.layer_tokens(pixels)
    assert len(tokens) == encoder.num_layers and tokens[0].shape == (2, 1 + 16 * 8, encoder.hidden_size)
    assert not torch.equal(cls[0], cls[1]), "different clips must give different [CLS] tokens"


def test_preprocess_normalises_exactly(encoder):
    clip = torch.zeros(8, 3, 32, 32)
    clip[3, 1, 5, 7] = 0.8
    pixels = encoder.preprocess([clip])
    mean, std = encoder.processor.image_mean, encoder.processor.image_std
    assert pixels[0, 3, 1, 5, 7].item() == pytest.approx((0.8 - mean[1]) / std[1], abs=1e-6)
    assert pixels[0, 0, 0, 0, 0].item() == pytest.approx((0.0 - mean[0]) / std[0], abs=1e-6)
    # same numbers as the saved processor on uint8 frames (its resize / crop are no-ops at the model's size)
    frames = [(c * 255).round().to(torch.uint8) for c in _clips(1)]
    reference = encoder.processor([list(frames[0])], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(encoder.preprocess(frames), reference, rtol=0, atol=1e-5)
    # other sizes: shortest edge to 32, then a 32 x 32 centre crop
    assert encoder.preprocess(_clips(1, size=48)).shape == (1, 8, 3, 32, 32)
    assert encoder.preprocess([torch.rand(8, 3, 40, 64)]).shape == (1, 8, 3, 32, 32)


def test_bad_clips_are_data_errors(encoder):
    from mmadapt.errors import DataError

    with pytest.raises(DataError, match="clip 1: expected 8 frames .* got 5"):
        encoder.preprocess([torch.rand(8, 3, 32, 32), torch.rand(5, 3, 32, 32)])
    with pytest.raises(DataError, match=r"clip 0: expected a tensor \[T, 3, H, W\], got \[8, 32, 32\]"):
        encoder.preprocess([torch.rand(8, 32, 32)])
    with pytest.raises(DataError, match="no clips"):
        encoder.preprocess([])
    with pytest.raises(DataError, match=r"hf_timesformer.load: expected a clip \[T, 3, H, W\]"):
        encoder.load(torch.rand(3, 32, 32))


def test_load_reads_an_mp4_into_frames(encoder, tmp_path):
    from mmadapt.data.synthetic.video import render_clip, sample_moving_shape
    from mmadapt.io.video import write_video

    clip = sample_moving_shape(np.random.default_rng(0), "moving_right", 48)
    path = write_video(tmp_path / "clip.mp4", render_clip(clip, 48, 16), fps=8)
    frames = encoder.load(path)
    assert frames.shape == (8, 3, 32, 32) and frames.dtype == torch.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    assert encoder.load(str(path)).equal(frames)
    assert encoder.load(frames) is frames  # a tensor passes through
    cls = encoder.layer_cls(encoder.preprocess([frames, encoder.load(path)]))
    assert cls.shape == (2, encoder.num_layers, encoder.hidden_size) and torch.isfinite(cls).all()


def test_a_corrupt_file_is_a_data_error_naming_it(encoder, tmp_path):
    from mmadapt.data.synthetic.video import render_clip, sample_moving_shape
    from mmadapt.errors import DataError
    from mmadapt.io.video import write_video

    good = write_video(tmp_path / "good.mp4", render_clip(sample_moving_shape(np.random.default_rng(1),
                                                                               "moving_up", 32), 32, 8), fps=8)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    with pytest.raises(DataError, match=re.escape(str(bad))):
        encoder.load(bad)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 10)
    with pytest.raises(DataError, match="junk.mp4: not a video file"):
        encoder.load(str(junk))


def test_quick_build_is_deterministic(quick_entry, tmp_path):
    """Same spec, another cache root → byte-identical weights and processor."""
    def hashes(entry: Path) -> dict[str, str]:
        return {k: v["sha256"] for k, v in cache.read_manifest(entry)["files"].items()}

    assert hashes(zoo.build_entry(NAME, root=tmp_path, quick=True)) == hashes(quick_entry)


@pytest.mark.slow
def test_full_build_learns_direction_and_shape():
    """The full zoo build (user cache; ~3 minutes on 2 CPU cores if missing) reads both the motion direction
    and the shape from its [CLS] token on held-out clips."""
    metrics = zoo.zoo_manifest(NAME)["metrics"]
    assert metrics["accuracy"]["direction"] >= 0.9, metrics
    assert metrics["accuracy"]["shape"] >= 0.8, metrics
