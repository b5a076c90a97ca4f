"""Typed run configuration: dataclasses, YAML recipes, dotted overrides, validation.

A recipe is a YAML file whose keys mirror :class:`Config`. ``Config.from_yaml(path, overrides)`` reads it,
applies ``a.b.c=value`` overrides (values parsed as YAML scalars), and validates every key and type before
anything heavy happens; a wrong key fails with its dotted path::

    ConfigError: adapters/epalm/vqa.yaml: train.max_step: unknown key (did you mean 'max_steps'?)

The adapter section is typed by the adapter itself: ``model.adapter.name`` selects the adapter's config
dataclass from the registry, and the remaining keys are validated against it; likewise ``format`` picks a
dataset format's config for ``tasks.<key>.train`` / ``eval``.

The package: :mod:`~mmadapt.config.model` (the ``model`` section), :mod:`~mmadapt.config.dataset` (the base
of the dataset configs), :mod:`~mmadapt.config.run` (:class:`Config` and the task / train / eval sections),
:mod:`~mmadapt.config.build` (validation, overrides, YAML).
"""

from mmadapt.config.build import (
    apply_overrides,
    build_dataset_config,
    build_typed,
    find_recipe_file,
    read_yaml,
    to_plain,
)
from mmadapt.config.dataset import DatasetConfig
from mmadapt.config.model import (
    BackboneConfig,
    DenseConfig,
    DenseTaskConfig,
    HeadConfig,
    ModelConfig,
    VideoTextConfig,
)
from mmadapt.config.run import Config, EvalConfig, TaskConfig, TrainConfig

__all__ = ["BackboneConfig", "Config", "DatasetConfig", "DenseConfig", "DenseTaskConfig", "EvalConfig", "HeadConfig",
           "ModelConfig", "TaskConfig", "TrainConfig", "VideoTextConfig", "apply_overrides", "build_dataset_config",
           "build_typed", "find_recipe_file", "read_yaml", "to_plain"]
