"""Security: weights never come through pickle, remote code stays off unless a recipe asks for it, and no data
file can make a loader read outside its data root.

Each point has a test that fails when the guarantee is broken (the static scan also proves, on a planted
snippet, that it sees each forbidden call).
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from mmadapt.config import BackboneConfig, Config
from mmadapt.errors import ConfigError, DataError

PACKAGE = Path(__file__).resolve().parents[1] / "mmadapt"
# The DeepSpeed optimizer-state resume of mmadapt/training/ (engine.load_checkpoint → torch.load) is handled
# apart; the scan covers every other module of the package.
NOT_SCANNED = ("training",)


# ------------------------------------------------------------------------------------ weights: no pickle
PICKLERS = ("pickle", "_pickle", "dill", "cloudpickle", "joblib")


def unsafe_loads(source: str, filename: str = "<source>") -> list[str]:
    """Every call in ``source`` that can unpickle: ``torch.load`` without ``weights_only=True``, ``pickle`` /
    ``dill`` / ``cloudpickle`` / ``joblib`` loads (or imports of them), ``numpy.load(..., allow_pickle=True)``,
    and YAML loaders other than ``safe_load``."""
    found = []

    def keyword(call: ast.Call, name: str):
        return next((k.value for k in call.keywords if k.arg == name), None)

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and node.module == "torch":
                modules += [f"torch.{a.name}" for a in node.names]
            for module in modules:
                if module.split(".")[0] in PICKLERS or module == "torch.load":
                    found.append(f"{filename}:{node.lineno}: imports {module}")
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = ast.unparse(node.func.value)
        call = f"{owner}.{node.func.attr}"
        if node.func.attr == "load" and owner == "torch":
            flag = keyword(node, "weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                found.append(f"{filename}:{node.lineno}: {call} without weights_only=True")
        elif node.func.attr in ("load", "loads", "Unpickler") and owner in PICKLERS:
            found.append(f"{filename}:{node.lineno}: {call}")
        elif node.func.attr == "load" and owner in ("np", "numpy"):
            flag = keyword(node, "allow_pickle")
            if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                found.append(f"{filename}:{node.lineno}: {call} with allow_pickle")
        elif owner == "yaml" and node.func.attr in ("load", "load_all", "unsafe_load", "full_load", "unsafe_load_all"):
            found.append(f"{filename}:{node.lineno}: {call} (use yaml.safe_load)")
    return found


def test_the_scan_sees_every_kind_of_unpickling_call():
    planted = """
import torch, pickle, joblib
import numpy as np, yaml
from torch import load
torch.load(f)
torch.load(f, weights_only=False)
torch.load(f, map_location="cpu", weights_only=True)
pickle.loads(b)
np.load(f, allow_pickle=True)
np.load(f)
yaml.load(text)
yaml.safe_load(text)
"""
    found = unsafe_loads(planted)
    assert len(found) == 8, found  # 3 imports, 2 torch.load, pickle.loads, np.load(allow_pickle), yaml.load
    assert sum("without weights_only=True" in f for f in found) == 2


def test_no_module_loads_weights_or_data_through_pickle():
    files = [p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in NOT_SCANNED]
    assert len(files) > 50 and any(p.parent.name == "models" for p in files)
    found = [f for p in files for f in unsafe_loads(p.read_text(encoding="utf-8"), str(p.relative_to(PACKAGE)))]
    assert found == []


class _Planted:
    """Unpickling this creates ``marker`` (what an attacker's ``__reduce__`` would do, harmlessly)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture
def adapter_dir(tmp_path):
    """A saved adapted_encoder (tiny ViT from a local folder): reloadable offline by ``from_pretrained``."""
    from tiny import tiny_vit

    from mmadapt.models.adapted_encoder import AdaptedEncoder

    encoder = tiny_vit(layers=1, hidden=16)
    encoder.model.save_pretrained(tmp_path / "vit")
    encoder.processor.save_pretrained(tmp_path / "vit")
    cfg = Config.from_dict({"model": {"assembly": "adapted_encoder",
                                      "encoder": {"name": str(tmp_path / "vit"), "kind": "hf_vit"},
                                      "tokenizer": {"name": "image", "image_size": 32, "patch_size": 8},
                                      "head": {"n_outputs": 2}}})
    AdaptedEncoder.from_config(cfg.model).save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter"


def test_the_planted_pickle_is_live(tmp_path):
    marker = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Planted(marker)))
    assert marker.exists()  # so the tests below would see it if anything unpickled their files


def test_from_pretrained_refuses_a_pickle_in_place_of_the_safetensors(adapter_dir, tmp_path):
    from mmadapt.models.base import Assembly

    assert Assembly.from_pretrained(adapter_dir) is not None  # the untouched directory loads
    marker = tmp_path / "pwned"
    (adapter_dir / "adapter_model.safetensors").write_bytes(pickle.dumps(_Planted(marker)))
    with pytest.raises(ConfigError, match=r"adapter_model\.safetensors: not a readable safetensors file .*never "
                                          r"unpickled"):
        Assembly.from_pretrained(adapter_dir)
    assert not marker.exists()


def test_from_pretrained_never_falls_back_to_a_pickled_bin(adapter_dir, tmp_path):
    import torch

    from mmadapt.models.base import Assembly

    marker = tmp_path / "pwned"
    (adapter_dir / "adapter_model.safetensors").unlink()
    with open(adapter_dir / "adapter_model.bin", "wb") as f:  # what torch.save would write, with a payload
        torch.save({"weight": torch.zeros(1), "payload": _Planted(marker)}, f)
    with pytest.raises(ConfigError, match=r"adapter_model\.safetensors: not found \(adapter_model\.bin: pickle "
                                          r"checkpoints are never loaded"):
        Assembly.from_pretrained(adapter_dir)
    assert not marker.exists()


# ---------------------------------------------------------------------------------- trust_remote_code
class _Stop(Exception):
    """Raised by the recording stand-ins once every call of interest has been seen."""


def _record(monkeypatch, calls: list, owner, *, stop: bool) -> None:
    """Replace ``owner.from_pretrained`` by a stand-in that records its keyword arguments, then returns a
    placeholder model (``stop=False``) or raises :class:`_Stop` (``stop=True``)."""

    def from_pretrained(*args, **kwargs):
        calls.append((owner.__name__, kwargs))
        if stop:
            raise _Stop
        # a placeholder with what the loaders read before the next call (a config's type, a tokenizer's eos)
        return SimpleNamespace(pooler=None, model_type="llama", architectures=["LlamaForCausalLM"], auto_map=None,
                               eos_token_id=2)

    monkeypatch.setattr(owner, "from_pretrained", from_pretrained)


# loader kind → (model classes called first, the preprocessing class called last), as transformers names them
LOADERS = {
    "hf_vit": (["ViTModel"], "AutoImageProcessor"),
    "hf_clip_vision": (["CLIPVisionModel"], "AutoImageProcessor"),
    "hf_ast": (["ASTModel"], "AutoFeatureExtractor"),
    "hf_timesformer": (["TimesformerModel"], "AutoImageProcessor"),
    "hf_swin": (["SwinModel"], "AutoImageProcessor"),
    "hf_text_encoder": (["AutoModel"], "AutoTokenizer"),
    # the LM reads its config (is it a causal LM?) and its tokenizer (has it an eos?) before its weights
    "hf_causal_lm": (["AutoConfig", "AutoTokenizer"], "AutoModelForCausalLM"),
}


def test_trust_remote_code_is_off_by_default_and_only_a_recipe_turns_it_on():
    assert BackboneConfig().trust_remote_code is False
    cfg = Config.from_dict({"model": {"adapter": {"name": "epalm"}}})
    assert cfg.model.lm.trust_remote_code is False and cfg.model.vision.trust_remote_code is False
    cfg = Config.from_dict({"model": {"adapter": {"name": "epalm"}}}, ["model.vision.trust_remote_code=true"])
    assert cfg.model.vision.trust_remote_code is True and cfg.model.lm.trust_remote_code is False
    with pytest.raises(ConfigError, match="model.lm.trust_remote_code: expected true/false"):
        Config.from_dict({"model": {"adapter": {"name": "epalm"}, "lm": {"trust_remote_code": "sure"}}})


@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize("recipe", [{}, {"trust_remote_code": True}])
def test_every_hf_loader_passes_the_recipes_trust_remote_code_to_transformers(kind, recipe, monkeypatch):
    """The perceptual_lm assembly's own loading path (``model.lm`` / ``model.vision`` of a recipe) reaches every
    ``from_pretrained`` call with ``trust_remote_code`` as the recipe says: False unless it says True."""
    import transformers

    from mmadapt.models import perceptual_lm

    models, last = LOADERS[kind]
    calls: list = []
    for name in models:
        _record(monkeypatch, calls, getattr(transformers, name), stop=False)
    _record(monkeypatch, calls, getattr(transformers, last), stop=True)
    section = "lm" if kind == "hf_causal_lm" else "vision"
    cfg = Config.from_dict({"model": {"adapter": {"name": "epalm"},
                                      section: {"name": "local/model-dir", "kind": kind, **recipe}}}).model
    with pytest.raises(_Stop):
        (perceptual_lm._load_lm if section == "lm" else perceptual_lm._load_vision)(getattr(cfg, section))
    assert [name for name, _ in calls] == [*models, last]
    assert all(kwargs.get("trust_remote_code", "absent") is recipe.get("trust_remote_code", False)
               for _, kwargs in calls), calls


@pytest.mark.parametrize("kind", ["hf_vit", "hf_swin", "hf_text_encoder"])
def test_a_random_init_baseline_reads_its_config_without_remote_code(kind, monkeypatch):
    import transformers

    from mmadapt.backbones.vision import load_vision_encoder

    config_class = {"hf_vit": "ViTConfig", "hf_swin": "SwinConfig", "hf_text_encoder": "AutoConfig"}[kind]
    calls: list = []
    _record(monkeypatch, calls, getattr(transformers, config_class), stop=True)
    with pytest.raises(_Stop):
        load_vision_encoder(kind, "local/model-dir", random_init=True)
    assert calls == [(config_class, {"revision": None, "trust_remote_code": False})]


@pytest.mark.parametrize("assembly", ["adapted_encoder", "all_in_one", "dense_multitask"])
@pytest.mark.parametrize("recipe", [{}, {"trust_remote_code": True}])
def test_every_assembly_passes_model_encoder_trust_remote_code_on(assembly, recipe, monkeypatch):
    from mmadapt import registry

    kind = "hf_swin" if assembly == "dense_multitask" else "hf_vit"
    raw = {"assembly": assembly, "encoder": {"name": "local/model-dir", "kind": kind, **recipe},
           "tokenizer": {"name": "image"}, "head": {"n_outputs": 2}, "dense": {"tasks": {"saliency": {}}}}
    if assembly != "dense_multitask":
        raw.pop("dense")
    if assembly == "all_in_one":
        raw.pop("tokenizer")
    cfg = Config.from_dict({"model": raw}).model
    backbone = registry.get("backbones", kind)
    calls: list = []

    def from_pretrained(name, **kwargs):
        calls.append(kwargs)
        raise _Stop

    monkeypatch.setattr(backbone, "from_pretrained", from_pretrained)
    with pytest.raises(_Stop):
        registry.get("assemblies", assembly).from_config(cfg)
    assert [c["trust_remote_code"] for c in calls] == [recipe.get("trust_remote_code", False)]


def test_all_in_ones_text_tokenizer_never_runs_remote_code(monkeypatch):
    import transformers

    from mmadapt import registry

    cfg = Config.from_dict({"model": {"assembly": "all_in_one", "encoder": {"name": "local/vit", "kind": "hf_vit",
                                                                            "trust_remote_code": True}}}).model
    monkeypatch.setattr(registry.get("backbones", "hf_vit"), "from_pretrained", lambda name, **kw: SimpleNamespace())
    calls: list = []
    _record(monkeypatch, calls, transformers.AutoTokenizer, stop=True)
    with pytest.raises(_Stop):
        registry.get("assemblies", "all_in_one").from_config(cfg)
    assert [kwargs["trust_remote_code"] for _, kwargs in calls] == [False]


# ------------------------------------------------------------------------------ paths stay in the data root
@pytest.fixture
def outside(tmp_path) -> Path:
    """A secret file outside every data root of these tests, and the data root ``tmp_path / "root"``."""
    (tmp_path / "root").mkdir()
    secret = tmp_path / "secret" / "passwd"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0\n")
    return secret


def _escapes(root: Path, secret: Path) -> dict[str, str]:
    """The three ways out of ``root`` to ``secret``: climbing, absolute, through a symlink inside the root."""
    (root / "link").symlink_to(secret.parent, target_is_directory=True)
    return {"dotdot": os.path.relpath(secret, root), "absolute": str(secret), "symlink": "link/passwd"}


def _assert_refused(exc: DataError, file: Path, entry: str, root: Path) -> None:
    message = str(exc)
    assert str(file) in message and repr(entry) in message and f"data root {root}" in message, message
    assert "points outside" in message


def _write(path: Path, content) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


HOW = ["dotdot", "absolute", "symlink"]


@pytest.mark.parametrize("how", HOW)
def test_a_manifest_path_cannot_leave_the_root(outside, tmp_path, how):
    from mmadapt.data.split import make_dataset
    from mmadapt.tasks.classification import ClassificationTask, LabelledTaskConfig

    root = tmp_path / "root"
    entry = _escapes(root, outside)[how]
    (root / "a.png").write_bytes(b"")
    rows = [{"path": "a.png", "label": "x"}, {"path": entry, "label": "x"}]
    manifest = _write(root / "train.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    task = ClassificationTask("cls", LabelledTaskConfig(train=make_dataset("manifest", annotations=str(manifest))))
    with pytest.raises(DataError) as caught:
        task.records("train")
    _assert_refused(caught.value, manifest, entry, root)
    assert f"{manifest}:2: path: " in str(caught.value)


@pytest.mark.parametrize("how", HOW)
def test_a_coco_file_name_cannot_leave_the_image_root(outside, tmp_path, how):
    from mmadapt.data.formats.coco_captions import load_coco_captions

    root = tmp_path / "root"
    entry = _escapes(root, outside)[how]
    captions = _write(tmp_path / "captions.json", {"images": [{"id": 1, "file_name": entry}], "annotations": []})
    with pytest.raises(DataError) as caught:
        load_coco_captions(captions, root, check_images=False)
    _assert_refused(caught.value, captions, entry, root)


@pytest.mark.parametrize("how", HOW)
def test_a_karpathy_filepath_cannot_leave_the_image_root(outside, tmp_path, how):
    from mmadapt.data.formats.karpathy import load_karpathy

    root = tmp_path / "root"
    entry = _escapes(root, outside)[how]
    folder, name = os.path.split(entry)
    split = _write(tmp_path / "dataset_coco.json", {"images": [
        {"filepath": folder, "filename": name, "imgid": 0, "split": "test", "sentences": [{"raw": "a cat"}]}]})
    with pytest.raises(DataError) as caught:
        load_karpathy(split, root, "test", check_images=False)
    _assert_refused(caught.value, split, entry, root)


@pytest.mark.parametrize("how", ["dotdot", "absolute"])
def test_a_vqa_data_subtype_or_template_cannot_leave_the_image_root(outside, tmp_path, how):
    from mmadapt.data.formats.vqa_v2 import load_vqa

    root = tmp_path / "root"
    folder = os.path.dirname(_escapes(root, outside)[how])
    questions = _write(tmp_path / "q.json", {"data_subtype": folder, "questions": [
        {"image_id": 1, "question": "what?", "question_id": 10}]})
    with pytest.raises(DataError) as caught:  # the file's data_subtype fills the template's folder
        load_vqa(questions, image_root=root, image_template="{data_subtype}/{image_id}.jpg", check_images=False)
    _assert_refused(caught.value, questions, f"{folder}/1.jpg", root)
    assert f"{questions}: questions[0]: " in str(caught.value)
    with pytest.raises(DataError) as caught:  # and so does a template that climbs out by itself
        load_vqa(questions, image_root=root, image_template="../{image_id}.jpg", check_images=False)
    _assert_refused(caught.value, questions, "../1.jpg", root)


def _video_qa(file: Path, entry: str, root: Path) -> None:
    from mmadapt.data.formats.msrvtt_qa import load_video_qa

    load_video_qa(_write(file, [{"id": 0, "video": entry, "question": "what?", "answer": "x"}]), root, "{video}")


def _audiocaps(file: Path, entry: str, root: Path) -> None:
    from mmadapt.data.formats.audiocaps import load_audiocaps

    load_audiocaps(_write(file, f"audiocap_id,youtube_id,start_time,caption\n1,{entry},0,a dog\n"), root,
                   template="{youtube_id}")


def _msrvtt(file: Path, entry: str, root: Path) -> None:
    from mmadapt.data.formats.msrvtt_retrieval import read_captions

    read_captions(_write(file, f"video_id,sentence\n{entry},a cat\n"), root, "{video_id}")


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("load", [_video_qa, _audiocaps, _msrvtt], ids=["video_qa", "audiocaps", "msrvtt"])
def test_a_clip_named_through_a_template_cannot_leave_the_root(outside, tmp_path, how, load):
    """MSRVTT-QA / MSVD-QA questions, AudioCaps rows and MSR-VTT captions name clips through a template."""
    root = tmp_path / "root"
    entry = _escapes(root, outside)[how]
    with pytest.raises(DataError) as caught:
        load(tmp_path / "annotations.csv", entry, root)
    _assert_refused(caught.value, tmp_path / "annotations.csv", entry, root)


def test_a_modelnet_list_cannot_name_a_cloud_outside_the_dataset(outside, tmp_path):
    from mmadapt.data.formats.modelnet40 import modelnet_records

    root = tmp_path / "root"
    label = os.path.relpath(outside.parent, root)  # "../secret": a "class" named by the shape-names file
    _write(root / "modelnet40_shape_names.txt", f"chair\n{label}\n")
    split = _write(root / "modelnet40_train.txt", f"{label}_0001\n")
    with pytest.raises(DataError) as caught:
        modelnet_records(root, "train")
    _assert_refused(caught.value, split, f"{label}/{label}_0001.txt", root)


def test_a_dense_split_list_cannot_name_an_image_outside_the_dataset(tmp_path):
    from mmadapt.data.formats.pascal_context import IMAGE_DIR, SPLIT_DIR, read_dense_split

    root = tmp_path / "root"
    (root / IMAGE_DIR).mkdir(parents=True)
    (root / SPLIT_DIR).mkdir(parents=True)
    (root / "secret.jpg").write_bytes(b"")
    _write(root / SPLIT_DIR / "train.txt", "../secret\n")  # ids are matched against the image folder's listing
    with pytest.raises(DataError, match=r"image\(s\) of split 'train' not found .*'\.\./secret'"):
        read_dense_split(root, "train", ["saliency"])


def test_a_tampered_scenes_manifest_cannot_point_outside_the_root(scenes_root, tmp_path):
    from mmadapt.data.synthetic.scenes import load_scenes_vqa

    root = tmp_path / "scenes"
    shutil.copytree(scenes_root, root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["splits"]["val"]["image_root"] = "../../.."
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError) as caught:
        load_scenes_vqa(root, "val")
    _assert_refused(caught.value, root / "manifest.json", "../../..", root)


def test_a_tampered_generation_stamp_is_ignored_not_followed(outside, tmp_path):
    from mmadapt.data.synthetic.generated import ensure_generated

    root = tmp_path / "root"
    written = []

    def writer(root, split, n, seed):
        written.append(split)
        return _write(Path(root) / f"{split}.jsonl", "")

    assert ensure_generated(root, "train", 1, 0, writer) == root / "train.jsonl" and written == ["train"]
    assert ensure_generated(root, "train", 1, 0, writer) == root / "train.jsonl" and written == ["train"]
    stamp = json.loads((root / "train.stamp.json").read_text())
    (root / "train.stamp.json").write_text(json.dumps({**stamp, "path": os.path.relpath(outside, root)}))
    assert ensure_generated(root, "train", 1, 0, writer) == root / "train.jsonl" and written == ["train"] * 2


def test_a_root_that_is_itself_a_symlink_and_plain_subfolders_still_work(tmp_path):
    from mmadapt.data.formats.coco_captions import load_coco_captions

    real = tmp_path / "disk" / "coco"
    (real / "val2014").mkdir(parents=True)
    (real / "val2014" / "a.jpg").write_bytes(b"")
    (tmp_path / "images").symlink_to(real, target_is_directory=True)
    captions = _write(tmp_path / "c.json", {"images": [{"id": 1, "file_name": "val2014/./a.jpg"},
                                                       {"id": 2, "file_name": "val2014/../val2014/a.jpg"}],
                                            "annotations": []})
    samples = load_coco_captions(captions, tmp_path / "images")
    assert [s.image_path for s in samples] == [tmp_path / "images" / "val2014" / "a.jpg",
                                               tmp_path / "images" / "val2014" / ".." / "val2014" / "a.jpg"]


def test_an_absolute_manifest_path_inside_the_root_is_accepted(tmp_path):
    from mmadapt.data.split import make_dataset
    from mmadapt.tasks.classification import ClassificationTask, LabelledTaskConfig

    (tmp_path / "images").mkdir()
    inside = tmp_path / "images" / "a.png"
    manifest = _write(tmp_path / "train.jsonl", json.dumps({"path": str(inside), "label": "x"}) + "\n"
                      + json.dumps({"path": "images/a.png", "label": "y"}) + "\n")
    task = ClassificationTask("cls", LabelledTaskConfig(train=make_dataset("manifest", annotations=str(manifest))))
    assert task.records("train") == [(str(inside), "x"), (str(inside), "y")]
