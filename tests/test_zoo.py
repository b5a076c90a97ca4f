"""The offline zoo: deterministic builds, loadable by the real Hugging Face loaders, verified cache entries
that are rebuilt when missing or corrupt. Quick specs (a few training steps) keep this fast; the full
models are exercised by the slow README / demo tests."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from mmadapt import zoo
from mmadapt.zoo import cache


@pytest.fixture(scope="module")
def quick_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("zoo")


@pytest.fixture(scope="module")
def quick_opt(quick_root) -> Path:
    return zoo.build_entry("zoo:tiny-opt", root=quick_root, quick=True)


@pytest.fixture(scope="module")
def quick_vit(quick_root) -> Path:
    return zoo.build_entry("zoo:tiny-vit", root=quick_root, quick=True)


def _hashes(entry: Path) -> dict[str, str]:
    return {k: v["sha256"] for k, v in cache.read_manifest(entry)["files"].items()}


def test_names_resolve_and_unknown_names_fail():
    assert zoo.zoo_names() == ["zoo:tiny-opt", "zoo:tiny-vit", "zoo:tiny-timesformer", "zoo:tiny-ast",
                                 "zoo:tiny-swin"]
    assert zoo.resolve_pretrained("facebook/opt-125m") == "facebook/opt-125m"
    assert zoo.resolve_pretrained("/some/local/path") == "/some/local/path"
    with pytest.raises(ValueError, match="unknown zoo model 'zoo:tiny-llama'"):
        zoo.zoo_spec("zoo:tiny-llama")
    with pytest.raises(KeyError, match="unknown zoo spec key 'modle'"):
        zoo.zoo_spec("zoo:tiny-opt", {"modle": {}})


def test_spec_changes_give_separate_entries(tmp_path):
    a = cache.entry_dir(tmp_path, "zoo:tiny-opt", zoo.zoo_spec("zoo:tiny-opt"))
    b = cache.entry_dir(tmp_path, "zoo:tiny-opt", zoo.zoo_spec("zoo:tiny-opt", {"seed": 1}))
    assert a != b and a.name.startswith("tiny-opt-") and a.parent == tmp_path / "zoo"
    assert a == cache.entry_dir(tmp_path, "zoo:tiny-opt", zoo.zoo_spec("zoo:tiny-opt"))


@pytest.mark.parametrize("native", [True, False])
def test_auto_bf16_autocast_resolves_for_this_cpu_before_hashing(native, monkeypatch):
    """``"auto"`` becomes this CPU's answer in the spec itself: a machine with native bf16 gets exactly the
    entry an explicit ``True`` names (earlier builds stay valid), one without gets the fp32 entry."""
    monkeypatch.setattr(zoo, "native_bf16", lambda: native)
    for name in zoo.zoo_names():
        spec = zoo.zoo_spec(name)
        assert spec["train"]["bf16_autocast"] is native
        explicit = zoo.zoo_spec(name, {"train": {"bf16_autocast": native}})
        assert cache.spec_hash(spec) == cache.spec_hash(explicit)
        assert cache.spec_hash(spec) != cache.spec_hash(zoo.zoo_spec(name, {"train": {"bf16_autocast": not native}}))
    assert zoo.resolve_autocast({"train": {"bf16_autocast": False}}) == {"train": {"bf16_autocast": False}}


def test_tiny_opt_loads_with_the_auto_classes(quick_opt):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(quick_opt)
    model = AutoModelForCausalLM.from_pretrained(quick_opt)
    assert model.config.model_type == "opt"
    text = "question: what color is the circle? answer: red"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id == tok.eos_token_id  # OPT convention: </s> starts every sequence
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.pad_token_id not in (tok.eos_token_id, None)
    logits = model(input_ids=torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(tok)) and torch.isfinite(logits).all()
    manifest = cache.read_manifest(quick_opt)
    assert manifest["name"] == "zoo:tiny-opt" and manifest["spec"]["train"]["steps"] == 5
    assert {"answer_accuracy", "kv_accuracy", "n_params"} <= set(manifest["metrics"])


def test_tiny_vit_loads_with_the_auto_classes(quick_vit):
    from transformers import AutoImageProcessor, ViTModel

    from mmadapt.backbones.vision import HFViT
    from mmadapt.data.synthetic.scene_world import render_scene, sample_scene

    import random

    rng = random.Random(0)
    image = render_scene(sample_scene(rng), 64, rng)
    processor = AutoImageProcessor.from_pretrained(quick_vit)
    pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 64, 64)
    model = ViTModel.from_pretrained(quick_vit, add_pooling_layer=False)
    assert model.config.num_hidden_layers == 2
    enc = HFViT.from_pretrained(str(quick_vit))
    cls = enc.layer_cls(enc.preprocess([image]))
    assert cls.shape == (1, 2, 32) and not any(p.requires_grad for p in enc.parameters())
    assert {"table", "color", "count"} <= set(cache.read_manifest(quick_vit)["metrics"]["accuracy"])


def test_builds_are_deterministic(quick_opt, quick_vit, tmp_path):
    """Same spec, another cache root → byte-identical weights and tokenizer."""
    assert _hashes(zoo.build_entry("zoo:tiny-opt", root=tmp_path, quick=True)) == _hashes(quick_opt)
    assert _hashes(zoo.build_entry("zoo:tiny-vit", root=tmp_path, quick=True)) == _hashes(quick_vit)


def test_a_verified_entry_is_reused_without_building(quick_opt, quick_root, monkeypatch):
    def no_build(*_):
        raise AssertionError("a valid entry must not be rebuilt")

    spec = zoo.zoo_spec("zoo:tiny-opt", quick=True)
    assert cache.get_or_build("zoo:tiny-opt", spec, no_build, root=quick_root) == quick_opt


@pytest.mark.parametrize("damage", ["truncate_weights", "flip_a_byte", "delete_tokenizer", "garble_manifest",
                                    "delete_manifest", "wrong_spec_hash", "file_outside_entry", "delete_entry"])
def test_missing_or_corrupt_entries_are_rebuilt(tmp_path, damage, caplog):
    entry = zoo.build_entry("zoo:tiny-opt", root=tmp_path, quick=True)
    good = _hashes(entry)
    weights = entry / "model.safetensors"
    if damage == "truncate_weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "flip_a_byte":
        blob = bytearray(weights.read_bytes())
        blob[-1] ^= 0xFF
        weights.write_bytes(bytes(blob))
    elif damage == "delete_tokenizer":
        (entry / "tokenizer.json").unlink()
    elif damage == "garble_manifest":
        (entry / cache.MANIFEST).write_text("{not json")
    elif damage == "delete_manifest":
        (entry / cache.MANIFEST).unlink()
    elif damage == "wrong_spec_hash":
        manifest = cache.read_manifest(entry)
        manifest["spec_hash"] = "0" * 12
        (entry / cache.MANIFEST).write_text(json.dumps(manifest))
    elif damage == "file_outside_entry":  # a manifest may only vouch for files inside its own entry
        outside = tmp_path / "outside.bin"
        outside.write_bytes(b"x")
        manifest = cache.read_manifest(entry)
        manifest["files"]["../../outside.bin"] = {"size": 1, "sha256": cache.sha256_file(outside)}
        (entry / cache.MANIFEST).write_text(json.dumps(manifest))
        assert "points outside the data root" in cache.verify_entry(entry)
    else:
        import shutil

        shutil.rmtree(entry)
    assert cache.verify_entry(entry, cache.spec_hash(zoo.zoo_spec("zoo:tiny-opt", quick=True))) is not None
    with caplog.at_level(logging.INFO, logger="mmadapt.zoo"):
        again = zoo.build_entry("zoo:tiny-opt", root=tmp_path, quick=True)
    assert again == entry and _hashes(again) == good
    assert cache.verify_entry(again) is None
    expected = "building" if damage == "delete_entry" else "rebuilding"
    assert any(expected in rec.getMessage() for rec in caplog.records)
    assert not list((tmp_path / "zoo").glob(".*tmp-*")), "no temporary build directory may be left behind"


def test_a_failed_build_leaves_no_entry(tmp_path):
    def broken(out_dir: Path, spec: dict, progress: bool) -> dict:
        (out_dir / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed mid-build")

    spec = {"name": "zoo:broken", "x": 1}
    with pytest.raises(RuntimeError, match="killed mid-build"):
        cache.get_or_build("zoo:broken", spec, broken, root=tmp_path)
    assert cache.verify_entry(cache.entry_dir(tmp_path, "zoo:broken", spec)) == "missing"
    assert not any(p.name.startswith(".broken") for p in (tmp_path / "zoo").iterdir())


def test_mmadapt_home_sets_the_cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MMADAPT_HOME", str(tmp_path / "home"))
    assert zoo.cache_root() == tmp_path / "home"
    monkeypatch.delenv("MMADAPT_HOME")
    assert zoo.cache_root() == Path.home() / ".cache" / "mmadapt"


# --- the entries shipped with the package ---------------------------------------------------------------


@pytest.mark.parametrize("name", zoo.zoo_names())
def test_every_zoo_model_ships_a_verified_entry_of_its_default_spec(name, tmp_path, monkeypatch):
    """A fresh install needs no pretraining: ``zoo:`` names resolve to the package's own files (hashes
    checked against their manifest, spec equal to the code's default) without building anything."""
    monkeypatch.setenv("MMADAPT_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setattr(cache, "get_or_build", lambda *a, **k: pytest.fail("a shipped entry must not build"))
    entry = zoo.zoo_path(name)
    assert entry == zoo.SHIPPED_DIR / name.removeprefix("zoo:") and cache.verify_entry(entry) is None
    manifest = zoo.zoo_manifest(name)
    assert manifest["name"] == name and manifest["spec_hash"] == cache.spec_hash(manifest["spec"])
    assert zoo.shipped_spec_problem(name, manifest["spec"]) is None
    figures = zoo.held_out_figures(manifest["metrics"])
    assert figures and all(0.0 <= v <= 1.0 for v in figures.values())
    assert not (tmp_path / "zoo").exists()


def test_a_damaged_or_stale_shipped_entry_is_not_used(tmp_path, monkeypatch, caplog):
    """A shipped entry whose files fail their hashes, or whose spec is not the code's default any more,
    is passed over with one warning naming why; the default is then built into the cache."""
    import shutil

    shipped = tmp_path / "shipped"
    shutil.copytree(zoo.SHIPPED_DIR / "tiny-vit", shipped / "tiny-vit")
    monkeypatch.setattr(zoo, "SHIPPED_DIR", shipped)
    zoo.shipped_entry.cache_clear()
    try:
        assert zoo.shipped_entry("zoo:tiny-vit") == shipped / "tiny-vit"
        zoo.shipped_entry.cache_clear()
        weights = shipped / "tiny-vit" / "model.safetensors"
        blob = bytearray(weights.read_bytes())
        blob[-1] ^= 0xFF
        weights.write_bytes(bytes(blob))
        built = []
        monkeypatch.setattr(zoo, "build_entry", lambda name, **kw: built.append(name) or tmp_path / "built")
        with caplog.at_level(logging.WARNING, logger="mmadapt.zoo"):
            assert zoo.zoo_path("zoo:tiny-vit") == tmp_path / "built" and built == ["zoo:tiny-vit"]
        assert any("not using the shipped zoo:tiny-vit" in r.getMessage() and "sha256 mismatch" in r.getMessage()
                   for r in caplog.records)
        # the code's default spec moved on (e.g. code_version bumped): the shipped spec no longer matches
        spec = cache.read_manifest(zoo.SHIPPED_DIR / "tiny-vit")["spec"]
        stale = {**spec, "code_version": spec["code_version"] - 1}
        assert "built from spec" in zoo.shipped_spec_problem("zoo:tiny-vit", stale)
        # bf16_autocast "auto" accepts whichever value the building machine resolved it to
        for built_with in (True, False):
            assert zoo.shipped_spec_problem(
                "zoo:tiny-vit", {**spec, "train": {**spec["train"], "bf16_autocast": built_with}}) is None
    finally:
        zoo.shipped_entry.cache_clear()


def test_zoo_cli_lists_the_shipped_entries(capsys):
    from mmadapt.cli import main

    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert all(f"{name}" in out for name in zoo.zoo_names()) and out.count("shipped ") == len(zoo.zoo_names())
    assert main(["zoo", "build", "zoo:tiny-llama"]) == 2
    assert "unknown zoo model 'zoo:tiny-llama'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_rebuild_from_scratch_reaches_the_shipped_figures(tmp_path, monkeypatch, capsys):
    """``mmadapt zoo build zoo:tiny-swin`` (the quickest full build, ~2.5 CPU minutes) pretrains the default
    spec from scratch into the cache and reaches the shipped entry's held-out figures (within 2 points:
    bf16 autocast follows this CPU, so the bits need not match)."""
    import os
    import subprocess
    import sys

    # in its own process, as a user runs it: torch state left by other tests must not enter the build
    proc = subprocess.run([sys.executable, "-m", "mmadapt.cli", "zoo", "build", "zoo:tiny-swin"], text=True,
                          capture_output=True, env={**os.environ, "MMADAPT_HOME": str(tmp_path), "MMADAPT_QUIET": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    monkeypatch.setenv("MMADAPT_HOME", str(tmp_path))
    out = proc.stdout
    rebuilt = cache.read_manifest(cache.entry_dir(tmp_path, "zoo:tiny-swin", zoo.zoo_spec("zoo:tiny-swin")))
    shipped = zoo.held_out_figures(zoo.zoo_manifest("zoo:tiny-swin")["metrics"])
    figures = zoo.held_out_figures(rebuilt["metrics"])
    assert set(figures) == set(shipped)
    for key, value in shipped.items():
        assert figures[key] >= value - 0.02, (key, figures[key], value)
        assert key in out
