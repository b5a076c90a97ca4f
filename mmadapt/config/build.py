"""Recipe text → validated dataclasses: dotted overrides, type checks with errors that name the key, the
sections typed by a registered part (``model.adapter``, ``model.tokenizer``, ``tasks.<key>.<split>``), YAML
reading and recipe-file lookup."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from mmadapt.config.dataset import DatasetConfig
from mmadapt.config.model import ModelConfig, VideoTextConfig
from mmadapt.errors import ConfigError


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
            if key == "tasks" and _is_run_config(tp):
                kwargs[key] = _build_tasks(item, sub)
            elif tp is ModelConfig and key == "adapter":
                kwargs[key] = None if item is None else _build_adapter(item, sub)
            elif tp is ModelConfig and key == "tokenizer":
                kwargs[key] = None if item is None else _build_tokenizer(item, sub)
            elif tp is VideoTextConfig and key == "lora":  # the registered LoRA adapter's own config
                from mmadapt import registry

                kwargs[key] = None if item is None else _build(registry.get("adapters", "lora").config_class, item, sub)
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


def build_typed(tp: Any, value: Any, path: str) -> Any:
    """``value`` (plain YAML / JSON data) checked against the config type ``tp`` and built, errors naming the
    dotted ``path`` (e.g. a saved adapter's ``model`` section: ``build_typed(ModelConfig, meta["model"],
    "model")``)."""
    return _build(tp, value, path)


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


def _is_run_config(tp: Any) -> bool:
    from mmadapt.config.run import Config  # imported here: that module imports this one

    return tp is Config


def task_kind(key: str, known: list[str]) -> str:
    """The registered task a recipe's ``tasks.<key>`` names: ``key`` itself, or its part before the first
    ``_`` (``vqa_gqa`` → ``vqa``)."""
    return key if key in known else key.split("_")[0]


def _build_tasks(value: Any, path: str) -> dict:
    """``tasks``: each entry built as its task's own config (``config_class`` of the task it names)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a mapping of task names to tasks, got {type(value).__name__}")
    from mmadapt import registry  # tasks sit above the config: looked up by name

    out = {}
    for key, item in value.items():
        sub = _join(path, key)
        try:
            task_cls = registry.get("tasks", task_kind(str(key), registry.names("tasks")))
        except KeyError as exc:
            raise ConfigError(f"{sub}: {exc.args[0]} (name the task after one, e.g. vqa or vqa_<suffix>)") from None
        out[str(key)] = _build(task_cls.config_class, item, sub)
    return out


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
    for candidate in (path, Path(__file__).resolve().parents[2] / path, Path(sys.prefix) / "share" / "mmadapt" / path):
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
