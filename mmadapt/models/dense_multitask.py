"""DenseMultiTask: a frozen hierarchical encoder (+ adapter) → one light decoder per dense task.

Polyhistor's setting: semantic segmentation, human parts, saliency and surface normals predicted from
one shared frozen Swin. Data flow of one batch::

    images [B, 3, S, S] ─(task-specific adapter: repeated per task, task-major [T·B, ...])─▶
        frozen encoder, adapter hook after every block ─▶ four stage maps [T·B, d_s, S/2^(s+p), ...]
        ─task i's slice─▶ decoder_i ─▶ output_i [B, C_i, S, S] ─dense_loss─▶ Σ_i w_i · loss_i

A shared adapter (one bottleneck set, LoRA) or none (decoders only) runs the encoder on the batch once.
Only ``trained_module`` (adapter + decoders) is trained and saved.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from mmadapt.adapters.dense import DenseAdapter
from mmadapt.backbones.base import HierarchicalEncoder
from mmadapt.config import DenseTaskConfig, ModelConfig
from mmadapt.errors import ConfigError
from mmadapt.heads.dense import MultiScaleDecoder, dense_loss, dense_prediction, out_channels
from mmadapt.io.batch import load_each
from mmadapt.models.base import Assembly
from mmadapt.registry import get, register


@dataclass(frozen=True)
class DenseExample:
    """One training image with the label files of every task it has (``sample``: a ``DenseSample``)."""

    sample: object
    task: str


@register("assemblies", "dense_multitask")
class DenseMultiTask(Assembly):
    def __init__(self, config: ModelConfig, encoder: nn.Module, adapter: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.encoder = encoder
        size = encoder.image_size
        self.image_size = config.dense.image_size or (size[0] if isinstance(size, (tuple, list)) else size)
        parts = {"decoders": nn.ModuleDict()}
        if adapter is not None:
            parts["adapter"] = adapter
        self.trained = nn.ModuleDict(parts)
        for name, task in config.dense.tasks.items():
            self._add_decoder(name, task)
        if adapter is not None:
            adapter.attach(encoder)
        # plain CPU tensors, not buffers: the data side (pixels) runs in DataLoader workers, which must not touch
        # the accelerator the model may live on
        self.pixel_mean = torch.tensor(encoder.image_processor.image_mean, dtype=torch.float32).view(3, 1, 1)
        self.pixel_std = torch.tensor(encoder.image_processor.image_std, dtype=torch.float32).view(3, 1, 1)

    # ------------------------------------------------------------------------------------ construction
    @classmethod
    def needs_label_space(cls, config: ModelConfig) -> bool:
        return any(t.kind == "segmentation" and not t.classes for t in config.dense.tasks.values())

    @classmethod
    def with_labels(cls, config: ModelConfig, space) -> ModelConfig:
        """A copy of ``config`` whose segmentation tasks without ``classes`` take the dense task's data's."""
        config = copy.deepcopy(config)
        missing = [n for n, t in config.dense.tasks.items() if t.kind == "segmentation" and not t.classes]
        if missing:
            dense = space.of_task("dense")
            if len(dense) != 1:
                raise ConfigError("tasks: a dense_multitask model reads its classes from one dense task "
                                  f"(got {', '.join(space.tasks) or 'none'}); or set model.dense.tasks.<name>.classes")
            for name in missing:
                config.dense.tasks[name].classes = list(space.dense_classes[name])
        return config

    @classmethod
    def from_config(cls, config: ModelConfig, label_space=None) -> "DenseMultiTask":
        """Load the frozen encoder, build fresh decoders (and adapter). Segmentation tasks need ``classes``
        (from the config or ``label_space``: :func:`mmadapt.build_model` reads them from the data)."""
        if label_space is not None:
            config = cls.with_labels(config, label_space)
        for name, task in config.dense.tasks.items():
            if task.kind == "segmentation" and not task.classes:
                raise ConfigError(f"model.dense.tasks.{name}.classes: unknown (build through "
                                  "mmadapt.build_model(config), which reads them from the data)")
        enc = config.encoder
        encoder = get("backbones", enc.kind).from_pretrained(
            enc.name, dtype=enc.dtype, attn_implementation=enc.attn_implementation, revision=enc.revision,
            random_init=enc.random_init, trust_remote_code=enc.trust_remote_code)
        if not isinstance(encoder, HierarchicalEncoder):
            raise ConfigError(f"model.encoder.kind: {enc.kind} is not a hierarchical encoder (use hf_swin)")
        adapter = None
        if config.adapter is not None:
            adapter_cls = get("adapters", config.adapter.name)
            if not issubclass(adapter_cls, DenseAdapter):
                raise ConfigError(f"model.adapter.name: {config.adapter.name} is not a dense adapter "
                                  "(polyhistor, polyhistor_lite, bottleneck, lora)")
            adapter = adapter_cls(config.adapter, encoder, list(config.dense.tasks))
        return cls(config, encoder, adapter)

    def _add_decoder(self, name: str, task: DenseTaskConfig) -> None:
        n_classes = len(task.classes) if task.classes else None
        self.trained["decoders"][name] = MultiScaleDecoder(list(self.encoder.hidden_sizes),
                                                           self.config.dense.decoder_dim,
                                                           out_channels(task.kind, n_classes))

    def add_task(self, name: str, task: DenseTaskConfig) -> None:
        """A new dense task: its decoder, and room in the adapter (Polyhistor: one task embedding). Every
        existing task's outputs stay the same."""
        if name in self.config.dense.tasks:
            raise ConfigError(f"model.dense.tasks: {name!r} already exists")
        self.config.dense.tasks[name] = task
        self._add_decoder(name, task)
        if self.adapter is not None:
            self.adapter.add_task(name)
        self.to(next(self.encoder.parameters()).device)

    def _metadata(self) -> dict:
        return {"peft_type": "DENSE_MULTITASK", "adapter_type": self.config.adapter.name if self.adapter else None,
                "base_model_name_or_path": self.config.encoder.name, "tasks": list(self.config.dense.tasks)}

    @property
    def adapter(self) -> nn.Module | None:
        return self.trained["adapter"] if "adapter" in self.trained else None

    @property
    def decoders(self) -> nn.ModuleDict:
        return self.trained["decoders"]

    @property
    def task_names(self) -> list[str]:
        return list(self.config.dense.tasks)

    @property
    def trained_module(self) -> nn.Module:
        return self.trained

    def train(self, mode: bool = True) -> "DenseMultiTask":
        super().train(mode)
        self.encoder.eval()  # frozen parts never train (dropout off)
        return self

    # ---------------------------------------------------------------------------------------- data side
    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB images → normalised [B, 3, S, S] (bilinear resize to the model's input size)."""
        size = self.image_size
        arrays = [np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
                  for im in images]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        return (x - self.pixel_mean) / self.pixel_std

    def load_batch(self, samples: Sequence) -> tuple[list[int], dict | None, list[tuple[int, str]]]:
        """Read images and every task's labels at the input size; returns (indices that loaded,
        ``{"pixel_values", "targets": {task: tensor}}`` or None, [(index, error)]). A bad sample never stops
        the batch."""
        from mmadapt.data.formats.pascal_context import load_dense_image, load_dense_labels

        size = (self.image_size, self.image_size)
        loaded = load_each(samples, lambda s: (load_dense_image(s), load_dense_labels(s, self.task_names, size=size)))
        if not loaded.items:
            return loaded.kept, None, loaded.errors
        images, labels = zip(*loaded.items)
        targets = {t: torch.from_numpy(np.stack([lab[t] for lab in labels])) for t in self.task_names}
        return loaded.kept, {"pixel_values": self.pixels(list(images)), "targets": targets}, loaded.errors

    def collate_train(self, examples: Sequence[DenseExample]) -> tuple[dict | None, list[str]]:
        """Trainer contract: examples → ``forward`` keyword arguments, errors."""
        _, inputs, errors = self.load_batch([ex.sample for ex in examples])
        return inputs, [msg for _, msg in errors]

    # ------------------------------------------------------------------------------------------ compute
    def outputs(self, pixel_values: torch.Tensor, tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Raw decoder outputs ``{task: [B, C, S, S]}`` for ``tasks`` (default: all), one encoder pass."""
        tasks = list(tasks) if tasks is not None else self.task_names
        x = pixel_values.to(self.device)
        adapter = self.adapter
        specific = adapter is not None and adapter.task_specific
        hook = adapter.block_hook(tasks) if adapter is not None else None
        if specific:
            x = x.repeat(len(tasks), 1, 1, 1)
        self.encoder.set_block_hook(hook)
        try:
            features = self.encoder(x)
        finally:
            self.encoder.set_block_hook(None)
        size = tuple(pixel_values.shape[-2:])
        batch = pixel_values.shape[0]
        out = {}
        for i, task in enumerate(tasks):
            feats = [f[i * batch:(i + 1) * batch] for f in features] if specific else features
            out[task] = self.decoders[task](feats, size)
        return out

    def predict(self, pixel_values: torch.Tensor, tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """What the metrics read, per task: class maps, saliency probabilities, unit normals [B, S, S, 3]."""
        kinds = self.config.dense.tasks
        return {t: dense_prediction(kinds[t].kind, o) for t, o in self.outputs(pixel_values, tasks).items()}

    def losses(self, pixel_values: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        tasks = self.config.dense.tasks
        outs = self.outputs(pixel_values)
        return {t: dense_loss(tasks[t].kind, o, targets[t].to(o.device)) for t, o in outs.items()}

    def forward(self, pixel_values: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """Σ_task loss_weight · loss for one batch (each task's own loss in :attr:`loss_parts`)."""
        tasks = self.config.dense.tasks
        losses = self.losses(pixel_values, targets)
        self.loss_parts = {t: loss.detach() for t, loss in losses.items()}
        return sum(tasks[t].loss_weight * loss for t, loss in losses.items())
