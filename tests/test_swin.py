"""The frozen Swin backbone (``hf_swin``) and ``zoo:tiny-swin``: four stage maps before each patch merging
(the last through the model's final LayerNorm), a hook on every block whose changes reach the stage maps,
frozen weights, loading by path / zoo name / random init, and clear errors on input sizes it cannot run.

Most tests use a tiny ``SwinModel`` built from a ``SwinConfig`` and saved to a temporary directory; a quick
(untrained) zoo build checks the zoo entry; the slow test checks the full build's held-out accuracy."""

from __future__ import annotations

import random
import typing
from pathlib import Path

import pytest
import torch

from mmadapt import zoo
from mmadapt.backbones.swin import HFSwin
from mmadapt.errors import ConfigError
from mmadapt.zoo import cache

WIDTHS = [8, 16, 32, 64]


def _save_tiny_swin(directory: Path, *, with_processor: bool = True, seed: int = 0) -> Path:
    from transformers import SwinConfig, SwinModel, ViTImageProcessor

    torch.manual_seed(seed)
    config = SwinConfig(image_size=64, patch_size=2, embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 1, 2, 2],
                        window_size=4, drop_path_rate=0.0)
    model = SwinModel(config, add_pooling_layer=False)
    with torch.no_grad():  # HF starts the relative position bias at zero: make it matter in these tests
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name:
                p.normal_(0, 0.5)
    model.save_pretrained(directory)
    if with_processor:
        ViTImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.5] * 3,
                          image_std=[0.5] * 3).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def swin_dir(tmp_path_factory) -> Path:
    return _save_tiny_swin(tmp_path_factory.mktemp("tiny-swin"))


@pytest.fixture(scope="module")
def swin(swin_dir) -> HFSwin:
    return HFSwin.from_pretrained(str(swin_dir))


@pytest.fixture
def pixels() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True)
def _no_hook_left(request):
    yield
    if "swin" in request.fixturenames:
        request.getfixturevalue("swin").set_block_hook(None)


def _run(swin: HFSwin, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return swin(x)


def test_stage_maps_shapes_strides_and_norms(swin, pixels):
    assert (swin.hidden_sizes, swin.depths, swin.strides, swin.image_size) == (WIDTHS, [2] * 4, [2, 4, 8, 16],
                                                                                 (64, 64))
    maps = _run(swin, pixels)
    assert [tuple(m.shape) for m in maps] == [(2, c, 64 // s, 64 // s) for c, s in zip(WIDTHS, swin.strides)]
    assert [tuple(m.shape) for m in _run(swin, torch.randn(1, 3, 64, 96))] == [
        (1, 8, 32, 48), (1, 16, 16, 24), (1, 32, 8, 12), (1, 64, 4, 6)]
    assert [tuple(m.shape[-2:]) for m in _run(swin, torch.randn(1, 3, 128, 128))] == [(64, 64), (32, 32),
                                                                                          (16, 16), (8, 8)]
    # what the maps are: each stage's last block output (pre-merging), the last stage through the final norm
    seen = {}

    def record(index, stage, hidden):
        seen[stage] = hidden  # the last block of each stage wins
        return hidden

    swin.set_block_hook(record)
    maps = _run(swin, pixels)
    for s, m in enumerate(maps):
        B, C, H, W = m.shape
        tokens = m.flatten(2).transpose(1, 2)  # [B, H·W, C], row-major
        expected = swin.model.layernorm(seen[s]) if s == len(maps) - 1 else seen[s]
        torch.testing.assert_close(tokens, expected, rtol=0, atol=0)
    # the last map is normalised over channels (the fresh LayerNorm has weight 1, bias 0)
    assert maps[-1].mean(1).abs().max() < 1e-4
    torch.testing.assert_close(maps[-1].var(1, unbiased=False), torch.ones(2, 4, 4), atol=1e-3, rtol=0)


def test_blocks_and_hook_arguments(swin, pixels):
    blocks = swin.blocks()
    assert [stage for stage, _ in blocks] == [0, 0, 1, 1, 2, 2, 3, 3] and swin.num_blocks == 8
    assert all(type(b).__name__ == "SwinLayer" for _, b in blocks)
    calls = []
    swin.set_block_hook(lambda i, s, h: calls.append((i, s, tuple(h.shape))) or h)
    _run(swin, pixels)
    assert calls == [(i, i // 2, (2, (32 // 2 ** (i // 2)) ** 2, WIDTHS[i // 2])) for i in range(8)]


def test_identity_hook_is_bit_identical(swin, pixels):
    plain = _run(swin, pixels)
    swin.set_block_hook(lambda i, s, h: h)
    hooked = _run(swin, pixels)
    swin.set_block_hook(None)
    again = _run(swin, pixels)
    for a, b, c in zip(plain, hooked, again):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_a_hooks_change_reaches_its_stage_and_later_ones_only(swin, pixels):
    plain = _run(swin, pixels)
    # the first block of stage 1 (index 2): stage 0 untouched, stages 1..3 changed
    swin.set_block_hook(lambda i, s, h: h + 0.5 if i == 2 else h)
    changed = _run(swin, pixels)
    assert torch.equal(changed[0], plain[0])
    assert all(not torch.allclose(changed[s], plain[s]) for s in (1, 2, 3))
    # the last block of stage 1 (index 3): applied after its residuals, before the patch merging
    swin.set_block_hook(lambda i, s, h: h + 0.5 if i == 3 else h)
    changed = _run(swin, pixels)
    assert torch.equal(changed[1], plain[1] + 0.5)
    assert torch.equal(changed[0], plain[0]) and not torch.allclose(changed[2], plain[2])


def test_gradients_reach_the_hook_not_the_backbone(swin, pixels):
    scale = torch.nn.Parameter(torch.ones(()))
    swin.set_block_hook(lambda i, s, h: h * scale)
    sum(m.square().mean() for m in swin(pixels)).backward()
    assert scale.grad is not None and scale.grad.abs() > 0
    assert all(p.grad is None for p in swin.parameters())
    swin.set_block_hook(lambda i, s, h: h[:, :-1])
    with pytest.raises(ValueError, match=r"block hook at block 0 \(stage 0\) returned \[2, 1023, 8\]"):
        _run(swin, pixels)


def test_frozen_and_stays_in_eval_mode(swin):
    assert all(not p.requires_grad for p in swin.parameters())
    swin.train()
    assert not any(m.training for m in swin.modules()), "a frozen backbone must stay in eval mode"


def test_bad_input_sizes_raise_a_clear_error(swin, pixels):
    for shape in ([1, 3, 48, 48], [1, 3, 60, 64], [1, 3, 64, 72], [1, 3, 32, 32]):
        with pytest.raises(ConfigError, match=rf"pixel_values of shape \[{', '.join(map(str, shape))}\].*"
                                              r"multiples of 16.*window_size 4.*64 pixels"):
            swin(torch.zeros(shape))
    with pytest.raises(ConfigError, match=r"\[2, 1, 64, 64\], expected \[B, 3, H, W\]"):
        swin(torch.zeros(2, 1, 64, 64))
    with pytest.raises(ConfigError, match=r"\[3, 64, 64\]"):
        swin(torch.zeros(3, 64, 64))


def test_outputs_do_not_depend_on_earlier_input_sizes(swin):
    """HF's SwinLayer shrinks its window / drops its shift for a small map and keeps that; the wrapper
    restores them, so a 128² image gives the same maps before and after a 64² one."""
    big = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    first = _run(swin, big)
    _run(swin, torch.randn(1, 3, 64, 64))
    for a, b in zip(first, _run(swin, big)):
        assert torch.equal(a, b)


def test_from_pretrained_a_local_dir_processor_and_dtype(swin, swin_dir, tmp_path):
    from PIL import Image
    from transformers import ViTImageProcessor

    assert swin.identity == f"hf_swin:{swin_dir}@main"
    assert isinstance(swin.image_processor, ViTImageProcessor) and swin.processor is swin.image_processor
    images = [Image.new("RGB", (40, 30), (255, 0, 0)), Image.new("RGB", (64, 64), (0, 0, 255))]
    path = tmp_path / "red.png"
    images[0].save(path)
    loaded = swin.load(path)
    assert loaded.mode == "RGB" and loaded.size == (40, 30)
    x = swin.preprocess([loaded, images[1]])
    assert x.shape == (2, 3, 64, 64) and x.dtype == torch.float32
    torch.testing.assert_close(x[0, 0], torch.ones(64, 64))  # red, mean / std 0.5
    assert [tuple(m.shape) for m in _run(swin, x)] == [(2, c, 64 // s, 64 // s) for c, s in zip(WIDTHS, swin.strides)]

    bf16 = HFSwin.from_pretrained(str(swin_dir), dtype="bfloat16", attn_implementation="eager")
    assert bf16.dtype == torch.bfloat16 and bf16.model.config._attn_implementation == "eager"
    assert all(m.dtype == torch.bfloat16 for m in _run(bf16, x))

    # no preprocessor_config.json with the checkpoint: ImageNet statistics, resize to the config's size
    bare = HFSwin.from_pretrained(str(_save_tiny_swin(tmp_path / "bare", with_processor=False)))
    assert list(bare.image_processor.image_mean) == [0.485, 0.456, 0.406]
    assert bare.preprocess(images).shape == (2, 3, 64, 64)


def test_random_init_same_architecture_new_weights(swin, swin_dir, pixels):
    torch.manual_seed(123)
    fresh = HFSwin.from_pretrained(str(swin_dir), random_init=True)
    assert fresh.identity == f"hf_swin:{swin_dir}@random"
    assert (fresh.hidden_sizes, fresh.depths) == (swin.hidden_sizes, swin.depths)
    saved, new = swin.state_dict(), fresh.state_dict()
    assert saved.keys() == new.keys()
    assert any(not torch.equal(saved[k], new[k]) for k in saved if k.endswith("q_proj.weight"))
    assert all(not p.requires_grad for p in fresh.parameters())
    assert [m.shape for m in _run(fresh, pixels)] == [m.shape for m in _run(swin, pixels)]


def test_registered_and_a_config_kind():
    from mmadapt import registry
    from mmadapt.config import BackboneConfig

    assert registry.get("backbones", "hf_swin") is HFSwin
    assert "hf_swin" in typing.get_args(typing.get_type_hints(BackboneConfig)["kind"])


# -- zoo:tiny-swin ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("zoo")


@pytest.fixture(scope="module")
def quick_swin(quick_root) -> Path:
    return zoo.build_entry("zoo:tiny-swin", root=quick_root, quick=True)


def test_quick_zoo_build_is_a_loadable_hf_directory(quick_swin, tmp_path):
    from transformers import AutoImageProcessor, SwinModel

    from mmadapt.data.synthetic.scene_world import render_scene, sample_scene

    assert "zoo:tiny-swin" in zoo.zoo_names()
    model = SwinModel.from_pretrained(quick_swin)
    c = model.config
    assert (c.image_size, c.patch_size, c.window_size, list(c.depths), c.drop_path_rate) == (64, 2, 4, [2] * 4, 0.0)
    processor = AutoImageProcessor.from_pretrained(quick_swin)
    assert (list(processor.image_mean), list(processor.image_std)) == ([0.5] * 3, [0.5] * 3)
    assert (processor.size["height"], processor.size["width"]) == (64, 64)
    manifest = cache.read_manifest(quick_swin)
    assert manifest["name"] == "zoo:tiny-swin" and manifest["spec"]["train"]["steps"] == 5
    assert {"present", "color", "size", "side", "row", "count", "table"} <= set(manifest["metrics"]["accuracy"])
    rng = random.Random(0)
    image = render_scene(sample_scene(rng), 64, rng)
    pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
    assert model(pixel_values=pixels).pooler_output.shape == (1, 64)
    # same spec, another root: byte-identical files
    hashes = lambda e: {k: v["sha256"] for k, v in cache.read_manifest(e)["files"].items()}  # noqa: E731
    assert hashes(zoo.build_entry("zoo:tiny-swin", root=tmp_path, quick=True)) == hashes(quick_swin)


def test_zoo_name_loads_through_the_resolver(quick_swin, quick_root, monkeypatch):
    monkeypatch.setenv("MMADAPT_HOME", str(quick_root))
    monkeypatch.setattr(zoo, "zoo_path", lambda name, rebuild=False: zoo.build_entry(name, quick=True))
    enc = HFSwin.from_pretrained("zoo:tiny-swin")
    assert enc.identity == "hf_swin:zoo:tiny-swin@main"
    assert (enc.hidden_sizes, enc.strides) == (WIDTHS, [2, 4, 8, 16])
    from mmadapt.data.synthetic.scene_world import render_scene, sample_scene

    rng = random.Random(1)
    x = enc.preprocess([render_scene(sample_scene(rng), 64, rng) for _ in range(2)])
    assert [tuple(m.shape) for m in _run(enc, x)] == [(2, c, 64 // s, 64 // s) for c, s in zip(WIDTHS, enc.strides)]


@pytest.mark.slow
def test_full_zoo_build_sees_the_scene_attributes():
    """The full ``zoo:tiny-swin`` (built in the user cache on first use, ~3-4 CPU minutes) reads every scene
    attribute from its mean-pooled last stage on held-out scenes well above chance."""
    manifest = zoo.zoo_manifest("zoo:tiny-swin")
    acc = manifest["metrics"]["accuracy"]
    # chance = the majority class: a shape is present in 2/3 of the scenes; 5 colours; 1-3 objects
    chance = {"present": 2 / 3, "color": 0.2, "size": 0.5, "side": 0.5, "row": 0.5, "count": 1 / 3}
    for attr, p in chance.items():
        assert acc[attr] >= max(0.85, p + 0.2), (attr, acc)
    assert acc["table"] >= 0.5, acc  # every attribute of the scene right (chance: well under 1%)
    enc = HFSwin.from_pretrained("zoo:tiny-swin")
    assert enc.hidden_sizes == [32, 64, 128, 256] and enc.strides == [2, 4, 8, 16]
