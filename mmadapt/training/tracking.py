"""Experiment tracking: each record the trainer writes to ``log.jsonl`` also goes to the trackers that
``train.report_to`` names.

- ``tensorboard``: event files in ``RUN_DIR/tensorboard/`` (``torch.utils.tensorboard``'s writer, on the
  ``tensorboard`` package; ``tensorboard --logdir RUN_DIR/tensorboard``), the recipe in its Text tab;
- ``wandb``: a Weights & Biases run (project ``train.wandb_project``, named after the run directory, the
  recipe as its config) under ``RUN_DIR/wandb/``. It runs offline unless an API key is set (``WANDB_API_KEY``)
  or ``WANDB_MODE`` asks otherwise; ``wandb sync RUN_DIR/wandb/offline-run-*`` uploads an offline run later.

Both trackers get the same flat mapping for each record, :func:`scalars`, at the record's ``step``:

============================  ==============================================================================
``train/loss``                the step's loss (the mean over its micro-batches and ranks)
``train/loss/<part>``         each part of it (``record["losses"]``): a task's loss, or a head's / dense task's
``train/lr/<group>``          the learning rate of each parameter group (``default``, ``prompt``)
``train/grad_norm``           the global gradient norm before clipping
``train/samples_per_s``       the global batch over the step's wall time (data, forward, backward, update)
``train/skipped_samples``     the step's samples that could not be read (recorded and left out)
``train/nonfinite``           1 for a step skipped for a non-finite loss or gradient, else 0
``eval/<metric>``             each score of an evaluation during training (``train.eval_every``)
============================  ==============================================================================

Only rank 0 tracks. The trackers are imported when a run asks for them (``pip install mmadapt[track]``).
"""

from __future__ import annotations

import abc
import os
from pathlib import Path

from mmadapt.config.run import TRACKERS
from mmadapt.errors import ConfigError

__all__ = ["TRACKERS", "TensorBoardTracker", "Tracker", "WandbTracker", "open_trackers", "scalars"]


def scalars(record: dict) -> dict[str, float]:
    """The numbers of one ``log.jsonl`` record under the trackers' names (see the module docstring)."""
    if "eval" in record:
        return {f"eval/{k}": float(v) for k, v in record["eval"].items()}
    out = {"train/loss": float(record["loss"])}
    out.update({f"train/loss/{k}": float(v) for k, v in record.get("losses", {}).items()})
    out.update({f"train/lr/{k}": float(v) for k, v in record["lr"].items()})
    for key in ("grad_norm", "samples_per_s"):
        if record.get(key) is not None:
            out[f"train/{key}"] = float(record[key])
    out["train/skipped_samples"] = float(len(record.get("skipped", [])))
    out["train/nonfinite"] = float("nonfinite" in record)
    return out


class Tracker(abc.ABC):
    """Where a run's records go besides ``log.jsonl``."""

    @abc.abstractmethod
    def log(self, record: dict) -> None:
        """Send one ``log.jsonl`` record (a training step's or an evaluation's)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and finish (the event files / the run complete on disk)."""


class TensorBoardTracker(Tracker):
    def __init__(self, run_dir: Path, config: dict):
        import importlib.util

        import yaml

        if importlib.util.find_spec("tensorboard") is None:  # torch.utils.tensorboard's own error names no package
            raise ModuleNotFoundError("no module named 'tensorboard'", name="tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        self.writer.add_text("recipe", "    " + yaml.safe_dump(config, sort_keys=False).replace("\n", "\n    "))

    def log(self, record: dict) -> None:
        for name, value in scalars(record).items():
            self.writer.add_scalar(name, value, global_step=int(record["step"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker(Tracker):
    def __init__(self, run_dir: Path, config: dict, project: str):
        import wandb

        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        self.run = wandb.init(project=project, name=run_dir.resolve().name, dir=str(run_dir), config=config,
                              mode=mode, reinit="create_new")

    def log(self, record: dict) -> None:
        self.run.log(scalars(record), step=int(record["step"]))

    def close(self) -> None:
        self.run.finish()


def open_trackers(names: list[str], run_dir: Path, config: dict, wandb_project: str) -> list[Tracker]:
    """The trackers ``names`` (of :data:`~mmadapt.config.run.TRACKERS`) for a run in ``run_dir`` (``config``:
    the recipe as plain data). A tracker whose package is missing is refused in one line naming the extra."""
    makers = {"tensorboard": lambda: TensorBoardTracker(run_dir, config),
              "wandb": lambda: WandbTracker(run_dir, config, wandb_project)}
    out: list[Tracker] = []
    for name in names:
        try:
            out.append(makers[name]())
        except ImportError as exc:
            for tracker in out:
                tracker.close()
            raise ConfigError(f"train.report_to: {name} needs the {exc.name} package "
                              f"(pip install 'mmadapt[track]')") from None
    return out
