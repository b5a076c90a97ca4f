"""eP-ALM: perceptual tokens injected into the last layers of a frozen LM, plus a soft prompt.

How it sits in the LM. The LM input sequence that :class:`~mmadapt.models.PerceptualLM` builds is::

    column:   0            1 .. P         P+1 ..
              [perceptual] [soft prompt]  [text (left-padded)]

Column 0 is the perceptual slot. Below the first injection layer nobody may attend to it (those layers
"see only text"); at the first injection layer its hidden state is set to the first perceptual token —
which is exactly eP-ALM's *prepend* — and later injection layers *replace* it (the authors' ``text_step: 1``:
every layer of ``[start, end)`` writes token ``min((idx - start) // step, n - 1)``, so each token is written
into ``step`` consecutive layers; see :meth:`EPALMConfig.injection_plan`). Above ``end`` the slot's state
evolves with the layers. The slot and the prompt carry no position embedding; text positions start at 0 as
if they were alone. With the default causal mask the visual token attends only to itself;
``leaky_visual_attention`` lets it see the whole sequence, as the authors' code did (their additive mask pads
the new query row with zeros).

All of that is done with three kinds of hooks installed by :meth:`EPALM.attach`:
- a pre-hook on every layer below the first injection layer that hides column 0 in the attention mask;
- a pre-hook on each writing layer that writes its perceptual token into column 0 (prefill only);
- a forward hook on the learned position embedding (OPT, GPT-2) that zeroes it for columns 0..P.
During KV-cache decoding the slot's keys/values are in the cache: the mask hook keeps hiding it from the
lower layers, nothing is injected, and the new text tokens get their position embeddings normally. In leaky
mode the slot's state depends on the text after it, so ``PerceptualLM`` generates by recomputing the whole
sequence (every call is a prefill) instead (:attr:`EPALM.prefix_attends_future`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from mmadapt.adapters.base import InputPrefix, PerceptualAdapter, TextLoss
from mmadapt.adapters.epalm.config import EPALMConfig
from mmadapt.backbones.lm import CausalLM
from mmadapt.registry import register


class SoftPrompt(nn.Module):
    """``length`` trainable input tokens ``[length, D]``, drawn from N(0, ``init_std``²) (1.0: ``nn.Embedding``'s
    own init), optionally MLP-reparameterised (Embedding → Linear(D, hidden) → Tanh → Linear(hidden, D))."""

    def __init__(self, length: int, dim: int, mlp_hidden: int = 0, init_std: float = 1.0):
        super().__init__()
        self.length = length
        self.embedding = nn.Embedding(length, dim)
        nn.init.normal_(self.embedding.weight, std=init_std)
        self.mlp = (
            nn.Sequential(nn.Linear(dim, mlp_hidden), nn.Tanh(), nn.Linear(mlp_hidden, dim)) if mlp_hidden else None
        )

    def forward(self, batch_size: int) -> torch.Tensor:
        """→ ``[B, length, D]``."""
        idx = torch.arange(self.length, device=self.embedding.weight.device)
        tokens = self.embedding(idx)
        if self.mlp is not None:
            tokens = self.mlp(tokens)
        return tokens.unsqueeze(0).expand(batch_size, -1, -1)


@dataclass
class _Active:
    """What the hooks need during one LM call (set by :meth:`EPALM.active`)."""

    tokens: torch.Tensor | None  # [B, n_injected, D] to inject (None while decoding)
    n_unpositioned: int  # leading columns without position embedding (slot + prompt); 0 while decoding


@register("adapters", "epalm")
class EPALM(PerceptualAdapter):
    """The trained part of eP-ALM: connector(s) ``D_enc → D_lm`` and the soft prompt."""

    config_class = EPALMConfig

    def __init__(self, config: EPALMConfig, lm: CausalLM, vision=None):
        super().__init__()
        encoder_dim, encoder_layers = vision.hidden_size, vision.num_layers
        if config.n_injected > encoder_layers:
            from mmadapt.errors import ConfigError

            raise ConfigError(
                f"model.adapter.n_injected: {config.n_injected} > the vision encoder's {encoder_layers} layers"
            )
        self.config = config
        self.plan = config.injection_plan(lm.num_layers)  # LM layer → the token it writes
        self.layers = list(self.plan)
        n_connectors = 1 if config.shared_connector else config.n_injected
        self.connectors = nn.ModuleList(nn.Linear(encoder_dim, lm.hidden_size) for _ in range(n_connectors))
        # the slot and the prompt are input columns: the width of the input embeddings, which differs from the
        # layers' width in some LMs (OPT-350m: 512 projected to 1024); the connectors write into the layers
        self.input_dim = lm.input_embeddings.embedding_dim
        hidden = self.input_dim if config.prompt_mlp_hidden is None else config.prompt_mlp_hidden
        self.prompt = (SoftPrompt(config.prompt_len, self.input_dim, hidden, config.prompt_init_std)
                       if config.prompt_len else None)
        self.added_token_ids = _add_tokens(lm, config.added_tokens)
        if config.loss == "authors":  # every text token weighs 1, summed per sample, / batch size, × 0.1
            self.text_loss = TextLoss(prefix_weight=1.0, reduction="sample_sum", scale=config.lm_loss_weight)
        else:  # mmadapt's earlier loss: the question at 0.1, per-sample mean
            self.text_loss = TextLoss(prefix_weight=0.1, reduction="sample_mean", scale=config.lm_loss_weight)
        self.prefix_attends_future = config.leaky_visual_attention
        self.lm_dropout = config.lm_dropout
        self._active: _Active | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    # ------------------------------------------------------------------------------------- trained part
    @property
    def n_prefix(self) -> int:
        """Columns this adapter puts before the text: the perceptual slot and the prompt."""
        return 1 + (self.config.prompt_len if self.prompt is not None else 0)

    feature_kind = "layer_cls"

    def encoder_features(self, vision, pixel_values: torch.Tensor) -> torch.Tensor:
        """The frozen encoder's normed [CLS] state of every layer, [B, L_enc, D_enc] (no graph kept: nothing
        below the connectors trains). All layers, so a cache serves any ``n_injected``."""
        with torch.no_grad():
            return vision.layer_cls(pixel_values.to(vision.dtype))

    def perceive_features(self, layer_cls: torch.Tensor) -> torch.Tensor:
        """[B, L_enc, D_enc] → perceptual tokens [B, n_injected, D_lm], injected by the hooks."""
        return self.perceptual_tokens(layer_cls.to(self.connectors[0].weight.dtype))

    def perceptual_tokens(self, layer_cls: torch.Tensor) -> torch.Tensor:
        """``layer_cls`` [B, L_enc, D_enc] (normed [CLS] per encoder layer) → [B, n_injected, D_lm]."""
        chosen = layer_cls[:, -self.config.n_injected :]  # deeper encoder layer → deeper LM layer
        if self.config.shared_connector:
            return self.connectors[0](chosen)
        return torch.stack([conn(chosen[:, k]) for k, conn in enumerate(self.connectors)], dim=1)

    def prefix_embeddings(self, batch_size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The columns before the text: a zero placeholder for the slot, then the prompt → [B, n_prefix, D]."""
        slot = torch.zeros(batch_size, 1, self.input_dim, dtype=dtype, device=device)
        if self.prompt is None:
            return slot
        return torch.cat([slot, self.prompt(batch_size).to(dtype)], dim=1)

    def input_prefix(self, perception: torch.Tensor | None, batch_size: int, dtype: torch.dtype,
                     device: torch.device) -> InputPrefix:
        """The slot and the prompt, every column real and without position (the perceptual tokens enter
        through the hooks, not here)."""
        embeds = self.prefix_embeddings(batch_size, dtype, device)
        valid = torch.ones(embeds.shape[:2], dtype=torch.long, device=device)
        return InputPrefix(embeds, valid, positioned=False)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {"default": list(self.connectors.parameters())}
        if self.prompt is not None:
            groups["prompt"] = list(self.prompt.parameters())
        return groups

    # ------------------------------------------------------------------------------------------- hooks
    def attach(self, lm: CausalLM) -> None:
        """Install the hooks on ``lm`` (idempotent)."""
        self.detach()
        first = self.layers[0]
        for idx, layer in enumerate(lm.layers):
            if idx < first:
                self._handles.append(layer.register_forward_pre_hook(self._hide_slot, with_kwargs=True))
            elif idx in self.plan:
                self._handles.append(
                    layer.register_forward_pre_hook(self._make_injector(self.plan[idx]), with_kwargs=True)
                )
        if lm.position_embedding is not None:
            self._handles.append(lm.position_embedding.register_forward_hook(self._drop_prefix_positions))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @contextmanager
    def active(self, tokens: torch.Tensor | None, prefill: bool) -> Iterator[None]:
        """Arm the hooks for one LM call: inject ``tokens`` (prefill) or only hide the slot (decoding)."""
        self._active = _Active(tokens=tokens if prefill else None, n_unpositioned=self.n_prefix if prefill else 0)
        try:
            yield
        finally:
            self._active = None

    def _hide_slot(self, module: nn.Module, args: tuple, kwargs: dict):
        if self._active is None:
            return None
        mask = _get_arg(module, args, kwargs, "attention_mask")
        if mask is None or mask.dim() != 4:
            raise RuntimeError("eP-ALM needs the explicit 4D attention mask built by PerceptualLM")
        hidden = mask.clone()
        hidden[..., 0] = torch.finfo(mask.dtype).min  # no query below `start` sees the perceptual slot
        if hidden.shape[-2] == mask.shape[-1]:  # prefill: the slot's own row must keep one key (itself)
            hidden[..., 0, 0] = 0
        return _set_arg(module, args, kwargs, "attention_mask", hidden)

    def _make_injector(self, k: int):
        def inject(module: nn.Module, args: tuple, kwargs: dict):
            if self._active is None or self._active.tokens is None:
                return None
            hidden_states = _get_arg(module, args, kwargs, "hidden_states")
            token = self._active.tokens[:, k].to(hidden_states.dtype).unsqueeze(1)
            hidden_states = torch.cat([token, hidden_states[:, 1:]], dim=1)
            return _set_arg(module, args, kwargs, "hidden_states", hidden_states)

        return inject

    def _drop_prefix_positions(self, module: nn.Module, args: tuple, output: torch.Tensor):
        if self._active is None or self._active.n_unpositioned == 0:
            return None
        keep = torch.ones(output.shape[-2], 1, dtype=output.dtype, device=output.device)
        keep[: self._active.n_unpositioned] = 0
        return output * keep


def _add_tokens(lm: CausalLM, tokens: list[str]) -> list[int]:
    """Add ``tokens`` to ``lm``'s tokenizer as special tokens (kept if already there) → their ids, each of
    which must be a row of the frozen input-embedding table (the authors' ``</a>``: OPT's spare rows)."""
    if not tokens:
        return []
    from mmadapt.errors import ConfigError

    lm.tokenizer.add_special_tokens({"additional_special_tokens": list(tokens)}, replace_extra_special_tokens=False)
    ids = lm.tokenizer.convert_tokens_to_ids(list(tokens))
    rows = lm.input_embeddings.num_embeddings
    for token, i in zip(tokens, ids):
        if i >= rows:
            raise ConfigError(f"model.adapter.added_tokens: {token!r} gets id {i}, past the frozen LM's {rows} "
                              "embedding rows (no spare row to take); drop it or use a plain-text marker")
    return ids


def _arg_index(module: nn.Module, name: str) -> int:
    """Position of parameter ``name`` in ``module.forward`` (decoder layers differ: OPT passes the mask by
    keyword, GPT-2 positionally). The hooks ask on every layer call, so a class's answer is computed once."""
    forward = module.forward
    function = getattr(forward, "__func__", None)
    params = _parameter_names(function)[1:] if function is not None else tuple(inspect.signature(forward).parameters)
    return params.index(name) if name in params else -1


@functools.cache
def _parameter_names(function) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)


def _get_arg(module: nn.Module, args: tuple, kwargs: dict, name: str):
    if name in kwargs:
        return kwargs[name]
    idx = _arg_index(module, name)
    return args[idx] if 0 <= idx < len(args) else None


def _set_arg(module: nn.Module, args: tuple, kwargs: dict, name: str, value) -> tuple[tuple, dict]:
    idx = _arg_index(module, name)
    if name not in kwargs and 0 <= idx < len(args):
        args = (*args[:idx], value, *args[idx + 1:])
    else:
        kwargs[name] = value
    return args, kwargs
