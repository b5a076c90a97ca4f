"""The PASCAL-Context multi-task layout reader (a tiny tree written here by hand, png and .mat labels, missing
and broken files) and the synthetic dense scene set written in that layout (determinism, label consistency,
read back by the same reader)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
from PIL import Image
from scipy import ndimage

from mmadapt.data.formats.pascal_context import (
    PASCAL_PARTS_CLASSES,
    PASCAL_SEMSEG_CLASSES,
    TASK_DIRS,
    TASKS,
    DenseSample,
    class_names,
    decode_png_normals,
    encode_png_normals,
    load_dense_image,
    load_dense_labels,
    read_dense_split,
)
from mmadapt.data.synthetic.dense import (
    PARTS_CLASSES,
    SEMSEG_CLASSES,
    SHAPES,
    ensure_dense_dataset,
    render_dense_scene,
    write_dense_dataset,
)
from mmadapt.errors import ConfigError, DataError

H, W = 4, 6
IDS = ["2008_000001", "2008_000002", "2008_000003"]
SEMSEG = np.array([[0, 0, 15, 15, 255, 255],
                   [0, 15, 15, 15, 255, 255],
                   [0, 0, 9, 9, 0, 0],
                   [20, 20, 9, 9, 0, 0]], dtype=np.uint8)  # fmt: skip
PARTS = np.array([[0, 0, 1, 1, 255, 255],
                  [0, 2, 2, 3, 255, 255],
                  [0, 0, 4, 5, 0, 0],
                  [0, 0, 6, 6, 0, 0]], dtype=np.uint8)  # fmt: skip
SALIENCY = np.array([[0, 10, 127, 128, 200, 255]] * H, dtype=np.uint8)  # > 127 is salient


def unit_normals(rng, shape):
    v = rng.normal(size=(*shape, 3))
    v[..., 2] = np.abs(v[..., 2]) + 0.2  # facing the viewer, like real normals
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def angle_deg(a, b):
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1, 1)))


def png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def tree(tmp_path):
    """Three ids: parts as png (1), as .mat (2), absent (3); normals as png (1, 3) and .mat (2)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "PASCALContext"
    normals = unit_normals(rng, (H, W))
    normals_rgb = encode_png_normals(normals)
    normals_rgb[0, 0] = 0  # invalid: all zero
    normals_rgb[0, 1] = 128  # invalid: mid grey (norm ~0.007)
    for i, sample_id in enumerate(IDS):
        png(root / "JPEGImages" / f"{sample_id}.jpg", rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
        png(root / "semseg/pascal-context" / f"{sample_id}.png", SEMSEG)
        png(root / "sal_distill" / f"{sample_id}.png", SALIENCY)
        if i == 0:
            png(root / "human_parts" / f"{sample_id}.png", PARTS)
        elif i == 1:
            scipy.io.savemat(root / "human_parts" / f"{sample_id}.mat", {"parts": PARTS.astype(np.float64)})
        if i == 1:
            scipy.io.savemat(root / "normals_distill" / f"{sample_id}.mat", {"normals": normals * 3.0})
        else:
            png(root / "normals_distill" / f"{sample_id}.png", normals_rgb)
    (root / "ImageSets/Context").mkdir(parents=True)
    (root / "ImageSets/Context/val.txt").write_text("\n".join(IDS) + "\n\n")
    return root, normals


def test_read_split_finds_each_tasks_file(tree):
    root, _ = tree
    samples = read_dense_split(root, "val", TASKS)
    assert [s.id for s in samples] == IDS
    assert samples[0].image == root / "JPEGImages" / f"{IDS[0]}.jpg"
    assert samples[0].labels["parts"].name == f"{IDS[0]}.png"
    assert samples[1].labels["parts"].name == f"{IDS[1]}.mat"
    assert "parts" not in samples[2].labels  # no people: normal, not an error
    assert samples[1].labels["normals"].suffix == ".mat"
    assert set(samples[2].labels) == {"semseg", "saliency", "normals"}
    only = read_dense_split(root, "val", ["semseg"])
    assert set(only[0].labels) == {"semseg"}
    assert TASK_DIRS["semseg"][0] == "semseg/pascal-context" and ".mat" in TASK_DIRS["normals"]


def test_load_labels_values(tree):
    root, normals = tree
    s1, s2, s3 = read_dense_split(root, "val", TASKS)
    labels = load_dense_labels(s1, TASKS)
    assert labels["semseg"].dtype == np.int64 and labels["semseg"].shape == (H, W)
    np.testing.assert_array_equal(labels["semseg"], SEMSEG)
    np.testing.assert_array_equal(labels["parts"], PARTS)
    np.testing.assert_array_equal(labels["saliency"], np.array([[0, 0, 0, 1, 1, 1]] * H))
    n = labels["normals"]
    assert n.dtype == np.float32 and n.shape == (H, W, 3)
    np.testing.assert_array_equal(n[0, 0], 0) and np.testing.assert_array_equal(n[0, 1], 0)
    valid = np.linalg.norm(n, axis=-1) > 0
    assert valid.sum() == H * W - 2
    np.testing.assert_allclose(np.linalg.norm(n[valid], axis=-1), 1, atol=1e-5)
    assert angle_deg(n[valid], normals[valid]).max() < 0.7  # 8-bit quantisation only

    mat = load_dense_labels(s2, TASKS)
    np.testing.assert_array_equal(mat["parts"], PARTS)
    np.testing.assert_allclose(mat["normals"], normals, atol=1e-6)  # renormalised from 3x length

    absent = load_dense_labels(s3, ["parts", "semseg"])
    assert absent["parts"].shape == (H, W) and (absent["parts"] == 255).all()
    no_normals = DenseSample(s3.id, s3.image, {})
    assert (load_dense_labels(no_normals, ["normals"])["normals"] == 0).all()


def test_resize_nearest_and_image(tree):
    root, _ = tree
    s1 = read_dense_split(root, "val", TASKS)[0]
    labels = load_dense_labels(s1, TASKS, size=(8, 12))
    np.testing.assert_array_equal(labels["semseg"], SEMSEG.repeat(2, 0).repeat(2, 1))
    np.testing.assert_array_equal(labels["parts"], PARTS.repeat(2, 0).repeat(2, 1))
    n = labels["normals"]
    assert n.shape == (8, 12, 3)
    norms = np.linalg.norm(n, axis=-1)
    assert ((np.abs(norms - 1) < 1e-5) | (norms == 0)).all() and (norms == 0).sum() == 8
    assert load_dense_labels(DenseSample("x", s1.image, {}), ["semseg"], size=(3, 5))["semseg"].shape == (3, 5)
    image = load_dense_image(s1)
    assert image.mode == "RGB" and image.size == (W, H)
    assert load_dense_image(s1, size=(8, 12)).size == (12, 8)


def test_png_normals_round_trip():
    rng = np.random.default_rng(1)
    normals = unit_normals(rng, (32, 32))
    normals[0, :4] = 0  # invalid stays invalid
    decoded = decode_png_normals(encode_png_normals(normals))
    valid = np.linalg.norm(normals, axis=-1) > 0
    assert (np.linalg.norm(decoded, axis=-1)[~valid] == 0).all()
    np.testing.assert_allclose(np.linalg.norm(decoded[valid], axis=-1), 1, atol=1e-5)
    assert angle_deg(decoded[valid], normals[valid]).max() < 0.7
    np.testing.assert_allclose(decode_png_normals(np.array([[[128, 128, 255]]], np.uint8))[0, 0], [0, 0, 1],
                               atol=0.01)
    np.testing.assert_array_equal(decode_png_normals(np.array([[[127, 128, 129]]], np.uint8)), 0)


def test_class_names(tree):
    root, _ = tree
    assert class_names(root, "semseg") == list(PASCAL_SEMSEG_CLASSES) and len(PASCAL_SEMSEG_CLASSES) == 21
    assert class_names(root, "parts") == list(PASCAL_PARTS_CLASSES) and len(PASCAL_PARTS_CLASSES) == 7
    assert class_names(root, "saliency") == ["background", "salient"]
    with pytest.raises(ConfigError, match="normals"):
        class_names(root, "normals")
    with pytest.raises(ConfigError, match="depth"):
        class_names(root, "depth")
    (root / "mmadapt_dense.json").write_text(json.dumps({"tasks": {"parts": {"classes": ["bg", "a", "b"]}}}))
    assert class_names(root, "parts") == ["bg", "a", "b"]
    assert class_names(root, "semseg") == list(PASCAL_SEMSEG_CLASSES)
    (root / "mmadapt_dense.json").write_text('{"tasks": {"parts": {"classes": []}}}')
    with pytest.raises(DataError, match="mmadapt_dense.json.*tasks.parts.classes"):
        class_names(root, "parts")
    (root / "mmadapt_dense.json").write_text("{not json")
    with pytest.raises(DataError, match="mmadapt_dense.json"):
        class_names(root, "semseg")


def test_split_errors(tree, tmp_path):
    root, _ = tree
    with pytest.raises(DataError, match="nowhere.*not found"):
        read_dense_split(tmp_path / "nowhere", "val", TASKS)
    with pytest.raises(DataError, match=r"train\.txt: split list not found"):
        read_dense_split(root, "train", TASKS)
    (root / "ImageSets/Context/empty.txt").write_text("\n \n")
    with pytest.raises(DataError, match=r"empty\.txt: split list is empty"):
        read_dense_split(root, "empty", TASKS)
    (root / "ImageSets/Context/twice.txt").write_text(f"{IDS[0]}\n{IDS[1]}\n{IDS[0]}\n")
    with pytest.raises(DataError, match=r"twice\.txt:3: id '2008_000001' repeats line 1"):
        read_dense_split(root, "twice", TASKS)
    with pytest.raises(ConfigError, match="depth"):
        read_dense_split(root, "val", ["semseg", "depth"])
    ghosts = [f"ghost_{i}" for i in range(7)]
    (root / "ImageSets/Context/ghosts.txt").write_text("\n".join([IDS[0], *ghosts]))
    with pytest.raises(DataError, match=r"JPEGImages: 7 image\(s\) of split 'ghosts' not found.*'ghost_0'.*"
                                        r"'ghost_4' and 2 more"):
        read_dense_split(root, "ghosts", TASKS)
    for f in (root / "sal_distill").iterdir():
        f.unlink()
    (root / "sal_distill").rmdir()
    with pytest.raises(DataError, match="sal_distill: saliency label folder not found"):
        read_dense_split(root, "val", TASKS)
    assert len(read_dense_split(root, "val", ["semseg", "parts"])) == 3  # other tasks still read


def test_broken_label_files(tree):
    root, _ = tree
    s1 = read_dense_split(root, "val", TASKS)[0]
    semseg = s1.labels["semseg"]

    semseg.write_bytes(b"")
    with pytest.raises(DataError, match=f"{semseg.name}: empty file"):
        load_dense_labels(s1, ["semseg"])
    semseg.write_bytes(b"this is not a png at all")
    with pytest.raises(DataError, match=f"{semseg.name}: not a recognised image"):
        load_dense_labels(s1, ["semseg"])

    big = np.random.default_rng(0).integers(0, 21, (H * 40, W * 40), dtype=np.uint8)
    png(semseg, big)
    data = semseg.read_bytes()
    semseg.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=f"{semseg.name}: cannot decode semseg label"):
        load_dense_labels(s1, ["semseg"])
    png(semseg, big)
    with pytest.raises(DataError, match=rf"{semseg.name}: semseg label is 240x160 \(W x H\) but its image "
                                        rf"{s1.image.name} is 6x4"):
        load_dense_labels(s1, ["semseg"])
    png(semseg, np.zeros((H, W, 3), np.uint8))
    with pytest.raises(DataError, match=f"{semseg.name}: semseg label has image mode 'RGB'"):
        load_dense_labels(s1, ["semseg"])

    s2 = read_dense_split(root, "val", TASKS)[1]
    mat = s2.labels["normals"]
    scipy.io.savemat(mat, {"normals": np.ones((H, W))})
    with pytest.raises(DataError, match=rf"{mat.name}: .mat normals: expected a \[H, W, 3\]"):
        load_dense_labels(s2, ["normals"])
    mat.write_bytes(b"MATLAB 5.0 garbage" * 3)
    with pytest.raises(DataError, match=f"{mat.name}: cannot read .mat normals label"):
        load_dense_labels(s2, ["normals"])
    parts = s2.labels["parts"]
    scipy.io.savemat(parts, {"a": np.zeros((H, W)), "b": np.zeros((H, W))})
    with pytest.raises(DataError, match=f"{parts.name}: .mat parts label: expected a variable named"):
        load_dense_labels(s2, ["parts"])


# ---------------------------------------------------------------------------------------- synthetic set
def test_synthetic_writer_is_deterministic(tmp_path):
    a = write_dense_dataset(tmp_path / "a", "train", 6, seed=3, size=32)
    write_dense_dataset(tmp_path / "b", "train", 6, seed=3, size=32)
    assert a == tmp_path / "a/ImageSets/Context/train.txt"
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 6 * 5 + 2
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    write_dense_dataset(tmp_path / "c", "train", 6, seed=4, size=32)
    assert (tmp_path / "a/JPEGImages/train_00000.jpg").read_bytes() != \
        (tmp_path / "c/JPEGImages/train_00000.jpg").read_bytes()
    with pytest.raises(ConfigError, match="n_samples"):
        write_dense_dataset(tmp_path / "d", "train", 0, seed=0)


def test_synthetic_labels_are_consistent():
    seen = set()
    for index in range(40):
        scene = render_dense_scene(0, "train", index, size=64)
        seen.update(scene.shapes)
        assert 1 <= len(scene.shapes) <= 3
        background = scene.instances < 0
        np.testing.assert_array_equal(scene.semseg == 0, background)
        np.testing.assert_array_equal(scene.parts == 0, background)
        np.testing.assert_array_equal(scene.normals[background], np.tile([0, 0, 1], (background.sum(), 1)))
        np.testing.assert_allclose(np.linalg.norm(scene.normals, axis=-1), 1, atol=1e-5)
        assert (scene.normals[..., 2] > 0).all()
        # semseg is the visible object's shape
        for k, shape in enumerate(scene.shapes):
            assert (scene.semseg[scene.instances == k] == SHAPES.index(shape) + 1).all()
        # saliency: exactly the pixels of the largest visible object, one connected region
        salient_ids = np.unique(scene.instances[scene.saliency == 1])
        assert len(salient_ids) == 1 and salient_ids[0] >= 0
        counts = np.bincount(scene.instances[~background], minlength=len(scene.shapes))
        assert salient_ids[0] == counts.argmax()
        np.testing.assert_array_equal(scene.saliency == 1, scene.instances == salient_ids[0])
        assert ndimage.label(scene.saliency)[1] == 1
        # parts: quadrants, so the top-left part is left of and above the top-right / bottom-left parts
        for k in range(len(scene.shapes)):
            rows, cols = np.nonzero(scene.instances == k)
            quads = scene.parts[rows, cols]
            for left, right in ((1, 2), (3, 4)):
                if (quads == left).any() and (quads == right).any():
                    assert cols[quads == left].max() < cols[quads == right].min()
            for top, bottom in ((1, 3), (2, 4)):
                if (quads == top).any() and (quads == bottom).any():
                    assert rows[quads == top].max() < rows[quads == bottom].min()
    assert seen == set(SHAPES)


def test_synthetic_pyramid_and_box_faces_are_planar():
    checked = 0
    for index in range(30):
        scene = render_dense_scene(1, "val", index, size=64)
        for k, shape in enumerate(scene.shapes):
            if shape not in ("pyramid", "box"):
                continue
            own = scene.normals[scene.instances == k]
            if not len(own):
                continue
            distinct = np.unique(np.round(own, 5), axis=0)
            # pyramid: its 4 faces; box: flat top + 4 bevels
            assert len(distinct) <= (4 if shape == "pyramid" else 5), (index, shape, distinct)
            if shape == "pyramid":
                assert (distinct[:, 2] < 0.999).all()  # no flat part
                checked += 1
    assert checked >= 3


def test_synthetic_set_reads_back(tmp_path):
    split_list = ensure_dense_dataset(tmp_path, "val", 5, seed=2, size=48)
    assert ensure_dense_dataset(tmp_path, "val", 5, seed=2, size=48) == split_list  # reused
    assert split_list.read_text().split() == [f"val_{i:05d}" for i in range(5)]
    assert class_names(tmp_path, "semseg") == list(SEMSEG_CLASSES) == ["background", *SHAPES]
    assert class_names(tmp_path, "parts") == list(PARTS_CLASSES)
    meta = json.loads((tmp_path / "mmadapt_dense.json").read_text())
    assert meta["version"] >= 1 and meta["description"]
    samples = read_dense_split(tmp_path, "val", TASKS)
    assert len(samples) == 5 and all(set(s.labels) == set(TASKS) for s in samples)
    for index, sample in enumerate(samples):
        scene = render_dense_scene(2, "val", index, size=48)
        labels = load_dense_labels(sample, TASKS)
        np.testing.assert_array_equal(labels["semseg"], scene.semseg)
        np.testing.assert_array_equal(labels["parts"], scene.parts)
        np.testing.assert_array_equal(labels["saliency"], scene.saliency)
        valid = np.linalg.norm(labels["normals"], axis=-1) > 0
        assert valid.all()
        assert angle_deg(labels["normals"], scene.normals).max() < 0.7
        np.testing.assert_allclose(labels["normals"][scene.semseg == 0], [[0, 0, 1]] * (scene.semseg == 0).sum(),
                                   atol=0.01)
        image = np.asarray(load_dense_image(sample), dtype=np.float64)
        assert image.shape == (48, 48, 3)
        assert np.abs(image - scene.image).mean() < 5  # JPEG quality 95 (of pixel noise sd ~5)
        # the objects are visible: foreground and ground differ in colour
        fg, bg = image[scene.semseg > 0].mean(0), image[scene.semseg == 0].mean(0)
        assert np.abs(fg - bg).max() > 20
