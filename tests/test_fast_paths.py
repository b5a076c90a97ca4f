"""Training fast paths: the same numbers (or close, for bf16), less kept, nothing frozen in the graph."""

from __future__ import annotations

import pytest
import torch
from tiny import make_model, tiny_config

from mmadapt.config import TrainConfig
from mmadapt.training.fast_paths import apply_fast_paths, autocast_context


def fast(**kw):
    return TrainConfig(**kw)


def batch(scenes_root):
    from PIL import Image

    paths = sorted((scenes_root / "images" / "train").iterdir())[:3]
    return [Image.open(p).convert("RGB") for p in paths]


def loss_and_grads(model, images, train_cfg):
    model.train()
    pv = model.vision.preprocess(images)
    with autocast_context(train_cfg, torch.device("cpu")):
        loss = model(pv, ["what color is the object?", "how many objects are there?", "caption:"],
                     ["red", "2", "a small red circle"], 0.1)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


@pytest.mark.parametrize("lm_kind", ["opt", "gpt2"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(scenes_root, tmp_path, lm_kind):
    cfg = tiny_config(scenes_root, tmp_path)
    images = batch(scenes_root)
    ref_loss, ref_grads = loss_and_grads(make_model(cfg, lm_kind), images, fast())
    model = make_model(cfg, lm_kind)
    apply_fast_paths(model, fast(gradient_checkpointing=True))
    recomputed = []
    inner = next(iter(model.lm.layers[0].children()))  # a module inside the layer's (recomputed) forward
    inner.register_forward_hook(lambda *a: recomputed.append(1))
    loss, grads = loss_and_grads(model, images, fast(gradient_checkpointing=True))
    assert len(recomputed) == 2, "layer 0's insides run twice: forward, and again in backward (recomputation)"
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=1e-6)
    assert grads.keys() == ref_grads.keys()
    for k in grads:
        torch.testing.assert_close(grads[k], ref_grads[k], rtol=1e-5, atol=1e-7, msg=k)
    # generation (no grad) does not recompute and gives the same text
    pv = model.vision.preprocess(images)
    model.eval()
    assert model.generate(pv, ["caption:"] * 3, max_new_tokens=4) == \
        make_model(cfg, lm_kind).eval().generate(pv, ["caption:"] * 3, max_new_tokens=4)


def test_bf16_autocast_keeps_fp32_weights_and_close_gradients(scenes_root, tmp_path):
    cfg = tiny_config(scenes_root, tmp_path)
    images = batch(scenes_root)
    ref_loss, ref_grads = loss_and_grads(make_model(cfg), images, fast())
    model = make_model(cfg)
    loss, grads = loss_and_grads(model, images, fast(autocast="bf16"))
    assert loss.dtype == torch.float32 and abs(loss.item() - ref_loss.item()) < 0.05 * ref_loss.item()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert_fp32_gradients_point_the_same_way(grads, ref_grads, "bf16 gradient")


def assert_fp32_gradients_point_the_same_way(grads: dict, ref_grads: dict, what: str) -> None:
    """Every gradient fp32 and finite, within cosine 0.9 of the fp32 reference's direction."""
    for k, g in grads.items():
        assert g.dtype == torch.float32 and torch.isfinite(g).all()
        cos = torch.nn.functional.cosine_similarity(g.flatten(), ref_grads[k].flatten(), dim=0)
        assert cos > 0.9, f"{k}: {what} direction off (cos {cos:.3f})"


def test_bf16_autocast_over_bf16_frozen_backbones_trains_the_fp32_adapter(scenes_root, tmp_path):
    """The fastest CPU path (benchmarks: epalm_step.py variant bf16_frozen): frozen LM and ViT stored in bf16
    (a recipe's model.lm.dtype / model.vision.dtype), bf16 autocast; the adapter and its gradients stay fp32."""
    cfg = tiny_config(scenes_root, tmp_path)
    images = batch(scenes_root)
    ref_loss, ref_grads = loss_and_grads(make_model(cfg), images, fast())
    model = make_model(cfg)
    model.lm.model.to(torch.bfloat16)
    model.vision.to(torch.bfloat16)
    loss, grads = loss_and_grads(model, images, fast(autocast="bf16"))
    assert abs(loss.item() - ref_loss.item()) < 0.05 * ref_loss.item()
    assert set(grads) == set(ref_grads)
    assert all(p.dtype == torch.float32 for p in model.trainable_parameters())
    assert_fp32_gradients_point_the_same_way(grads, ref_grads, "gradient over bf16 backbones")


@pytest.mark.parametrize("prompt_len", [0, 3])
def test_no_graph_is_kept_below_the_first_trained_input(scenes_root, tmp_path, prompt_len):
    cfg = tiny_config(scenes_root, tmp_path)
    cfg.model.adapter.prompt_len = prompt_len
    model = make_model(cfg)
    model.train()
    first = model.adapter.layers[0]
    needs_graph: dict[int, bool] = {}

    def note(i):
        def hook(module, args, out):
            needs_graph.setdefault(i, (out[0] if isinstance(out, tuple) else out).requires_grad)
        return hook

    for i, layer in enumerate(model.lm.layers):
        layer.register_forward_hook(note(i))
    vision_out = []

    def note_vision(module, args, out):
        vision_out.append(out.last_hidden_state.requires_grad)

    model.vision.model.register_forward_hook(note_vision)
    model(model.vision.preprocess(batch(scenes_root)), ["caption:"] * 3, ["a red circle"] * 3, 0.1)
    assert vision_out == [False], "the frozen encoder ran with a graph"
    below = [needs_graph[i] for i in range(first)]
    above = [needs_graph[i] for i in range(first, len(model.lm.layers))]
    assert all(above)
    # with a soft prompt the first trained input is the LM's input: every layer needs its graph;
    # without one it is the first injection layer: nothing below it is recorded
    assert below == [prompt_len > 0] * first


@pytest.mark.slow
def test_compiled_lm_layers_give_the_same_loss(scenes_root, tmp_path):
    cfg = tiny_config(scenes_root, tmp_path)
    images = batch(scenes_root)
    ref_loss, ref_grads = loss_and_grads(make_model(cfg), images, fast())
    model = make_model(cfg)
    apply_fast_paths(model, fast(compile=True))
    loss, grads = loss_and_grads(model, images, fast(compile=True))
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=1e-5)
    for k in grads:
        torch.testing.assert_close(grads[k], ref_grads[k], rtol=1e-4, atol=1e-6, msg=k)


def test_the_trainer_applies_the_recipe_switches(scenes_root, tmp_path):
    from mmadapt.api import train

    runs = {}
    for name, kw in {"plain": {}, "ckpt": {"gradient_checkpointing": True}, "bf16": {"autocast": "bf16"}}.items():
        cfg = tiny_config(scenes_root, tmp_path / name, max_steps=3, **kw)
        model = make_model(cfg)
        runs[name] = [r["loss"] for r in train(cfg, model=model, quiet=True).records]
        if name == "ckpt":
            assert all(getattr(layer, "_mmadapt_checkpointed", False) for layer in model.lm.layers)
    torch.testing.assert_close(runs["ckpt"], runs["plain"], rtol=0, atol=1e-5)
    assert runs["bf16"] != runs["plain"]  # bf16 matmuls really ran ...
    torch.testing.assert_close(runs["bf16"], runs["plain"], rtol=0.05, atol=0)  # ... and train the same way


def test_autocast_with_a_bf16_model_is_refused(scenes_root, tmp_path):
    from mmadapt.errors import ConfigError

    with pytest.raises(ConfigError, match="train.autocast"):
        tiny_config(scenes_root, tmp_path, autocast="bf16", precision="bf16")
