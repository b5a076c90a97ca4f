"""The frozen AST audio encoder (``hf_ast``) on the zoo's ``zoo:tiny-ast``: loads by path and by zoo name,
stays frozen, exposes per-layer [CLS] tokens after the final LayerNorm, runs external tokens through its
blocks, and reads wav files. A quick (untrained) zoo build keeps this fast; the slow test checks the full
build's held-out accuracy."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mmadapt import zoo
from mmadapt.backbones.audio import HFAST
from mmadapt.data.synthetic.audio import CLASSES, synthesize
from mmadapt.errors import DataError
from mmadapt.io.audio import write_audio
from mmadapt.zoo import cache, tiny_ast

SR = 16000


@pytest.fixture(scope="module")
def quick_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("zoo")


@pytest.fixture(scope="module")
def quick_ast(quick_root) -> Path:
    return zoo.build_entry("zoo:tiny-ast", root=quick_root, quick=True)


@pytest.fixture(scope="module")
def enc(quick_ast) -> HFAST:
    return HFAST.from_pretrained(str(quick_ast))


def _waves(n: int = 3, seconds: float = 1.0) -> list[torch.Tensor]:
    rng = np.random.default_rng(0)
    return [torch.from_numpy(synthesize(rng, CLASSES[i % len(CLASSES)], SR, seconds)) for i in range(n)]


def _hashes(entry: Path) -> dict[str, str]:
    return {k: v["sha256"] for k, v in cache.read_manifest(entry)["files"].items()}


def test_quick_build_is_a_loadable_hf_directory(quick_ast, quick_root, tmp_path):
    from transformers import ASTModel, AutoFeatureExtractor

    fe = AutoFeatureExtractor.from_pretrained(quick_ast)
    manifest = cache.read_manifest(quick_ast)
    assert type(fe).__name__ == "ASTFeatureExtractor"
    assert (fe.num_mel_bins, fe.max_length, fe.sampling_rate) == (64, 100, SR)
    m = manifest["metrics"]
    assert (fe.mean, fe.std) == (m["feature_mean"], m["feature_std"]) and fe.do_normalize
    assert {"sound_class", "pitch_band", "class/am_tone", "random_gain/sound_class"} <= set(m["accuracy"])
    model = ASTModel.from_pretrained(quick_ast)
    assert model.config.num_mel_bins == 64 and model.config.max_length == 100 and model.config.num_hidden_layers == 2
    # same spec, another root: byte-identical files
    assert _hashes(zoo.build_entry("zoo:tiny-ast", root=tmp_path, quick=True)) == _hashes(quick_ast)


def test_loads_by_path_and_by_zoo_name_and_is_frozen(enc, quick_ast, quick_root, monkeypatch):
    from mmadapt import registry

    assert registry.get("backbones", "hf_ast") is HFAST
    assert enc.identity == f"hf_ast:{quick_ast}@main"
    assert (enc.hidden_size, enc.num_layers, enc.dtype, enc.sample_rate) == (32, 2, torch.float32, SR)

    # zoo name → the quick entry under MMADAPT_HOME (zoo_path patched to the quick spec: already built there)
    monkeypatch.setenv("MMADAPT_HOME", str(quick_root))
    monkeypatch.setattr(zoo, "zoo_path", lambda name, rebuild=False: zoo.build_entry(name, quick=True))
    by_name = HFAST.from_pretrained("zoo:tiny-ast")
    assert by_name.identity == "hf_ast:zoo:tiny-ast@main"
    for (n1, p1), (n2, p2) in zip(enc.state_dict().items(), by_name.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)

    for module in (enc, by_name):
        assert all(not p.requires_grad for p in module.parameters())
        module.train()
        assert not any(m.training for m in module.modules()), "a frozen backbone must stay in eval mode"


def test_layer_cls_is_each_blocks_cls_through_the_final_norm(enc):
    x = enc.preprocess(_waves(3))
    assert x.shape == (3, 100, 64) and x.dtype == torch.float32
    with torch.no_grad():
        cls = enc.layer_cls(x)
        out = enc.model(input_values=x, output_hidden_states=True)
        tokens = enc.layer_tokens(x)
    assert cls.shape == (3, enc.num_layers, enc.hidden_size)
    assert len(out.hidden_states) == enc.num_layers + 1  # embeddings + one per block
    n_tokens = 2 + 5 * 9  # [CLS], [DIST], (64-16)/10+1 = 5 frequency × (100-16)/10+1 = 9 time patches
    assert [t.shape for t in tokens] == [(3, n_tokens, enc.hidden_size)] * enc.num_layers
    for layer in range(enc.num_layers):
        expected = enc.model.layernorm(out.hidden_states[layer + 1][:, 0])
        torch.testing.assert_close(cls[:, layer], expected, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(tokens[layer], out.hidden_states[layer + 1])
    torch.testing.assert_close(cls[:, -1], out.last_hidden_state[:, 0], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(cls[:, 0], cls[:, -1])


def test_run_blocks_reproduces_the_encoder_and_ignores_padding(enc):
    """Fed the encoder's own patch tokens (+ their position embeddings), run_blocks gives the encoder's own
    final tokens minus [DIST]; padded tokens (mask False) change nothing for the real ones; gradients reach
    the input tokens."""
    x = enc.preprocess(_waves(2))
    emb = enc.model.embeddings
    with torch.no_grad():
        tokens = emb.patch_embeddings(x) + emb.position_embeddings[:, 2:]
        own = enc.model(input_values=x).last_hidden_state
    B, N, D = tokens.shape
    hidden, mask = enc.run_blocks(tokens, torch.ones(B, N, dtype=torch.bool))
    assert hidden.shape == (B, 1 + N, D) and mask.shape == (B, 1 + N) and mask.all()
    torch.testing.assert_close(hidden, torch.cat([own[:, :1], own[:, 2:]], dim=1), atol=1e-5, rtol=1e-4)
    assert len(enc.blocks) == enc.num_layers

    junk = torch.randn(B, 5, D) * 10
    padded = torch.cat([tokens, junk], dim=1).requires_grad_(True)
    pmask = torch.cat([torch.ones(B, N, dtype=torch.bool), torch.zeros(B, 5, dtype=torch.bool)], dim=1)
    hidden_p, mask_p = enc.run_blocks(padded, pmask)
    assert mask_p.shape == (B, 1 + N + 5) and not mask_p[:, -5:].any() and mask_p[:, : 1 + N].all()
    torch.testing.assert_close(hidden_p[:, : 1 + N], hidden, atol=1e-5, rtol=1e-4)
    hidden_p[:, : 1 + N].sum().backward()
    assert padded.grad[:, :N].abs().sum() > 0 and padded.grad[:, N:].abs().sum() == 0
    with pytest.raises(ValueError, match="width"):
        enc.run_blocks(torch.zeros(1, 3, D + 1), torch.ones(1, 3, dtype=torch.bool))


def test_load_reads_wav_files_and_passes_waveforms_through(enc, tmp_path):
    wave = _waves(1)[0]
    path = write_audio(tmp_path / "clip.wav", wave, SR)
    loaded = enc.load(path)
    assert loaded.shape == wave.shape and loaded.dtype == torch.float32
    assert (loaded - wave).abs().max() <= 1 / 32768 + 1e-7  # 16-bit PCM
    assert enc.load(wave) is wave
    with pytest.raises(DataError, match=r"mono waveform \[S\]"):
        enc.load(wave[None])

    other_rate = write_audio(tmp_path / "clip22k.wav", wave[:11025].numpy(), 22050)  # 0.5 s at 22.05 kHz
    assert enc.load(other_rate).shape == (8000,)  # resampled to the feature extractor's 16 kHz

    x = enc.preprocess([loaded, enc.load(other_rate)])
    assert x.shape == (2, 100, 64)
    direct = enc.feature_extractor([loaded.numpy()], sampling_rate=SR, return_tensors="pt")["input_values"]
    torch.testing.assert_close(x[:1], direct)
    # the half-second clip is zero-padded (in fbank units) after its last frame: 1 + (8000 - 400) // 160 = 48
    pad = (0.0 - enc.feature_extractor.mean) / (2 * enc.feature_extractor.std)
    torch.testing.assert_close(x[1, 48:], torch.full((52, 64), pad))
    with pytest.raises(DataError, match="waveform 1: 100 samples is shorter than one 25 ms frame"):
        enc.preprocess([loaded, torch.zeros(100)])
    with pytest.raises(DataError, match="waveform 0: expected a mono waveform"):
        enc.preprocess([torch.zeros(2, SR)])


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_wav_is_a_data_error_naming_the_file(enc, tmp_path, damage):
    path = tmp_path / "broken.wav"
    if damage == "garbage":
        path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really audio at all")
    else:
        write_audio(path, _waves(1)[0], SR)
        path.write_bytes(path.read_bytes()[: 44 + 1000])
    with pytest.raises(DataError, match=re.escape(str(path))):
        enc.load(path)


def test_pitch_band_is_measured_on_the_waveform():
    t = np.arange(SR) / SR
    for freq, band in ((300.0, "low"), (1000.0, "mid"), (3000.0, "high")):
        tone = 0.5 * np.sin(2 * np.pi * freq * t)
        assert abs(tiny_ast.base_frequency(tone, "tone", SR) - freq) <= 1.0
        am = (1 - 0.4 * (1 - np.cos(2 * np.pi * 4 * t))) * tone
        assert tiny_ast.pitch_band(tiny_ast.base_frequency(am, "am_tone", SR)) == band
    # an exponential sweep 400 → 1600 Hz: 800 Hz at mid-clip, whichever way it runs
    phase = 2 * np.pi * 400 * (4**t - 1) / np.log(4)
    for chirp, label in ((np.sin(phase), "rising_chirp"), (np.sin(phase[::-1]), "falling_chirp")):
        assert abs(tiny_ast.base_frequency(chirp, label, SR) / 800 - 1) < 0.03
    assert tiny_ast.base_frequency(np.random.default_rng(0).standard_normal(SR), "noise", SR) is None
    assert [tiny_ast.pitch_band(f) for f in (None, 542.0, 543.0, 1473.0, 1474.0)] == [None, "low", "mid", "mid", "high"]


@pytest.mark.slow
def test_full_zoo_build_hears_the_sound_classes():
    """The full ``zoo:tiny-ast`` (built in the user cache on first use, ~2-3 CPU minutes) classifies
    held-out synthetic clips from its [CLS] token."""
    manifest = zoo.zoo_manifest("zoo:tiny-ast")
    acc = manifest["metrics"]["accuracy"]
    assert acc["sound_class"] >= 0.9, acc
    assert acc["pitch_band"] >= 0.9, acc
    assert acc["random_gain/sound_class"] >= 0.9, acc  # loudness is not what it listens to
    enc = HFAST.from_pretrained("zoo:tiny-ast")
    x = enc.preprocess(_waves(5))
    assert enc.layer_cls(x).shape == (5, enc.num_layers, enc.hidden_size) == (5, 4, 128)
