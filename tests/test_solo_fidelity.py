"""SOLO as its authors' code computes it (Yangyi-Chen/SOLO): the resize rule of ``image_utils.py`` and the loss
on the answer + EOS only (``src/data/instruction_tuning.py``), each against a hand-computed case."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import text_cross_entropies, tiny_lm

from mmadapt.adapters.solo import SOLO, SOLOConfig
from mmadapt.adapters.solo.patches import fitted_size
from mmadapt.config import BackboneConfig, ModelConfig
from mmadapt.errors import ConfigError
from mmadapt.models.perceptual_lm import PerceptualLM


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 256, (height, width, 3), generator=g, dtype=torch.uint8).numpy())


def build(**cfg) -> PerceptualLM:
    lm = tiny_lm("opt")
    lm.tokenizer = copy.deepcopy(lm.tokenizer)
    config = SOLOConfig(**{"patch_size": 16, "max_side": 96, **cfg})
    torch.manual_seed(1)
    adapter = SOLO(config, lm)
    return PerceptualLM(ModelConfig(lm=BackboneConfig(name="test:tiny-opt"), adapter=config), lm, adapter.processor,
                        adapter)


@pytest.mark.parametrize(("size", "fitted"), [
    ((100, 50), (128, 64)),     # long 100 → 128 (ceil to ×32); short 128·50/100 = 64
    ((50, 100), (64, 128)),     # the same, portrait
    ((2000, 500), (1024, 256)),  # long capped at 1024; the short side scales with it: 1024·500/2000 = 256
    ((33, 33), (64, 64)),       # small images are upsampled: 33 → 64
    ((640, 480), (640, 480)),   # COCO: already multiples of 32
    ((500, 375), (512, 384)),   # 512·375/500 = 375 → 384
    ((1000, 10), (1024, 32)),   # 1024·10/1000 = 10 → 32
    ((4000, 1), (1024, 32)),    # the authors' code: int(0.256) = 0 → a 0-pixel side; here at least one patch
])
def test_fitted_size_is_the_authors_resize_rule(size, fitted):
    assert fitted_size(*size, patch_size=32, max_side=1024) == fitted


def test_resize_stretches_to_the_fitted_size_and_pad_keeps_the_pixels():
    image = noise_image(100, 50)
    model = build(max_side=96)  # p 16: long 100 → 112 → capped at 96; short 96·50/100 = 48
    pixels = model.vision.pixels(image)
    assert pixels.shape == (3, 48, 96)
    expected = image.resize((96, 48), Image.Resampling.BILINEAR)
    expected = torch.from_numpy(np.asarray(expected, dtype=np.float32) / 255).permute(2, 0, 1)
    torch.testing.assert_close(pixels, (expected - model.vision.mean) / model.vision.std)
    small = noise_image(20, 10)  # upsampled: 20 → 32, 32·10/20 = 16
    assert model.vision.pixels(small).shape == (3, 16, 32)
    assert model.vision.preprocess([small]).grid.tolist() == [[1, 2]]
    assert model.adapter.n_tokens(20, 10) == 2 + 2
    padded = build(max_side=96, image_fit="pad")
    assert padded.vision.pixels(small).shape == (3, 10, 20)  # kept as is, zero-padded to 16 × 32 patches
    assert padded.vision.preprocess([small]).grid.tolist() == [[1, 2]]
    with pytest.raises(ConfigError, match="max_side: image_fit resize needs a multiple of patch_size"):
        SOLOConfig(patch_size=16, max_side=90).validate()
    SOLOConfig(patch_size=16, max_side=90, image_fit="pad").validate()


def _token_losses(model, images, prompts, answers):
    """Per sample: (cross-entropies of the prompt tokens, of the answer tokens + EOS), from a plain forward."""
    parts = text_cross_entropies(model, model.vision.preprocess(images), prompts, answers, prefix_weight=0.0)
    return [(ce[w == 0], ce[w == 1]) for ce, w in parts]


def trained(**cfg) -> PerceptualLM:
    model = build(**cfg)
    torch.manual_seed(2)
    with torch.no_grad():  # a non-trivial adapter, the same for every cfg
        for p in model.adapter.parameters():
            p.normal_(0, 0.5)
    return model


def test_loss_scores_only_the_answer_and_eos_averaged_over_the_batch_tokens():
    model = trained()
    images = [noise_image(64, 64), noise_image(96, 32, seed=1)]
    prompts = ["question: what color is the circle? answer:", "caption:"]
    answers = ["red", "a small blue square on the left ."]
    parts = _token_losses(model, images, prompts, answers)
    assert [len(a) for _, a in parts] == [2, 9]  # answer tokens + EOS
    with torch.no_grad():
        loss = model(model.vision.preprocess(images), prompts, answers)
    # the authors: labels -100 on image and prompt, HF's mean over the labelled tokens of the batch
    expected = torch.cat([a for _, a in parts]).sum() / 11
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    # loss: weighted — mmadapt's earlier loss: the prompt at 0.1, the mean per sample
    with torch.no_grad():
        weighted = trained(loss="weighted")(model.vision.preprocess(images), prompts, answers)
    per_sample = [(0.1 * q.sum() + a.sum()) / (0.1 * len(q) + len(a)) for q, a in parts]
    torch.testing.assert_close(weighted, sum(per_sample) / 2, rtol=1e-5, atol=1e-6)
