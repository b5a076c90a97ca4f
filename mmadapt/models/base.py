"""What every assembly shares: building from a config and the data's label space, tolerant batch loading,
the PEFT-layout save / load of its trained parts, and parameter counts.

An assembly (``PerceptualLM``, ``AdaptedEncoder``, ...) is frozen backbones plus a ``trained_module``.
``from_config(config, label_space)`` builds it; heads sized by the data (classes, answers, a table's
statistics, dense class names) take them from the :class:`~mmadapt.data.split.LabelSpace` that
:func:`mmadapt.build_model` reads from the tasks' splits, and the assembly keeps them in its own copy of
the config (``self.config``); the caller's config is left as it was. Only the trained module is saved:
``adapter_config.json`` (that resolved config, so the backbones can be reloaded by name and the heads
rebuilt) + ``adapter_model.safetensors`` (its weights). ``from_pretrained`` rebuilds the assembly from it.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mmadapt.config import ModelConfig, to_plain
from mmadapt.errors import ConfigError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


BACKBONE_KEYS = ("lm", "vision", "encoder")


def recorded_model_config(path: str | Path) -> ModelConfig:
    """The model config an adapter directory records in its ``adapter_config.json`` (no weights read)."""
    from mmadapt.config import build_typed

    path = Path(path)
    meta_file = path / ADAPTER_CONFIG
    if not meta_file.is_file():
        raise ConfigError(f"{meta_file}: not found (is {path} an adapter directory?)")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{meta_file}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or "model" not in meta:
        raise ConfigError(f"{meta_file}: no 'model' section (not written by mmadapt?)")
    try:
        return build_typed(ModelConfig, meta["model"], "model")
    except ConfigError as exc:
        raise ConfigError(f"{meta_file}: {exc}") from None


def check_same_backbones(path: str | Path, config: ModelConfig, what: str) -> None:
    """Refuse, in one line, a recipe whose frozen backbones (name, kind, revision) are not the ones the adapter
    in ``path`` was trained with: its weights mean nothing on another backbone. ``what`` starts the message."""
    recorded = recorded_model_config(path)
    for key in BACKBONE_KEYS:
        then, now = getattr(recorded, key), getattr(config, key)
        if then is None or now is None:
            continue
        for field in ("name", "kind", "revision"):
            if getattr(then, field) != getattr(now, field):
                raise ConfigError(
                    f"{what}: {path} was trained with model.{key}.{field}={getattr(then, field)!r}, the recipe has "
                    f"{getattr(now, field)!r}; use the backbone it was trained with "
                    f"(model.{key}.{field}={getattr(then, field)})")


class Assembly(nn.Module, abc.ABC):
    """Base class: subclasses set ``self.config`` (a :class:`ModelConfig`) and implement ``trained_module``,
    ``from_config`` and :meth:`_metadata`."""

    config: ModelConfig
    #: set by the trainer under ZeRO-3 with several ranks, where entering a module gathers its partitioned
    #: parameters (a collective): ``forward`` must then enter the same modules in the same order on every rank
    #: whatever its micro-batch holds (an assembly whose path depends on the batch's tasks takes the missing
    #: paths with weight 0)
    every_branch_each_step: bool = False
    #: the named parts of the last ``forward``'s loss, detached, for the training log (``losses`` in
    #: ``log.jsonl``): each task's loss where a batch mixes tasks, each head's / dense task's where the loss sums
    #: several; ``forward`` sets it, empty where it does not split its loss (the trainer then names the loss by
    #: the micro-batch's task when it has one)
    loss_parts: dict[str, torch.Tensor] = {}

    @property
    @abc.abstractmethod
    def trained_module(self) -> nn.Module:
        """The module whose weights are trained, checkpointed and saved."""

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: ModelConfig, label_space: Any = None) -> "Assembly":
        """Load the frozen backbones named in ``config`` and build fresh trained parts (heads sized by
        ``label_space``, a :class:`~mmadapt.data.split.LabelSpace`, where the config leaves them open)."""

    @classmethod
    def loaded_backbones(cls, config: ModelConfig, given: dict[str, Any]) -> dict[str, Any]:
        """The ``from_config`` keyword arguments for backbones given already loaded to :meth:`from_pretrained`
        (none by default: this assembly loads its backbones by name)."""
        if given:
            raise ConfigError(f"{cls.__name__}.from_pretrained: takes no loaded backbones (got {', '.join(given)})")
        return {}

    @classmethod
    def needs_label_space(cls, config: ModelConfig) -> bool:
        """Whether building from ``config`` needs the data's label space (something the config leaves open)."""
        return False

    @abc.abstractmethod
    def load_batch(self, sources: Sequence[Any]) -> tuple[list[int], dict | None, list[tuple[int, str]]]:
        """Read a batch tolerantly (:func:`mmadapt.io.batch.load_each`): (indices of ``sources`` that loaded,
        the model inputs for them or None if none did, [(index, one-line error)] for the others)."""

    def _metadata(self) -> dict:
        """PEFT-style fields of ``adapter_config.json`` besides the model config."""
        return {}

    # -------------------------------------------------------------------------------------- save / load
    @classmethod
    def from_pretrained(cls, path: str | Path, **backbones: Any) -> "Assembly":
        """Rebuild from a directory written by :meth:`save_pretrained`: the backbones reloaded by the names it
        records, or given already loaded (``lm=``, ``vision=`` of a perceptual LM: see :func:`mmadapt.wrap`)."""
        path = Path(path)
        meta_file = path / ADAPTER_CONFIG
        model_cfg = recorded_model_config(path)
        from mmadapt import registry

        assembly = registry.get("assemblies", model_cfg.assembly)
        if not issubclass(assembly, cls):
            raise ConfigError(f"{meta_file}: holds a {model_cfg.assembly} model, not a {cls.__name__}")
        model = assembly.from_config(model_cfg, **assembly.loaded_backbones(model_cfg, backbones))
        model.load_adapter(path)
        return model

    def save_pretrained(self, path: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Write ``adapter_config.json`` + ``adapter_model.safetensors`` (trained weights only)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = state_dict if state_dict is not None else self.adapter_state_dict()
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path / ADAPTER_WEIGHTS))
        meta = {**self._metadata(), "library": "mmadapt", "model": to_plain(self.config)}
        (path / ADAPTER_CONFIG).write_text(json.dumps(meta, indent=2))

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.trained_module.state_dict())

    def load_adapter(self, path: str | Path) -> None:
        """Load ``adapter_model.safetensors`` from ``path``. Weights are only ever read from safetensors: a pickle
        checkpoint (``adapter_model.bin``, a ``.pt``) is never unpickled, since unpickling can run any code."""
        weights = Path(path) / ADAPTER_WEIGHTS
        if not weights.is_file():
            pickles = sorted(p.name for p in Path(path).glob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl"))
            hint = f" ({', '.join(pickles)}: pickle checkpoints are never loaded, they can run code)" if pickles else ""
            raise ConfigError(f"{weights}: not found{hint}")
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError) as exc:
            raise ConfigError(f"{weights}: not a readable safetensors file ({' '.join(str(exc).split())}); adapter "
                              "weights are only read from safetensors, never unpickled") from None
        missing, unexpected = self.trained_module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ConfigError(f"{weights}: adapter weights do not match (missing {missing}, unexpected {unexpected})")

    # -------------------------------------------------------------------------------------- parameters
    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by LR group name (the trainer maps names to learning rates)."""
        return {"default": self.trainable_parameters()}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def print_trainable_parameters(self) -> str:
        trainable = sum(p.numel() for p in self.trainable_parameters())
        total = sum(p.numel() for p in self.parameters())
        line = f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"
        print(line)
        return line

    @property
    def device(self) -> torch.device:
        return next(self.trained_module.parameters()).device
