"""All-in-One: the token_rolling adapter, the per-frame-attention assembly, the video–text data, retrieval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import mmadapt
from mmadapt.adapters.token_rolling import TokenRolling, TokenRollingConfig, roll_tokens
from mmadapt.config import Config
from mmadapt.data.synthetic.video_text import COLOURS, CYCLES, write_video_text_dataset
from mmadapt.errors import ConfigError
from mmadapt.eval.retrieval_metric import chance_metrics, retrieval_metrics
from mmadapt.models.all_in_one import AllInOne


def _recipe(root, rolling: bool = True, steps: int = 2, **video_text) -> Config:
    data = lambda split, n: {"format": "synthetic_video_text", "root": str(root), "split": split,  # noqa: E731
                             "n_samples": n, "seed": 0}
    return Config.from_dict({
        "model": {"assembly": "all_in_one", "encoder": {"name": "zoo:tiny-vit", "kind": "hf_vit"},
                  "adapter": {"name": "token_rolling"} if rolling else None,
                  "video_text": {"n_frames": 6, "max_text_len": 16, **video_text}},
        "tasks": {"vqa": {"train": data("train", 12), "eval": data("val", 6), "prompt": "{question}"},
                  "retrieval": {"train": data("train", 12), "eval": data("val", 6)}},
        "train": {"max_steps": steps, "batch_size": 4, "lr": 1e-2, "warmup_steps": 0, "log_every": 1},
        "eval": {"batch_size": 6},
        "output_dir": str(root / "run"),
    })


@pytest.fixture(scope="module")
def video_text_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("video_text")
    mmadapt.build_tasks(_recipe(root))["retrieval"].captions("eval")  # writes the val clips
    return root


@pytest.fixture(scope="module")
def models(video_text_root):
    """(with rolling, without) on the same trained-part initialisation."""
    torch.manual_seed(0)
    rolled = mmadapt.build_model(_recipe(video_text_root, rolling=True))
    plain = mmadapt.build_model(_recipe(video_text_root, rolling=False))
    plain.trained.load_state_dict(rolled.trained.state_dict())
    return rolled.eval(), plain.eval()


def _clips(model, root, n=3):
    paths = sorted((root / "val").glob("*.mp4"))[:n]
    return model.vision.preprocess([model.vision.load(p) for p in paths])


# ------------------------------------------------------------------------------------------- the adapter
def test_token_rolling_has_no_parameters_and_rolls_only_visual_tokens():
    adapter = TokenRolling(TokenRollingConfig())
    assert sum(p.numel() for p in adapter.parameters()) == 0
    B, T, L, N, D = 2, 4, 3, 196, 5
    hook = adapter.block_hook(T, L, N)
    x = torch.randn(B * T, L + N, D)
    out = hook(0, x)
    assert torch.equal(out[:, :L], x[:, :L])  # text never moves
    visual = x[:, L:].reshape(B, T, N, D)
    assert torch.equal(out[:, L:].reshape(B, T, N, D), roll_tokens(visual, 24, 24))  # the authors' 24 of 196
    assert torch.equal(out[:, L + 24:L + N - 24], x[:, L + 24:L + N - 24])  # the middle stays
    # frame t's first 24 tokens are frame t-1's, its last 24 frame t+1's (circularly)
    out4, x4 = out[:, L:].reshape(B, T, N, D), x[:, L:].reshape(B, T, N, D)
    assert torch.equal(out4[:, 1, :24], x4[:, 0, :24]) and torch.equal(out4[:, 0, :24], x4[:, T - 1, :24])
    assert torch.equal(out4[:, 1, -24:], x4[:, 2, -24:]) and torch.equal(out4[:, T - 1, -24:], x4[:, 0, -24:])


def test_token_rolling_options():
    assert TokenRolling(TokenRollingConfig()).block_hook(4, 0, 64) is None  # no text: the authors never roll
    assert TokenRolling(TokenRollingConfig(roll_video_only=True)).block_hook(4, 0, 64) is not None
    assert TokenRolling(TokenRollingConfig()).block_hook(1, 3, 64) is None  # one frame: nothing to roll
    config = TokenRollingConfig(blocks=[1], n_forward=2, n_backward=0, roll_video_only=True)
    hook = TokenRolling(config).block_hook(2, 0, 4)
    x = torch.arange(2 * 4, dtype=torch.float).view(2, 4, 1)
    assert torch.equal(hook(0, x), x)
    assert hook(1, x).flatten().tolist() == [4, 5, 2, 3, 0, 1, 6, 7]
    assert TokenRollingConfig().amounts(64) == (8, 8)
    with pytest.raises(ConfigError, match="n_forward \\+ n_backward"):
        TokenRollingConfig(n_forward=40, n_backward=30).amounts(64)


def test_token_rolling_is_refused_under_joint_attention():
    with pytest.raises(ConfigError, match="per-frame attention"):
        TokenRolling(TokenRollingConfig()).block_hooks(None)


def test_config_errors_name_the_key(tmp_path):
    base = {"assembly": "all_in_one", "encoder": {"name": "zoo:tiny-vit", "kind": "hf_vit"}}
    with pytest.raises(ConfigError, match="model.adapter.name: all_in_one takes token_rolling"):
        Config.from_dict({"model": {**base, "adapter": {"name": "epalm"}}})
    with pytest.raises(ConfigError, match="model.encoder.kind"):
        Config.from_dict({"model": {**base, "encoder": {"name": "x", "kind": "hf_swin"}}})
    with pytest.raises(ConfigError, match="model.adapter.fraction"):
        Config.from_dict({"model": {**base, "adapter": {"name": "token_rolling", "fraction": 0.7}}})
    with pytest.raises(ConfigError, match="model.video_text.n_frames"):
        Config.from_dict({"model": {**base, "video_text": {"n_frames": 0}}})


# ------------------------------------------------------------------------------------------------- data
def test_synthetic_video_text_captions_questions_and_order(tmp_path):
    path = write_video_text_dataset(tmp_path, "val", 60, 0)
    assert path.read_text().splitlines()[0] == "video_id,video,sentence"
    import csv

    sentences = [row["sentence"] for row in csv.DictReader(path.read_text().splitlines())]
    assert len(set(sentences)) == 60  # 20 cycles × 3 shapes: one right video per caption
    assert len(CYCLES) == 20
    qa = json.loads((tmp_path / "val_qa.json").read_text())
    assert len(qa) == 120 and len({q["id"] for q in qa}) == 120
    from mmadapt.io.video import load_video

    clip = load_video(tmp_path / "val" / "000000.mp4", n_frames=6)
    assert clip.shape == (6, 3, 32, 32)
    corner = clip[:, :, 0, 0] * 255  # the background: two frames per colour, three colours (H.264 adds noise)
    palette = {name: torch.tensor(rgb, dtype=torch.float) for name, rgb in COLOURS.items()}
    colours = [min(palette, key=lambda n: float((palette[n] - c).abs().sum())) for c in corner]
    assert len(set(colours)) == 3 and all(colours[t] != colours[(t + 2) % 6] for t in range(6))
    sentence = sentences[0]
    cycle = [colours[0], colours[2], colours[4]]
    i = cycle.index(sentence.split("cycling ")[1].split(" ,")[0])
    assert sentence.endswith(f"{cycle[i]} , {cycle[(i + 1) % 3]} , {cycle[(i + 2) % 3]} .")


def test_retrieval_metrics_values_and_ties():
    perfect = retrieval_metrics(torch.eye(5), [0, 1, 2, 3, 4])
    assert perfect["t2v_R@1"] == 100.0 and perfect["t2v_MdR"] == 1.0 and perfect["v2t_R@1"] == 100.0
    constant = retrieval_metrics(torch.zeros(5, 5), [0, 1, 2, 3, 4])  # ties count against the model
    assert constant["t2v_R@1"] == 0.0 and constant["t2v_MdR"] == 5.0
    swapped = retrieval_metrics(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), [0, 1])
    assert swapped["t2v_R@1"] == 0.0 and swapped["t2v_MnR"] == 2.0
    assert chance_metrics(60)["t2v_R@1"] == pytest.approx(100 / 60, abs=0.01)


# ---------------------------------------------------------------------------------------- the assembly
def test_heads_from_the_tasks_and_trainable_parts(models):
    rolled, plain = models
    assert rolled.config.video_text.answers == sorted(rolled.config.video_text.answers)
    assert set(rolled.trained["heads"]) == {"answer", "match"}
    assert sum(p.numel() for p in rolled.adapter.parameters()) == 0
    trained = {id(p) for p in rolled.trained.parameters()}
    assert all(not p.requires_grad for p in rolled.encoder.parameters())
    assert {id(p) for p in rolled.parameters() if p.requires_grad} == trained
    assert sum(p.numel() for p in rolled.parameters() if p.requires_grad) == \
        sum(p.numel() for p in plain.parameters() if p.requires_grad)  # rolling adds nothing


def test_frame_order_reaches_the_model_only_through_rolling(models, video_text_root):
    rolled, plain = models
    clips = _clips(rolled, video_text_root)
    texts = ["what colour comes after red?"] * clips.shape[0]
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        # per-frame attention, mean over frames: without rolling a shuffled clip gives the same output
        torch.testing.assert_close(plain.pooled(clips[:, perm], texts), plain.pooled(clips, texts), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(rolled.pooled(clips[:, perm], texts), rolled.pooled(clips, texts), atol=1e-3)
        # rolling a whole clip by one frame is a rotation of time: circular rolling cannot see it
        torch.testing.assert_close(rolled.pooled(clips.roll(1, dims=1), texts), rolled.pooled(clips, texts),
                                   rtol=1e-5, atol=1e-5)


def test_text_changes_the_answer_and_padding_does_not(models, video_text_root):
    rolled, _ = models
    clips = _clips(rolled, video_text_root, n=2)
    with torch.no_grad():
        a = rolled.answer_logits(clips, ["what shape is on the screen?", "what colour comes after red?"])
        b = rolled.answer_logits(clips, ["what shape is on the screen?", "what colour comes after a very long red?"])
        alone = rolled.answer_logits(clips[:1], ["what shape is on the screen?"])
    torch.testing.assert_close(a[0], alone[0], rtol=1e-4, atol=1e-5)  # padded text is masked out
    torch.testing.assert_close(a[0], b[0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(a[1], b[1])


def test_training_moves_only_trained_parts_and_save_load_roundtrip(video_text_root, tmp_path):
    cfg = _recipe(video_text_root, steps=3)
    cfg.output_dir = str(tmp_path / "run")
    model = mmadapt.build_model(cfg)
    frozen = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    before = {k: v.clone() for k, v in model.trained.state_dict().items()}
    result = mmadapt.train(cfg, model=model, quiet=True)
    model = result.model
    assert all(torch.equal(frozen[k], v) for k, v in model.encoder.state_dict().items())
    changed = [k for k, v in model.trained.state_dict().items() if not torch.equal(before[k], v)]
    assert any(k.startswith("heads.answer") for k in changed) and any(k.startswith("heads.match") for k in changed)
    assert "word_embedding.weight" in changed
    model.save_pretrained(tmp_path / "saved")
    again = AllInOne.from_pretrained(tmp_path / "saved").eval()
    model.eval()
    clips = _clips(model, video_text_root, n=2)
    texts = ["what shape is on the screen?", "what colour comes after blue?"]
    with torch.no_grad():
        torch.testing.assert_close(again.answer_logits(clips, texts), model.answer_logits(clips, texts))
        torch.testing.assert_close(again.match_logits(clips, texts), model.match_logits(clips, texts))


def test_evaluation_writes_scores_and_reports_a_bad_clip(models, video_text_root, tmp_path):
    rolled, _ = models
    cfg = _recipe(video_text_root)
    cfg.output_dir = str(tmp_path / "run")
    tasks = mmadapt.build_tasks(cfg)
    bad = sorted((video_text_root / "val").glob("*.mp4"))[1]
    saved = bad.read_bytes()
    bad.write_bytes(saved[: len(saved) // 3])  # truncated
    try:
        scores = mmadapt.evaluate(rolled, cfg, tasks=tasks, quiet=True)
    finally:
        bad.write_bytes(saved)
    out = tmp_path / "run" / "eval"
    assert set(scores) == {"vqa", "retrieval"}
    assert scores["retrieval"]["n_videos"] == 5 and scores["retrieval"]["skipped_captions"] == 1
    assert 0 <= scores["retrieval"]["t2v_R@1"] <= 100 and scores["retrieval"]["chance"]["t2v_R@1"] == 20.0
    assert json.loads((out / "retrieval_errors.json").read_text())[0]["video"].endswith(bad.name)
    assert (out / "vqa_results.json").is_file() and (out / "vqa_errors.json").is_file()
    assert 0 <= scores["vqa"]["overall"] <= 100


def test_classification_by_cycle_with_the_prompt_and_alone(video_text_root, tmp_path):
    data = lambda split, n: {"format": "synthetic_video_text", "root": str(tmp_path / "data"), "split": split,  # noqa: E731
                             "n_samples": n, "seed": 0}
    cfg = Config.from_dict({
        "model": {"assembly": "all_in_one", "encoder": {"name": "zoo:tiny-vit", "kind": "hf_vit"},
                  "adapter": {"name": "token_rolling"}, "video_text": {"n_frames": 6}},
        "tasks": {"classification": {"train": data("train", 60), "eval": data("val", 6)}},  # every cycle
        "train": {"max_steps": 2, "batch_size": 4, "lr": 1e-2, "warmup_steps": 0},
        "output_dir": str(tmp_path / "run")})
    result = mmadapt.train(cfg, evaluate_after=True, quiet=True)
    model = result.model
    # the authors' prompt is read with every clip: its embeddings (and their LayerNorm) train
    assert set(model.trained) == {"token_type", "heads", "pooler", "word_embedding", "text_position", "text_norm"}
    assert len(model.config.head.classes) == 20 and model.config.head.classes[0] == "blue-green-red"
    scores = result.scores["classification"]
    assert scores["n_scored"] == 6 and 0 <= scores["accuracy"] <= 100
    cfg.model.video_text.classify_prompt = None  # the clip alone: no text side at all
    cfg.output_dir = str(tmp_path / "alone")
    alone = mmadapt.train(cfg, evaluate_after=True, quiet=True)
    assert set(alone.model.trained) == {"token_type", "heads", "pooler"}
    assert alone.scores["classification"]["n_scored"] == 6
    with pytest.raises(ConfigError, match="no text side"):
        alone.model.pooled(_clips(alone.model, video_text_root, n=1), ["what?"])


def test_patch_tokens_are_the_encoders_own_embedding(tmp_path):
    """run_blocks over patch_tokens(image) is exactly the encoder's own forward (ViT: all tokens after its
    final LayerNorm; CLIP-vision: the [CLS] after post_layernorm)."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    from mmadapt.backbones.vision import HFCLIPVision
    from tiny import tiny_vit

    torch.manual_seed(0)
    vit = tiny_vit()
    pixels = torch.randn(2, 3, vit.model.config.image_size, vit.model.config.image_size)
    tokens = vit.patch_tokens(pixels)
    hidden, _ = vit.run_blocks(tokens, torch.ones(tokens.shape[:2], dtype=torch.bool))
    torch.testing.assert_close(hidden, vit.model(pixel_values=pixels).last_hidden_state, rtol=1e-5, atol=1e-5)

    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8)
    CLIPVisionModel(config).save_pretrained(tmp_path / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path / "clip")
    clip = HFCLIPVision.from_pretrained(str(tmp_path / "clip"))
    pixels = torch.randn(2, 3, 32, 32)
    tokens = clip.patch_tokens(pixels)
    assert tokens.shape == (2, 16, 32)
    hidden, _ = clip.run_blocks(tokens, torch.ones(2, 16, dtype=torch.bool))
    torch.testing.assert_close(hidden[:, 0], clip.model(pixel_values=pixels).pooler_output, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_rolling_learns_the_frame_order_of_colour_cycles(tmp_path):
    """Video classification of 20 colour cycles (chance 5%): a cycle and its reverse show the same frames, so
    no order-blind model can pass 50% — the no-rolling model is one (test above: shuffled frames give the same
    output). Each clip is read with the authors' action-recognition prompt, so it rolls under their rule."""
    recipe = Path(__file__).resolve().parents[1] / "adapters" / "all_in_one" / "synthetic_classify.yaml"
    cfg = mmadapt.load_recipe(recipe, [
        f"tasks.classification.train.root={tmp_path / 'data'}", f"tasks.classification.eval.root={tmp_path / 'data'}",
        "train.max_steps=250", "train.batch_size=16", f"output_dir={tmp_path / 'run'}"])
    scores = mmadapt.train(cfg, evaluate_after=True, quiet=True).scores["classification"]
    assert scores["n_scored"] == 60
    assert scores["accuracy"] >= 55.0, scores
