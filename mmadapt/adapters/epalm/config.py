"""Configuration of eP-ALM (Shukor et al., ICCV 2023). Defaults follow the paper's OPT-2.7B setup."""

from __future__ import annotations

from dataclasses import dataclass

from mmadapt.errors import ConfigError


@dataclass
class EPALMConfig:
    """eP-ALM: [CLS] of the last ``n_injected`` encoder layers → linear connector(s) → LM layers.

    - ``n_injected``: how many encoder layers' [CLS] tokens are used (paper: 6).
    - ``start`` / ``end``: LM layers ``[start, end)`` receive the tokens, every ``step`` layers with
      ``step = (end - start) // n_injected``; ``None`` means the paper's choice scaled to the LM's depth:
      the last ~40% of the layers (OPT-2.7B: 19→31 of 32; OPT-350m: 11→23 of 24).
    - ``shared_connector``: one linear map for every injected layer (the paper's pt-L setup) instead of one
      per layer.
    - ``prompt_len``: soft prompt tokens at the LM input, without position embeddings (0 disables).
    - ``prompt_mlp_hidden``: > 0 reparameterises the prompt as Embedding → Linear → Tanh → Linear.
    - ``leaky_visual_attention``: the authors' mask lets the visual token attend to *future* text tokens;
      ``False`` (default) keeps it causal, ``True`` reproduces the original.
    """

    name: str = "epalm"
    n_injected: int = 6
    start: int | None = None
    end: int | None = None
    shared_connector: bool = False
    prompt_len: int = 10
    prompt_mlp_hidden: int = 0
    leaky_visual_attention: bool = False

    def validate(self) -> None:
        if self.n_injected < 1:
            raise ConfigError(f"n_injected: expected >= 1, got {self.n_injected}")
        if self.prompt_len < 0:
            raise ConfigError(f"prompt_len: expected >= 0, got {self.prompt_len}")
        if self.prompt_mlp_hidden < 0:
            raise ConfigError(f"prompt_mlp_hidden: expected >= 0, got {self.prompt_mlp_hidden}")
        if self.start is not None and self.end is not None and self.end - self.start < self.n_injected:
            raise ConfigError(
                f"start/end: [{self.start}, {self.end}) has fewer than n_injected={self.n_injected} layers"
            )

    def injection_layers(self, num_lm_layers: int) -> list[int]:
        """The LM layer indices that receive a token, in order (first: prepend, later: replace)."""
        end = num_lm_layers if self.end is None else self.end
        start = self.start
        if start is None:
            start = max(0, end - max(self.n_injected, round(0.4 * num_lm_layers)))
        if not 0 <= start < end <= num_lm_layers:
            raise ConfigError(
                f"model.adapter.start/end: [{start}, {end}) is not inside the LM's {num_lm_layers} layers"
            )
        if end - start < self.n_injected:
            raise ConfigError(
                f"model.adapter: [{start}, {end}) has {end - start} layers, fewer than "
                f"n_injected={self.n_injected}"
            )
        step = (end - start) // self.n_injected
        return [start + k * step for k in range(self.n_injected)]
