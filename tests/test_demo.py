"""``mmadapt demo --out DIR`` end to end, on the shipped zoo models.

The full image demo (1000 steps, 300 held-out images, ~2.5 min here) is what the README quotes; this test
runs that command and checks the run directory and the demo's bar against the trivial baselines it prints
beside its own scores.
"""

from __future__ import annotations

import json

import pytest

from mmadapt.cli import main


@pytest.mark.slow
def test_demo_leaves_a_scored_run_directory(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--quiet", "train.save_every=500"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "baseline question_type_prior" in printed and "trainable params:" in printed

    assert {"config.yaml", "log.jsonl", "checkpoints", "eval"} <= {p.name for p in out.iterdir()}
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-1000", "step-500"]
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {
        p.name for p in (out / "checkpoints" / "step-1000").iterdir()}

    vqa = json.loads((out / "eval" / "vqa.json").read_text())
    assert {"overall", "perAnswerType", "perQuestionType", "perQuestion"} <= set(vqa)
    assert len(vqa["perQuestion"]) == 300 * 5  # five question families per image
    caption = json.loads((out / "eval" / "caption.json").read_text())
    assert {"Bleu_1", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"} <= set(caption)

    summary = json.loads((out / "eval" / "summary.json").read_text())
    assert float(summary["trainable"].rsplit(" ", 1)[-1]) < 1.0  # "trainable%: 0.56"
    # the demo's bar (README): the question-type prior + 30 points, 3x the constant caption's CIDEr
    assert vqa["overall"] >= summary["vqa_baselines"]["question_type_prior"] + 30
    assert caption["CIDEr"] >= 3 * summary["caption_baselines"]["constant_CIDEr"]


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["video", "audio"])
def test_video_and_audio_demos_beat_their_constant_baselines_with_under_one_percent_trained(modality, tmp_path, capsys):
    """eP-ALM on the frozen zoo TimeSformer / AST (the demos' full schedules: about a minute each here)."""
    out = tmp_path / modality
    assert main(["demo", "--modality", modality, "--out", str(out), "--quiet"]) == 0
    assert f"mmadapt demo — eP-ALM on frozen zoo:tiny-opt + zoo:tiny-{'timesformer' if modality == 'video' else 'ast'}" \
        in capsys.readouterr().out
    summary = json.loads((out / "eval" / "summary.json").read_text())
    assert float(summary["trainable"].rsplit(" ", 1)[-1]) < 1.0
    if modality == "video":
        vqa = json.loads((out / "eval" / "vqa.json").read_text())
        assert len(vqa["perQuestion"]) == 150 * 2  # two questions per held-out clip
        assert vqa["overall"] > summary["vqa_baselines"]["question_type_prior"] + 30
        assert vqa["perQuestionType"]["which"] > 80  # "which way does the shape move?" needs the frame order
    else:
        caption = json.loads((out / "eval" / "caption.json").read_text())
        assert caption["CIDEr"] > summary["caption_baselines"]["constant_CIDEr"] + 100
