"""Frozen audio encoders: the Hugging Face Audio Spectrogram Transformer (AST).

An audio encoder is a :class:`~mmadapt.backbones.vision.VisionEncoder` whose input is a log-mel
spectrogram instead of pixels, so the adapters read it through the same interface:

- ``load(path) -> Tensor [S]`` — a mono waveform at the feature extractor's sample rate;
- ``preprocess(waveforms: list[Tensor [S]]) -> input_values [B, max_length, num_mel_bins]``;
- ``layer_cls(input_values) -> [B, L, D]`` — each block's [CLS] through the final LayerNorm (eP-ALM);
- ``layer_tokens(input_values) -> list[[B, 2+N, D]]``, ``run_blocks``, ``blocks``, ``hidden_size``,
  ``num_layers``, ``identity``, ``dtype``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mmadapt.backbones.base import DTYPES, freeze, run_hf_block
from mmadapt.backbones.vision import VisionEncoder
from mmadapt.errors import DataError
from mmadapt.names import resolve_name
from mmadapt.registry import register


@register("backbones", "hf_ast")
class HFAST(VisionEncoder):
    """``transformers.ASTModel`` with its ``ASTFeatureExtractor`` (Kaldi log-mel fbank, padded or cut to
    ``max_length`` frames, normalised with the checkpoint's mean / std).

    AST's token sequence is ``[CLS], [DIST], patches...`` (``[DIST]``: the DeiT-style distillation token,
    position 1). :meth:`layer_tokens` returns the model's own hidden states, so they hold both, ``[B, 2+N, D]``;
    :meth:`layer_cls` reads position 0 only. :meth:`run_blocks` prepends ``[CLS]`` (+ its position-0
    embedding, see :meth:`_prefix_tokens`) *and* ``[DIST]`` (+ its position-1 embedding) to the external tokens,
    because every block was trained with that token present (all tokens attend to it; dropping it changes what
    the frozen blocks compute), then drops ``[DIST]`` from what it returns: the result is ``[CLS] + tokens``,
    ``[B, 1+N, D]``, as for every other encoder. Inside the blocks (what block hooks see) the sequence is
    ``[CLS], [DIST], tokens...``, the same layout as the model's own forward pass.
    """

    def __init__(self, model: nn.Module, feature_extractor, identity: str):
        super().__init__()
        self.model = freeze(model)
        self.feature_extractor = feature_extractor
        self.final_norm = model.layernorm
        self.hidden_size = model.config.hidden_size
        self.num_layers = model.config.num_hidden_layers
        self.identity = identity

    @classmethod
    def from_pretrained(cls, name: str, *, dtype: str = "float32", attn_implementation: str = "sdpa",
                        revision: str | None = None, trust_remote_code: bool = False, **_: object) -> "HFAST":
        from transformers import ASTModel, AutoFeatureExtractor

        path = resolve_name(name)
        hub = {"revision": revision, "trust_remote_code": trust_remote_code}
        model = ASTModel.from_pretrained(path, dtype=DTYPES[dtype], attn_implementation=attn_implementation, **hub)
        feature_extractor = AutoFeatureExtractor.from_pretrained(path, **hub)
        return cls(model, feature_extractor, identity=f"hf_ast:{name}@{revision or 'main'}")

    @property
    def sample_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    def load(self, source) -> torch.Tensor:
        """An audio file (any format :func:`mmadapt.io.audio.load_audio` reads; mono, resampled to
        :attr:`sample_rate`) or a waveform ``[S]`` (a tensor is passed through, an array becomes one) →
        ``[S]``. Raises :class:`~mmadapt.errors.DataError` naming the file."""
        if isinstance(source, np.ndarray):
            source = torch.from_numpy(np.asarray(source, dtype=np.float32))
        if isinstance(source, torch.Tensor):
            if source.ndim != 1:
                raise DataError(f"hf_ast.load: expected a mono waveform [S], got shape {list(source.shape)}")
            return source
        from mmadapt.io.audio import load_audio

        return load_audio(source, sample_rate=self.sample_rate)

    def preprocess(self, waveforms: list) -> torch.Tensor:
        """Mono waveforms ``[S_i]`` (tensors or arrays, at :attr:`sample_rate`) → ``input_values``
        ``[B, max_length, num_mel_bins]`` in the encoder's dtype."""
        frame = round(0.025 * self.sample_rate)  # one Kaldi frame (25 ms)
        arrays = []
        for i, w in enumerate(waveforms):
            a = w.detach().float().cpu().numpy() if isinstance(w, torch.Tensor) else np.asarray(w, dtype=np.float32)
            if a.ndim != 1:
                raise DataError(f"hf_ast.preprocess: waveform {i}: expected a mono waveform [S], "
                                f"got shape {list(a.shape)}")
            if a.shape[0] < frame:
                raise DataError(f"hf_ast.preprocess: waveform {i}: {a.shape[0]} samples is shorter than one 25 ms "
                                f"frame ({frame} samples at {self.sample_rate} Hz)")
            if not np.isfinite(a).all():
                raise DataError(f"hf_ast.preprocess: waveform {i} holds NaN or infinite values")
            arrays.append(a.astype(np.float32, copy=False))
        if not arrays:
            raise DataError("hf_ast.preprocess: no waveforms")
        out = self.feature_extractor(arrays, sampling_rate=self.sample_rate, return_tensors="pt")
        return out["input_values"].to(self.dtype)

    def layer_tokens(self, input_values: torch.Tensor) -> list[torch.Tensor]:
        """Every token after each block, ``[B, 2+N, D]`` each (``[CLS]``, ``[DIST]``, patches; no final norm)."""
        out = self.model(input_values=input_values, output_hidden_states=True)
        return list(out.hidden_states[1:])  # drop the embedding output: one entry per block

    def layer_cls(self, input_values: torch.Tensor) -> torch.Tensor:
        cls = torch.stack([h[:, 0] for h in self.layer_tokens(input_values)], dim=1)
        return self.final_norm(cls)

    @property
    def blocks(self) -> list[nn.Module]:
        return list(self.model.layers)

    def _prefix_tokens(self) -> torch.Tensor:
        """``[CLS]`` and ``[DIST]`` with their position-0 / -1 embeddings, ``[2, D]``."""
        emb = self.model.embeddings
        return torch.cat([emb.cls_token[0], emb.distillation_token[0]]) + emb.position_embeddings[0, :2]

    def position_table(self) -> torch.Tensor:
        """The patch position embeddings as the spectrogram's grid ``[frequency, time, D]``."""
        emb = self.model.embeddings
        rows, cols = emb.get_shape(self.model.config)
        table = emb.position_embeddings[0, 2:]
        return table.reshape(rows, cols, table.shape[-1])

    def _run_block(self, block: nn.Module, hidden: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        return run_hf_block(block, hidden, key_mask)

    def ffn_output(self, block: nn.Module) -> nn.Module:
        return block.mlp  # ASTLayer: hidden + mlp(layernorm_after(hidden))
