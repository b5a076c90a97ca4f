"""Configuration of eP-ALM (Shukor et al., ICCV 2023). Defaults follow the authors' code (mshukor/eP-ALM:
``models/opt.py``, ``models/epalm.py``, ``accelerate_training/vqa.py``, ``configs/image/ePALM_vqa.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mmadapt.errors import ConfigError

#: the paper's layer window is this many layers per injected token (OPT-2.7B: 12 layers for 6 tokens)
PAPER_LAYERS_PER_TOKEN = 2


@dataclass
class EPALMConfig:
    """eP-ALM: [CLS] of the last ``n_injected`` encoder layers → linear connector(s) → LM layers.

    - ``n_injected``: how many encoder layers' [CLS] tokens are used (paper: 6).
    - ``start`` / ``end``: LM layers ``[start, end)`` receive the tokens, ``step = (end - start) // n_injected``
      layers per token; ``None``: the paper's window for the LM's depth (see :meth:`layer_window`).
    - ``write_every``: ``layer`` (the authors' ``text_step: 1``) — *every* layer ``idx`` in ``[start, end)``
      writes token ``min((idx - start) // step, n_injected - 1)`` into the perceptual slot (the first one
      prepends it, the others replace it); ``step`` — only the first layer of each token's span writes it and
      the slot's state evolves through the ``step - 1`` layers after it (mmadapt's earlier reading).
    - ``shared_connector``: one linear map for every injected layer (the paper's pt-L setup) instead of one
      per layer.
    - ``prompt_len``: soft prompt tokens at the LM input, without position embeddings (0 disables).
    - ``prompt_mlp_hidden``: the prompt is reparameterised as Embedding → Linear → Tanh → Linear with this
      hidden width; ``None`` (default): the LM's input-embedding width, as the authors (OPT-2.7B: 2560);
      ``0``: a plain embedding (the authors' ``mlp: False``, pt-L).
    - ``prompt_init_std``: the prompt embedding starts from N(0, std²); 1.0 (default) is ``nn.Embedding``'s own
      init, the authors'; e.g. 0.02 starts it at the size of a typical word embedding.
    - ``leaky_visual_attention``: the authors' mask lets the visual token attend to *future* text tokens (and
      padding); ``False`` (default) keeps it causal, ``True`` reproduces the original. Generation then recomputes
      the whole sequence for every new token (no KV cache), as the authors generate.
    - ``loss``: ``authors`` (default) — every question and answer token weighs 1 (padding ignored), the token
      losses are summed per sample and averaged over the batch (``loss.sum() / batch_size``); ``weighted`` —
      the question weighs 0.1 and the answer 1, averaged per sample (mmadapt's earlier loss). Either is then
      multiplied by ``lm_loss_weight`` (the authors': 0.1). A task's ``prefix_loss_weight``, when set, replaces
      the question's weight in both.
    - ``lm_dropout``: the frozen LM runs in train mode while training, so its dropout is active (the authors
      call ``model.train()`` on the whole model); its weights stay frozen. Evaluation and generation always
      run it in eval mode.
    - ``added_tokens``: special tokens added to the LM's tokenizer, e.g. the authors' VQA answer marker
      ``</a>`` (``tasks.vqa.prompt: "{question}?</a>"``). Each takes the frozen embedding row of its new id,
      as in the authors' code (OPT's table has spare rows past its tokenizer's 50265 ids); an LM without a
      spare row for it is an error.
    """

    name: str = "epalm"
    n_injected: int = 6
    start: int | None = None
    end: int | None = None
    write_every: Literal["layer", "step"] = "layer"
    shared_connector: bool = False
    prompt_len: int = 10
    prompt_mlp_hidden: int | None = None
    prompt_init_std: float = 1.0
    leaky_visual_attention: bool = False
    loss: Literal["authors", "weighted"] = "authors"
    lm_loss_weight: float = 0.1
    lm_dropout: bool = True
    added_tokens: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if self.n_injected < 1:
            raise ConfigError(f"n_injected: expected >= 1, got {self.n_injected}")
        if self.prompt_len < 0:
            raise ConfigError(f"prompt_len: expected >= 0, got {self.prompt_len}")
        if self.prompt_mlp_hidden is not None and self.prompt_mlp_hidden < 0:
            raise ConfigError(f"prompt_mlp_hidden: expected >= 0 (or null), got {self.prompt_mlp_hidden}")
        if self.prompt_init_std <= 0:
            raise ConfigError(f"prompt_init_std: expected > 0, got {self.prompt_init_std}")
        if self.lm_loss_weight <= 0:
            raise ConfigError(f"lm_loss_weight: expected > 0, got {self.lm_loss_weight}")
        if self.start is not None and self.end is not None and self.end - self.start < self.n_injected:
            raise ConfigError(
                f"start/end: [{self.start}, {self.end}) has fewer than n_injected={self.n_injected} layers"
            )
        if len(set(self.added_tokens)) != len(self.added_tokens) or not all(self.added_tokens):
            raise ConfigError(f"added_tokens: expected distinct non-empty strings, got {self.added_tokens}")

    def layer_window(self, num_lm_layers: int) -> tuple[int, int]:
        """``[start, end)`` for an LM of ``num_lm_layers`` layers; unset ends follow the paper.

        The paper uses the same window at both depths it reports — OPT-350m: 11→23 of 24, OPT-2.7B / 6.7B:
        19→31 of 32 — i.e. not a fraction of the depth but a fixed width: ``2 · n_injected`` layers (two per
        token) ending one layer before the last (the last layer receives no token). So ``end = L - 1`` and
        ``start = end - 2·n``; an LM too shallow for two layers per token (``L - 1 < 2·n``) gets one per token,
        ``[L - 1 - n, L - 1)``, and one too shallow even for that (``L - 1 < n``) the last ``n`` layers. With
        ``n = 6``: 12 layers → [5, 11), 24 → [11, 23), 32 → [19, 31), 40 → [27, 39); 6 layers → [0, 6).
        """
        n, L = self.n_injected, num_lm_layers
        if self.end is not None:
            end = self.end
        else:
            end = L - 1 if L - 1 >= n else L
        if self.start is not None:
            start = self.start
        else:
            width = PAPER_LAYERS_PER_TOKEN * n if end >= PAPER_LAYERS_PER_TOKEN * n else n
            start = max(0, end - width)
        if not 0 <= start < end <= L:
            raise ConfigError(f"model.adapter.start/end: [{start}, {end}) is not inside the LM's {L} layers")
        if end - start < n:
            raise ConfigError(f"model.adapter: [{start}, {end}) has {end - start} layers, fewer than n_injected={n}")
        return start, end

    def injection_plan(self, num_lm_layers: int) -> dict[int, int]:
        """LM layer index → the perceptual token (0 .. n_injected - 1) it writes into the slot, in layer order
        (the first layer prepends, the later ones replace). ``write_every: layer``: every layer of
        ``[start, end)``, token ``min((idx - start) // step, n - 1)``; ``step``: the first layer of each span."""
        start, end = self.layer_window(num_lm_layers)
        step = (end - start) // self.n_injected
        plan = {idx: min((idx - start) // step, self.n_injected - 1) for idx in range(start, end)}
        if self.write_every == "step":
            plan = {start + k * step: k for k in range(self.n_injected)}
        return plan

    def injection_layers(self, num_lm_layers: int) -> list[int]:
        """The LM layers that write a token, in order (:meth:`injection_plan`'s keys)."""
        return list(self.injection_plan(num_lm_layers))
