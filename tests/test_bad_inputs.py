"""The bad-input corpus (``tests/data/bad/``): every broken file gives its loader's one clear error, and runs
that meet bad samples record them and go on.

Each corpus entry names its loader and the exact message the user sees (``make_corpus.py``, also the README's
table); here each file goes through its loader and the message must match: the library's own error type
(:class:`~mmadapt.errors.DataError` / :class:`~mmadapt.errors.ConfigError` or a subclass), never a bare
``KeyError`` / ``UnicodeDecodeError`` / numpy error, naming the file and the field, column or shape at fault.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from tiny import make_model, tiny_config

os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "mmadapt" / "torch_extensions"))

import mmadapt  # noqa: E402
from mmadapt.config import Config  # noqa: E402
from mmadapt.data.split import make_dataset  # noqa: E402
from mmadapt.tasks.classification import LabelledTaskConfig  # noqa: E402
from mmadapt.errors import MMAdaptError  # noqa: E402

CORPUS_DIR = Path(__file__).parent / "data" / "bad"
_spec = importlib.util.spec_from_file_location("make_corpus", CORPUS_DIR / "make_corpus.py")
make_corpus = sys.modules.setdefault("make_corpus", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(make_corpus)
CORPUS = {bad.name: bad for bad in make_corpus.CORPUS}


def _loaders(folder: Path) -> dict:
    """Loader name (the corpus's ``loader`` column) → a call that reads one file as a user would."""
    from mmadapt.data.formats.audiocaps import load_audiocaps
    from mmadapt.data.formats.coco_captions import load_coco_captions
    from mmadapt.data.formats.karpathy import load_karpathy
    from mmadapt.data.formats.msrvtt_qa import load_video_qa
    from mmadapt.data.formats.vqa_v2 import load_vqa, load_vqa_results
    from mmadapt.eval.caption_metric import score_caption_files
    from mmadapt.eval.vqa_metric import score_vqa_files
    from mmadapt.io.audio import load_audio
    from mmadapt.io.graph import load_graph
    from mmadapt.io.image import load_image
    from mmadapt.io.point_cloud import load_h5_point_clouds, load_point_cloud
    from mmadapt.io.table import TableSchema, load_table
    from mmadapt.io.video import load_video
    from mmadapt.tasks.classification import ClassificationTask
    from mmadapt.data.formats.msrvtt_retrieval import read_captions

    def manifest(path):
        task = ClassificationTask("cls", LabelledTaskConfig(train=make_dataset("manifest", annotations=path)))
        return task.records("train")

    ok = {name: str(folder / name) for name in make_corpus.COMPANIONS}
    return {
        "load_image": load_image,
        "load_video": lambda p: load_video(p, n_frames=4),
        "load_audio": load_audio,
        "load_point_cloud": lambda p: load_point_cloud(p, n_points=16),
        "load_h5_point_clouds": load_h5_point_clouds,
        "load_table": lambda p: load_table(p, TableSchema(numeric=["x"], categorical=["colour"], target="label")),
        "load_graph": lambda p: load_graph(p, max_nodes=4096),
        "load_vqa": lambda p: load_vqa(p, check_images=False),
        "load_vqa+annotations": lambda p: load_vqa(ok["ok_vqa_questions.json"], p, check_images=False),
        "score_vqa_files": lambda p: score_vqa_files(ok["ok_vqa_questions.json"], ok["ok_vqa_annotations.json"], p),
        "load_vqa_results": load_vqa_results,
        "load_coco_captions": lambda p: load_coco_captions(p, folder / "images", check_images=False),
        "load_karpathy": lambda p: load_karpathy(p, folder / "images", "test", check_images=False),
        "score_caption_files": lambda p: score_caption_files(ok["ok_captions.json"], p),
        "manifest": manifest,
        "load_video_qa": lambda p: load_video_qa(p, template="{video}" if "traversal" in p else None),
        "load_audiocaps": load_audiocaps,
        "read_captions": lambda p: read_captions(Path(p), folder, "{video_id}.mp4"),
        "Config.from_yaml": Config.from_yaml,
    }


def message_pattern(bad, path: Path) -> str:
    """The regular expression of ``bad``'s message for a file at ``path`` ("{file}": the path, "…": anything)."""
    parts = bad.error.partition(": ")[2].split("…")
    return ".*".join(re.escape(part).replace(re.escape("{file}"), re.escape(str(path))) for part in parts)


def expect_error(bad, path: Path, loaders: dict) -> MMAdaptError:
    """Run ``bad``'s loader on ``path``; check the error's type and message against the corpus entry."""
    with pytest.raises(MMAdaptError) as caught:
        loaders[bad.loader](str(path))
    exc = caught.value
    assert type(exc).__name__ == bad.error.partition(": ")[0], f"{bad.name}: {type(exc).__name__}: {exc}"
    assert re.fullmatch(message_pattern(bad, path), str(exc)), f"{bad.name}:\n  got  {exc}\n  want {bad.error}"
    assert "\n" not in str(exc), "errors are one line"
    return exc


# ------------------------------------------------------------------------------------------ the corpus
@pytest.mark.parametrize("name", list(CORPUS))
def test_each_bad_file_gives_its_loaders_clear_error(name):
    expect_error(CORPUS[name], CORPUS_DIR / name, _loaders(CORPUS_DIR))


def test_the_folder_holds_the_corpus_small_files_and_the_readme_table():
    on_disk = {p.name for p in CORPUS_DIR.iterdir() if p.is_file()}
    assert on_disk == {*CORPUS, *make_corpus.COMPANIONS, "make_corpus.py", "README.md"}
    assert max((CORPUS_DIR / name).stat().st_size for name in [*CORPUS, *make_corpus.COMPANIONS]) <= 4096
    assert (CORPUS_DIR / "README.md").read_text(encoding="utf-8") == make_corpus.readme()
    assert {bad.loader for bad in make_corpus.CORPUS} == set(_loaders(CORPUS_DIR)) == set(make_corpus.LOADER_CALLS)


def test_the_generator_reproduces_the_committed_corpus(tmp_path):
    make_corpus.write_corpus(tmp_path)
    loaders = _loaders(tmp_path)
    for name in [*CORPUS, *make_corpus.COMPANIONS]:
        committed, again = (CORPUS_DIR / name).read_bytes(), (tmp_path / name).read_bytes()
        if name not in CORPUS or CORPUS[name].exact:
            assert again == committed, f"{name}: make_corpus.py no longer writes the committed bytes"
        else:  # bytes from a codec library (JPEG, H.264, HDF5): the same failure is what must not change
            expect_error(CORPUS[name], tmp_path / name, loaders)


@pytest.mark.parametrize("name", ["video_truncated.mp4", "video_no_moov.mp4", "video_text.mp4"])
def test_a_bad_clip_is_a_data_error_with_the_pyav_backend_too(name):
    from mmadapt.errors import DataError
    from mmadapt.io.video import load_video

    with pytest.raises(DataError, match=re.escape(str(CORPUS_DIR / name)) + ": .*(truncated|not a video)"):
        load_video(CORPUS_DIR / name, n_frames=4, backend="pyav")


def test_a_pickled_npy_is_refused_without_unpickling(monkeypatch):
    """``points_pickled.npy`` is read with ``allow_pickle=False``: numpy never reaches ``pickle.load``."""
    import pickle

    from mmadapt.errors import DataError
    from mmadapt.io.point_cloud import load_point_cloud

    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled a point cloud"))
    with pytest.raises(DataError, match="allow_pickle=False"):
        load_point_cloud(CORPUS_DIR / "points_pickled.npy")


@pytest.mark.parametrize("score", ["vqa", "caption"])
def test_a_missing_results_file_is_a_format_error_naming_it(score, tmp_path):
    from mmadapt.eval.caption_metric import score_caption_files
    from mmadapt.eval.vqa_metric import score_vqa_files

    missing = tmp_path / "results.json"
    with pytest.raises(MMAdaptError, match=f"^results file {re.escape(str(missing))}: cannot read file "):
        if score == "vqa":
            score_vqa_files(CORPUS_DIR / "ok_vqa_questions.json", CORPUS_DIR / "ok_vqa_annotations.json", missing)
        else:
            score_caption_files(CORPUS_DIR / "ok_captions.json", missing)


# ----------------------------------------------------------------------------- runs that meet bad samples
def _vqa_v2_split(scenes_root: Path, split: str, image_root: Path, **extra) -> dict:
    from mmadapt.data.synthetic.scenes import read_manifest

    entry = read_manifest(scenes_root)["splits"][split]
    return {"format": "vqa_v2", "questions": str(scenes_root / entry["files"]["questions"]),
            "annotations": str(scenes_root / entry["files"]["annotations"]), "image_root": str(image_root),
            "image_template": entry["image_template"], **extra}


def _images_with_bad_ones(scenes_root: Path, split: str, target: Path, bad: list[str]) -> list[Path]:
    """A copy of ``split``'s images in ``target`` whose first ``len(bad)`` images (by file name, i.e. by image id)
    hold the bytes of the corpus files ``bad``; returns the replaced paths."""
    shutil.copytree(scenes_root / "images" / split, target)
    victims = sorted(target.iterdir())[: len(bad)]
    for victim, name in zip(victims, bad):
        victim.write_bytes((CORPUS_DIR / name).read_bytes())
    return victims


def test_vqa_eval_records_unreadable_images_and_scores_the_rest(model, config, scenes_root, tmp_path):
    victims = _images_with_bad_ones(scenes_root, "val", tmp_path / "images",
                                    ["image_empty.png", "image_text.png", "image_bad_header.png"])
    config.tasks = {"vqa": Config.from_dict({"tasks": {"vqa": {
        "eval": _vqa_v2_split(scenes_root, "val", tmp_path / "images"), "max_new_tokens": 3}}}).tasks["vqa"]}
    scores = mmadapt.evaluate(model, config, out_dir=tmp_path / "eval")["vqa"]

    errors = json.loads((tmp_path / "eval" / "vqa_errors.json").read_text())
    assert len(errors) == 3 * 5  # five questions per image
    by_image = {e["image"]: e["error"] for e in errors}
    assert set(by_image) == {str(v) for v in victims}
    assert by_image[str(victims[0])] == f"{victims[0]}: empty file (0 bytes)"
    assert by_image[str(victims[1])] == f"{victims[1]}: not a recognised image file (unknown format)"
    assert "corrupt PNG header" in by_image[str(victims[2])]
    results = json.loads((tmp_path / "eval" / "vqa_results.json").read_text())
    assert len(results) == 30 - 15 and {r["question_id"] for r in results}.isdisjoint(e["question_id"] for e in errors)
    assert len(scores["perQuestion"]) == 30  # unanswered questions count, as 0
    assert all(scores["perQuestion"][e["question_id"]] == 0 for e in errors)


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    from tiny import tiny_vit

    path = tmp_path_factory.mktemp("vit")
    encoder = tiny_vit(layers=1, hidden=32)
    encoder.model.save_pretrained(path)
    encoder.processor.save_pretrained(path)
    return path


MEDIA = {
    "synthetic_video": ({"name": "video", "n_frames": 4, "image_size": 32, "patch_size": 8, "tubelet_size": 2},
                        ["video_truncated.mp4", "video_no_moov.mp4", "video_empty.mp4", "video_text.mp4"]),
    "synthetic_audio": ({"name": "audio", "n_mels": 64, "max_frames": 100},
                        ["audio_truncated.wav", "audio_no_samples.wav", "audio_nan.wav", "audio_text.wav"]),
    "synthetic_points": ({"name": "point_cloud", "n_points": 64, "n_groups": 4, "group_size": 8, "hidden": 8,
                          "position_hidden": 8}, ["points_nan.ply", "points_zero.ply", "points_truncated.ply"]),
}


@pytest.mark.parametrize("fmt", list(MEDIA))
def test_classification_eval_records_bad_clips_and_carries_on(fmt, encoder_dir, tmp_path):
    """Bad clips / waveforms / clouds from the corpus in an eval manifest beside good ones: each is recorded in
    ``classification_errors.json`` with its loader's message, the good ones are scored."""
    tokenizer, bad = MEDIA[fmt]
    data = tmp_path / "data"
    ds = {"format": fmt, "root": str(data), "split": "train", "n_samples": 4, "seed": 0}
    cfg = Config.from_dict({
        "model": {"assembly": "adapted_encoder", "encoder": {"name": str(encoder_dir), "kind": "hf_vit"},
                  "tokenizer": tokenizer},
        "tasks": {"classification": {"train": ds}}, "eval": {"batch_size": 3}, "output_dir": str(tmp_path / "run")})
    tasks = mmadapt.build_tasks(cfg)
    model = mmadapt.build_model(cfg, tasks)

    good = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()][:2]
    for name in bad:
        shutil.copy(CORPUS_DIR / name, data / name)
    label = good[0]["label"]
    (data / "eval.jsonl").write_text("".join(json.dumps(row) + "\n" for row in
                                             [good[0], *({"path": n, "label": label} for n in bad), good[1]]))
    cfg.tasks["classification"].eval = make_dataset("manifest", annotations=str(data / "eval.jsonl"))
    scores = mmadapt.evaluate(model, cfg, out_dir=tmp_path / "eval")["classification"]

    assert scores["n_scored"] == 2 and scores["n_errors"] == len(bad)
    errors = json.loads((tmp_path / "eval" / "classification_errors.json").read_text())
    assert [e["index"] for e in errors] == list(range(1, 1 + len(bad)))
    for error, name in zip(errors, bad):  # the tokenizer's load gives the loader's own message
        assert error["source"] == str(data / name)
        assert re.fullmatch(message_pattern(CORPUS[name], data / name), error["error"]), error["error"]
    predictions = [json.loads(line) for line in (tmp_path / "eval" / "classification_predictions.jsonl").open()]
    assert [p["source"] for p in predictions] == [str(data / good[0]["path"]), str(data / good[1]["path"])]


def test_training_skips_a_corrupt_image_logs_it_finishes_and_resumes(scenes_root, tmp_path):
    """A corrupt training image: its examples are dropped from their batches and listed under ``skipped`` in
    ``log.jsonl``; the run finishes, and ``--resume`` of that run directory picks up from its checkpoint."""
    from mmadapt.api import train

    [victim] = _images_with_bad_ones(scenes_root, "train", tmp_path / "images", ["image_truncated.jpg"])
    run = tmp_path / "run"

    def config(max_steps: int) -> Config:
        cfg = tiny_config(scenes_root, run, max_steps=max_steps, save_every=2, batch_size=8)
        # the first 8 questions: 5 about the corrupt image, 3 about the next one; every step sees all 8
        cfg.tasks = {"vqa": Config.from_dict({"tasks": {"vqa": {
            "train": _vqa_v2_split(scenes_root, "train", tmp_path / "images", limit=8)}}}).tasks["vqa"]}
        return cfg

    first = train(config(2), model=make_model(config(2)), quiet=True)
    assert [r["step"] for r in first.records] == [1, 2]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    for record in log:
        assert len(record["skipped"]) == 5
        assert all(s == f"{victim}: cannot decode image (truncated file)" for s in record["skipped"])
    assert (run / "checkpoints" / "step-2").is_dir()

    resumed = train(config(4), model=make_model(config(4)), resume=True, quiet=True)
    assert [r["step"] for r in resumed.records] == [3, 4]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all(len(r["skipped"]) == 5 for r in log)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-2", "step-4"]
