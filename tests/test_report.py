"""``mmadapt report``: runs side by side from their directories alone."""

from __future__ import annotations

import pytest
from PIL import Image
from tiny import make_model, tiny_config

from mmadapt.api import train
from mmadapt.cli import main
from mmadapt.errors import ConfigError
from mmadapt.training import report


@pytest.fixture(scope="module")
def two_runs(scenes_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    trained = {}
    for name, lr in (("lr-high", 1e-2), ("lr-low", 1e-3)):
        config = tiny_config(scenes_root, root / name, max_steps=2, lr=lr, eval_every=2, eval_max_samples=4)
        config.tasks["caption"].eval = None  # VQA scores are enough here; the caption scorers start a JVM
        result = train(config, model=make_model(config), quiet=True)
        trained[name] = sum(p.numel() for p in result.model.trained_module.parameters())
    return root, trained


def test_the_table_shows_what_differs_and_what_each_run_reached(two_runs):
    root, trained = two_runs
    runs = [report.summarize(root / "lr-high"), report.summarize(root / "lr-low")]
    assert report.differences(runs) == ["train.lr"]
    assert [r.trained_params for r in runs] == [trained["lr-high"], trained["lr-low"]]
    assert all(r.steps == 2 and r.step_seconds > 0 and r.scores_from == "step 2" for r in runs)
    assert "vqa/overall" in runs[0].scores and "vqa/n_errors" not in runs[0].scores
    table = report.report_table(runs)
    assert table.splitlines()[0] == "| | lr-high | lr-low |"
    assert "| train.lr | 0.01 | 0.001 |" in table
    assert f"| trained parameters | {trained['lr-high']:,} | {trained['lr-low']:,} |" in table
    assert "output_dir" not in table


def test_mmadapt_report_prints_the_table_and_writes_the_plot(two_runs, tmp_path, capsys):
    root, _ = two_runs
    out = tmp_path / "cmp.png"
    assert main(["report", str(root / "lr-high"), str(root / "lr-low"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| train.lr | 0.01 | 0.001 |" in printed and f"comparison plot: {out}" in printed
    with Image.open(out) as image:
        assert image.format == "PNG" and len(set(image.convert("L").get_flattened_data())) > 20


def test_a_directory_that_is_not_a_run_is_named(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path}: not a run directory"):
        report.summarize(tmp_path)
