"""``RUN_DIR/curves.png``: a run's training log drawn, headless (matplotlib's Agg canvas, no display, no pyplot).

Three panels over steps, from the records of ``log.jsonl``:

1. the loss — the step's loss (thick) and each of its parts (``losses``: a task's, a head's, a dense task's);
2. the learning rate of each parameter group;
3. the evaluation scores during training (``train.eval_every``): each task's headline metrics (the keys
   ``task/metric`` of the scores; per-question-type tables and counts such as ``n_errors`` are left out).
   Without evaluations the panel says so.

The trainer redraws it when it logs (at most every :data:`MIN_INTERVAL_S` seconds, so a step of a
millisecond is not slowed by a redraw each) and always at the end; the file is replaced whole (written aside
and renamed), so a viewer never sees half a PNG.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["CURVES_FILE", "MIN_INTERVAL_S", "eval_series", "is_headline", "plot_run", "read_log"]

CURVES_FILE = "curves.png"
#: the shortest time between two redraws during training
MIN_INTERVAL_S = 30.0


def read_log(run_dir: Path) -> list[dict]:
    """The records of ``run_dir/log.jsonl`` (none if it is missing; a line cut by a kill is left out)."""
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def is_headline(key: str) -> bool:
    """Whether a flat score key is a task's headline metric: ``task/metric``, not a per-type table entry
    (``vqa/perAnswerType/yes/no``) nor a count (``vqa/n_errors``)."""
    parts = key.split("/")
    return len(parts) == 2 and not parts[1].startswith("n_")


def eval_series(records: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """``{task/metric: (steps, values)}`` of the headline scores of the evaluation records."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for record in records:
        for key, value in record.get("eval", {}).items():
            if not is_headline(key) or not isinstance(value, (int, float)):
                continue
            steps, values = out.setdefault(key, ([], []))
            steps.append(record["step"])
            values.append(float(value))
    return out


def plot_run(records: list[dict], out: Path, title: str) -> Path:
    """Draw ``records`` (a run's ``log.jsonl``) into the PNG ``out``; returns ``out``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    steps = [r for r in records if "loss" in r]
    fig = Figure(figsize=(13, 4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, lr_ax, eval_ax = fig.subplots(1, 3)
    fig.suptitle(title)

    x = [r["step"] for r in steps]
    loss_ax.plot(x, [r["loss"] for r in steps], color="black", linewidth=2, label="loss")
    for part in sorted({p for r in steps for p in r.get("losses", {})}):
        pts = [(r["step"], r["losses"][part]) for r in steps if part in r.get("losses", {})]
        loss_ax.plot(*zip(*pts), linewidth=1, label=part)
    loss_ax.set(title="training loss", xlabel="step")
    for group in sorted({g for r in steps for g in r.get("lr", {})}):
        lr_ax.plot(x, [r["lr"].get(group) for r in steps], label=group)
    lr_ax.set(title="learning rate", xlabel="step")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    series = eval_series(records)
    for key, (s, v) in sorted(series.items()):
        eval_ax.plot(s, v, marker="o", label=key)
    eval_ax.set(title="evaluation during training", xlabel="step")
    if not series:
        eval_ax.text(0.5, 0.5, "no evaluation during training\n(train.eval_every)", ha="center", va="center",
                     transform=eval_ax.transAxes, color="gray")
    for ax in (loss_ax, lr_ax, eval_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0] and ax is not eval_ax:
            ax.legend(fontsize=8, loc="best", framealpha=0.6)
    if series:  # many metrics: beside the panel, not over its lines
        eval_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    os.replace(tmp, out)
    return out
