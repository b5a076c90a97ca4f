"""Runs side by side: ``mmadapt report RUN_DIR [RUN_DIR ...]`` (:func:`summarize`, :func:`report_table`,
:func:`plot_comparison`).

What a run directory says about itself, read without loading any model:

- the recipe it ran (``config.yaml``), flattened to dotted keys; the table lists only the keys whose values
  differ between the runs (``output_dir`` left out), so two runs read as "what was changed";
- the trained parameters: the tensors of its newest checkpoint's ``adapter_model.safetensors``, counted from
  the file's header (``safetensors.safe_open``, no weights read);
- steps done, the last logged loss and the median step time (``global batch / samples_per_s`` of each
  logged step of ``log.jsonl``);
- its final scores: ``eval/<task>.json`` of an evaluation after training (``mmadapt train --eval`` /
  ``mmadapt eval``) when there is one, else the last evaluation during training in ``log.jsonl``; the
  headline metrics only (``task/metric``, counts such as ``n_errors`` left out).

The comparison plot (matplotlib, headless): each run's training loss over steps, and its final scores as
grouped bars.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mmadapt.errors import ConfigError
from mmadapt.tasks.base import flat_scores
from mmadapt.training import checkpoint as ckpt
from mmadapt.training.curves import is_headline, read_log

__all__ = ["RunSummary", "differences", "plot_comparison", "report_table", "summarize"]


@dataclass
class RunSummary:
    path: Path
    recipe: dict[str, object]  # config.yaml flattened: {"train.lr": 1e-4, ...}
    trained_params: int | None  # None: no checkpoint yet
    steps: int
    final_loss: float | None
    step_seconds: float | None  # median over the logged steps
    scores: dict[str, float] = field(default_factory=dict)
    scores_from: str = ""  # "eval/" or "step N"
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) of every logged step


def _flatten(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def _headline(scores: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in scores.items() if is_headline(k)}


def _trained_params(run_dir: Path) -> int | None:
    from safetensors import safe_open

    latest = ckpt.latest_checkpoint(run_dir)
    if latest is None:
        return None
    total = 0
    with safe_open(str(latest / "adapter_model.safetensors"), framework="pt") as f:
        for key in f.keys():
            n = 1
            for dim in f.get_slice(key).get_shape():
                n *= dim
            total += n
    return total


def summarize(run_dir: str | Path) -> RunSummary:
    """What ``run_dir`` (written by ``mmadapt train``) holds; a one-line :class:`ConfigError` if it is not one."""
    run_dir = Path(run_dir)
    config_file = run_dir / "config.yaml"
    if not config_file.is_file() or not (run_dir / "log.jsonl").is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no config.yaml and log.jsonl; `mmadapt train` writes them)")
    try:
        recipe = _flatten(yaml.safe_load(config_file.read_text()) or {})
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_file}: not valid YAML ({' '.join(str(exc).split())})") from None
    log = read_log(run_dir)
    steps = [r for r in log if "loss" in r]
    batch = recipe.get("train.batch_size")
    times = [batch / r["samples_per_s"] for r in steps if r.get("samples_per_s") and isinstance(batch, int)]
    summary = RunSummary(run_dir, recipe, _trained_params(run_dir), steps[-1]["step"] if steps else 0,
                         steps[-1]["loss"] if steps else None, statistics.median(times) if times else None,
                         losses=[(r["step"], r["loss"]) for r in steps])
    after = {p.stem: json.loads(p.read_text()) for p in sorted((run_dir / "eval").glob("*.json"))
             if not p.stem.endswith("_results") and not p.stem.endswith("_errors") and p.stem != "summary"}
    if after:
        summary.scores, summary.scores_from = _headline(flat_scores(after)), "eval/"
    else:
        during = [r for r in log if "eval" in r]
        if during:
            summary.scores, summary.scores_from = _headline(during[-1]["eval"]), f"step {during[-1]['step']}"
    return summary


def differences(runs: list[RunSummary]) -> list[str]:
    """The recipe keys whose values are not the same in every run (``output_dir`` left out)."""
    keys = sorted({k for r in runs for k in r.recipe} - {"output_dir"})
    return [k for k in keys if len({json.dumps(r.recipe.get(k), sort_keys=True, default=str) for r in runs}) > 1]


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def report_table(runs: list[RunSummary]) -> str:
    """A Markdown table, one column per run: the differing recipe keys, trained parameters, steps, final loss,
    median step time, and every final score any run has."""
    names = [r.path.name if [x.path.name for x in runs].count(r.path.name) == 1 else str(r.path) for r in runs]
    rows: list[tuple[str, list[str]]] = []
    for key in differences(runs):
        rows.append((key, [_cell(r.recipe.get(key)) for r in runs]))
    rows.append(("trained parameters", [f"{r.trained_params:,}" if r.trained_params is not None else "—" for r in runs]))
    rows.append(("steps", [str(r.steps) for r in runs]))
    rows.append(("final loss", [_cell(r.final_loss) for r in runs]))
    rows.append(("step time (median)", [f"{r.step_seconds * 1000:.1f} ms" if r.step_seconds else "—" for r in runs]))
    rows.append(("scores from", [r.scores_from or "—" for r in runs]))
    for metric in sorted({m for r in runs for m in r.scores}):
        rows.append((metric, [_cell(r.scores.get(metric)) for r in runs]))
    lines = ["| | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(runs)]
    lines += ["| " + key + " | " + " | ".join(cells) + " |" for key, cells in rows]
    return "\n".join(lines)


def plot_comparison(runs: list[RunSummary], out: str | Path) -> Path:
    """Each run's training loss over steps (left) and its final scores as grouped bars (right) → PNG ``out``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(13, 4.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, score_ax = fig.subplots(1, 2)
    for run in runs:
        if run.losses:
            loss_ax.plot(*zip(*run.losses), label=run.path.name)
    loss_ax.set(title="training loss", xlabel="step")
    loss_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    metrics = sorted({m for r in runs for m in r.scores})
    width = 0.8 / max(len(runs), 1)
    for i, run in enumerate(runs):
        xs = [j + i * width for j in range(len(metrics))]
        score_ax.bar(xs, [run.scores.get(m, 0.0) for m in metrics], width=width, label=run.path.name)
    score_ax.set_xticks([j + 0.4 - width / 2 for j in range(len(metrics))], metrics, rotation=30, ha="right",
                        fontsize=8)
    score_ax.set(title="final scores")
    if not metrics:
        score_ax.text(0.5, 0.5, "no scores yet", ha="center", va="center", transform=score_ax.transAxes, color="gray")
    for ax in (loss_ax, score_ax):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
