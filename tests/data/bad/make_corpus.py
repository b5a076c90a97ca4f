"""Write the bad-input corpus: small broken files, one or more for every loader and format mmadapt reads.

Run from anywhere: ``python tests/data/bad/make_corpus.py [OUT_DIR]`` (default: this folder). It writes every
file of :data:`CORPUS` and ``README.md`` (the table: file → what is wrong → which loader → what the user sees),
and nothing else. Commit the script, the files and the README together.

Deterministic: every byte comes from the constants below (no randomness, no clock, no host name). Most files
are built byte by byte here (text, JSON, WAV, PLY, ``.npy``, PNG with stored, uncompressed zlib blocks), so
they are identical on any machine. A few need a codec library, whose output is fixed for one version of it
but may change with another: the JPEG (Pillow / libjpeg), the mp4 clips (PyAV / libx264) and the HDF5 files
(h5py). Those entries have ``exact=False``: ``tests/test_bad_inputs.py`` checks that the script reproduces
every other file byte for byte, and that these only give the same error.

The "what the user sees" column is the exact error, with ``{file}`` standing for the path the loader was
given and ``…`` for text that comes from a third-party parser (JSON, pandas, libsndfile); the tests match
each loader's message against it, so the README cannot drift from the code.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import sys
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Bad:
    name: str  # file name in this folder
    problem: str  # what is wrong with it
    loader: str  # which loader reads it (a key of LOADERS in tests/test_bad_inputs.py; README's column)
    error: str  # what the user sees: "{file}" is the path, "…" any text
    make: Callable[[], bytes]
    exact: bool = True  # the bytes do not depend on a codec library's version


# ---------------------------------------------------------------------------------------------- builders
def text(content: str, encoding: str = "utf-8") -> Callable[[], bytes]:
    return lambda: content.encode(encoding)


def as_json(obj: object) -> Callable[[], bytes]:
    return lambda: json.dumps(obj, indent=1).encode("utf-8")


def empty() -> bytes:
    return b""


def _gradient(size: int = 16) -> bytes:
    """RGB pixels (rows top to bottom) of a ``size``² gradient: red grows to the right, green downwards."""
    return bytes(channel for y in range(size) for x in range(size) for channel in (x * 15 % 256, y * 15 % 256, 128))


def _png(size: int = 16) -> bytes:
    """The gradient as a PNG whose IDAT holds stored (uncompressed) zlib blocks: the same bytes everywhere,
    whatever the zlib build."""
    pixels = _gradient(size)
    rows = b"".join(b"\0" + pixels[y * size * 3 : (y + 1) * size * 3] for y in range(size))  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 0))
            + chunk(b"IEND", b""))


def png_truncated() -> bytes:
    data = _png()
    return data[: len(data) // 2]  # cut inside IDAT


def png_bad_header() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"\0\0\0\x0dIHDX" + b"\xff" * 20


def jpeg_truncated() -> bytes:
    from PIL import Image

    image = Image.frombytes("RGB", (16, 16), _gradient(16))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    data = out.getvalue()
    return data[: len(data) * 3 // 5]


def _mp4(faststart: bool) -> bytes:
    """8 frames of 32 × 32 H.264 (libx264, one thread, no mbtree: see mmadapt.io.video) at 8 fps, as mp4 bytes."""
    import numpy as np

    frames = np.zeros((8, 32, 32, 3), dtype=np.uint8)
    for t in range(8):
        frames[t, :, :, 0] = 30 * t
        frames[t, 8:24, 4 * t : 4 * t + 8, 1] = 255
    options = {"movflags": "faststart"} if faststart else {}
    with tempfile.TemporaryDirectory() as tmp:  # faststart rewrites the file in a second pass: a real file
        path = os.path.join(tmp, "clip.mp4")
        _encode(path, frames, options)
        with open(path, "rb") as f:
            return f.read()


def _encode(path: str, frames, options: dict[str, str]) -> None:
    import av

    x264 = "libx264" in av.codecs_available  # as mmadapt.io.video.write_video: MPEG-4 Part 2 without it
    codec, codec_options = ("libx264", {"threads": "1", "x264-params": "mbtree=0"}) if x264 else ("mpeg4", {})
    with av.open(path, mode="w", format="mp4", options=options) as container:
        stream = container.add_stream(codec, rate=8, options=codec_options)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def mp4_truncated_stream() -> bytes:
    data = _mp4(faststart=True)  # moov first: the file opens, the frames run out
    return data[: len(data) * 3 // 4]


def mp4_without_moov() -> bytes:
    data = _mp4(faststart=False)  # moov last: cut it off and the file cannot be opened
    return data[: len(data) // 2]


def _wav(samples: bytes, declared: int | None = None, fmt_tag: int = 1, bits: int = 16, rate: int = 16000) -> bytes:
    """A mono RIFF/WAVE file; ``declared`` is the data chunk's size as the header says (default: the truth)."""
    block = bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, 1, rate, rate * block, block, bits)
    size = len(samples) if declared is None else declared
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + samples
    return b"RIFF" + struct.pack("<I", len(body)) + body  # the RIFF size counts everything after itself


def _sine(n: int) -> bytes:
    return b"".join(struct.pack("<h", round(8000 * math.sin(2 * math.pi * 440 * i / 16000))) for i in range(n))


def wav_truncated() -> bytes:
    return _wav(_sine(500), declared=3200)  # 1600 samples promised, 500 there


def wav_no_samples() -> bytes:
    return _wav(b"")


def wav_nan() -> bytes:
    samples = b"".join(struct.pack("<f", v) for v in [0.0, 0.5, float("nan"), -0.5] * 100)
    return _wav(samples, fmt_tag=3, bits=32)


def _npy(array_text: str) -> Callable[[], bytes]:
    def make() -> bytes:
        import numpy as np

        out = io.BytesIO()
        np.save(out, np.array(json.loads(array_text), dtype=np.float32).reshape(-1, 3))
        return out.getvalue()

    return make


def npy_pickled() -> bytes:
    import numpy as np

    out = io.BytesIO()
    np.save(out, np.array([[{"x": 1.0}, None, "z"]], dtype=object), allow_pickle=True)
    return out.getvalue()


def ply_binary_truncated() -> bytes:
    header = (b"ply\nformat binary_little_endian 1.0\nelement vertex 10\n"
              b"property float x\nproperty float y\nproperty float z\nend_header\n")
    return header + b"".join(struct.pack("<3f", i, i + 0.5, -i) for i in range(3))


def _h5(datasets: dict[str, list]) -> Callable[[], bytes]:
    def make() -> bytes:
        import h5py
        import numpy as np

        out = io.BytesIO()
        with h5py.File(out, "w", libver="earliest") as f:
            for key, value in datasets.items():
                f.create_dataset(key, data=np.array(value, dtype=np.float32 if key == "data" else np.int64),
                                 track_times=False)
        return out.getvalue()

    return make


# ------------------------------------------------------------------------------------------ companions
# Well-formed files the broken ones are scored against (names start with "ok_"; not part of the corpus table).
OK_QUESTIONS = {"data_subtype": "val2014", "questions": [
    {"image_id": 1, "question": "What colour is the disc?", "question_id": 10},
    {"image_id": 2, "question": "How many squares?", "question_id": 20}]}
OK_ANNOTATIONS = {"data_subtype": "val2014", "annotations": [
    {"question_id": 10, "image_id": 1, "question_type": "what color", "answer_type": "other",
     "multiple_choice_answer": "red", "answers": [{"answer": "red", "answer_id": k} for k in range(1, 11)]},
    {"question_id": 20, "image_id": 2, "question_type": "how many", "answer_type": "number",
     "multiple_choice_answer": "2", "answers": [{"answer": "2", "answer_id": k} for k in range(1, 11)]}]}
OK_CAPTIONS = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
               "annotations": [{"image_id": 1, "id": 1, "caption": "a red disc."},
                               {"image_id": 2, "id": 2, "caption": "two squares."}]}
COMPANIONS: dict[str, Callable[[], bytes]] = {
    "ok_vqa_questions.json": as_json(OK_QUESTIONS),
    "ok_vqa_annotations.json": as_json(OK_ANNOTATIONS),
    "ok_captions.json": as_json(OK_CAPTIONS),
}

# ---------------------------------------------------------------------------------------------- corpus
LATIN1 = "\xe9"  # "é": one byte 0xE9 in latin-1, never valid UTF-8 before an ASCII byte
VQA_Q = OK_QUESTIONS["questions"]
CORPUS: list[Bad] = [
    # -- images
    Bad("image_empty.png", "zero bytes", "load_image", "DataError: {file}: empty file (0 bytes)", empty),
    Bad("image_text.png", "a text file named .png", "load_image",
        "DataError: {file}: not a recognised image file (unknown format)", text("this is not a picture\n")),
    Bad("image_truncated.png", "a PNG cut in the middle of its pixel data", "load_image",
        "DataError: {file}: cannot decode image (truncated file)", png_truncated),
    Bad("image_bad_header.png", "PNG magic bytes, then garbage instead of the IHDR chunk", "load_image",
        "DataError: {file}: cannot decode image (truncated or corrupt PNG header)", png_bad_header),
    Bad("image_truncated.jpg", "a JPEG cut at 60 % of its bytes", "load_image",
        "DataError: {file}: cannot decode image (truncated file)", jpeg_truncated, exact=False),
    # -- video
    Bad("video_empty.mp4", "zero bytes", "load_video", "DataError: {file}: empty file (0 bytes)", empty),
    Bad("video_text.mp4", "a text file named .mp4", "load_video",
        "DataError: {file}: not a video file (unrecognised format)", text("this is not a video\n")),
    Bad("video_truncated.mp4", "an mp4 (index first) cut at 75 %: its frames run out", "load_video",
        "DataError: {file}: cannot … video (truncated or corrupt …)", mp4_truncated_stream, exact=False),
    Bad("video_no_moov.mp4", "an mp4 (index last) cut in half: no index", "load_video",
        "DataError: {file}: cannot open video (truncated or corrupt MP4 file)", mp4_without_moov, exact=False),
    Bad("video_unsupported.txt", "a video file name with an extension no video loader reads", "load_video",
        "DataError: {file}: unsupported video extension '.txt', expected one of (…)", text("frames\n")),
    # -- audio
    Bad("audio_empty.wav", "zero bytes", "load_audio", "DataError: {file}: empty file (0 bytes)", empty),
    Bad("audio_text.wav", "a text file named .wav", "load_audio",
        "DataError: {file}: not a recognised audio file (…)", text("this is not a sound\n")),
    Bad("audio_truncated.wav", "the header declares 3200 bytes of samples, 1000 are there", "load_audio",
        "DataError: {file}: truncated WAV file (the header declares 3200 bytes of samples, 1000 are there)",
        wav_truncated),
    Bad("audio_no_samples.wav", "a valid header with an empty data chunk", "load_audio",
        "DataError: {file}: audio file holds no samples", wav_no_samples),
    Bad("audio_nan.wav", "32-bit float samples, some NaN", "load_audio",
        "DataError: {file}: audio holds NaN or infinite samples", wav_nan),
    # -- point clouds
    Bad("points_empty.xyz", "zero bytes", "load_point_cloud", "DataError: {file}: empty file (0 bytes)", empty),
    Bad("points_nan.xyz", "a NaN coordinate", "load_point_cloud",
        "DataError: {file}: non-finite value nan at point 1, column 2", text("0 0 0\n1 1 nan\n2 2 2\n")),
    Bad("points_nan.npy", "a NaN coordinate in a float32 [3, 3] array", "load_point_cloud",
        "DataError: {file}: non-finite value nan at point 2, column 0",
        _npy("[0, 0, 0, 1, 1, 1, NaN, 2, 2]")),
    Bad("points_nan.ply", "an ascii PLY with an infinite coordinate", "load_point_cloud",
        "DataError: {file}: non-finite value inf at point 0, column 1",
        text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"
             "end_header\n0 inf 0\n1 1 1\n")),
    Bad("points_zero.ply", "a PLY with 0 vertices", "load_point_cloud",
        "DataError: {file}: point cloud has 0 points",
        text("ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\nproperty float z\n"
             "end_header\n")),
    Bad("points_zero.npy", "a float32 array of shape [0, 3]", "load_point_cloud",
        "DataError: {file}: point cloud has 0 points", _npy("[]")),
    Bad("points_two_columns.xyz", "points with 2 coordinates", "load_point_cloud",
        "DataError: {file}: points need at least 3 columns (x, y, z), got 2", text("0 0\n1 1\n")),
    Bad("points_bad_value.xyz", "a word where a coordinate should be", "load_point_cloud",
        "DataError: {file}: line 2: not a number: 'abc'", text("0 0 0\n1 abc 1\n")),
    Bad("points_truncated.ply", "a binary PLY that declares 10 vertices and holds 3", "load_point_cloud",
        "DataError: {file}: truncated PLY: 10 vertices need 120 bytes, the body has 36", ply_binary_truncated),
    Bad("points_pickled.npy", "an object array (needs pickle to load)", "load_point_cloud",
        "DataError: {file}: not a readable .npy array (…allow_pickle=False…)", npy_pickled),
    Bad("points_latin1.xyz", "a latin-1 comment (byte 0xE9, not UTF-8)", "load_point_cloud",
        "DataError: {file}: not a text file (invalid continuation byte at byte 5)",
        text(f"# caf{LATIN1} points\n0 0 0\n1 1 1\n", "latin-1")),
    Bad("points_bad_face.off", "an OFF face that names vertex 7 of 3", "load_point_cloud",
        "DataError: {file}: line 6: OFF face refers to a vertex outside [0, 3) ([0, 1, 7])",
        text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n")),
    Bad("points_unsupported.pcd", "a point cloud format mmadapt does not read", "load_point_cloud",
        "DataError: {file}: unsupported point cloud extension '.pcd' (expected one of .npy, .txt, .xyz, .ply, "
        ".off)", text("VERSION .7\n")),
    Bad("points_missing_label.h5", "an HDF5 file with 'data' but no 'label' dataset", "load_h5_point_clouds",
        "DataError: {file}: missing dataset 'label' (has: data)",
        _h5({"data": [[[0, 0, 0], [1, 1, 1]]]}), exact=False),
    Bad("points_nan.h5", "an HDF5 file with a NaN coordinate", "load_h5_point_clouds",
        "DataError: {file}: dataset 'data' has a non-finite coordinate in cloud 0, point 1",
        _h5({"data": [[[0, 0, 0], [1, float("nan"), 1]]], "label": [0]}), exact=False),
    Bad("points_text.h5", "a text file named .h5", "load_h5_point_clouds",
        "DataError: {file}: not a readable HDF5 file (…)", text("not hdf5\n")),
    # -- tables (schema: numeric x, categorical colour, target label)
    Bad("table_empty.csv", "zero bytes", "load_table", "DataError: {file}: empty file (0 bytes)", empty),
    Bad("table_missing_label.csv", "no 'label' column", "load_table",
        "DataError: {file}: missing column(s) 'label' (the table has: x, colour)",
        text("x,colour\n1.5,red\n2.5,blue\n")),
    Bad("table_non_numeric.csv", "text in the numeric column 'x'", "load_table",
        "DataError: {file}: column 'x' row 1 (CSV line 3): not a finite number: 'abc'",
        text("x,colour,label\n1.5,red,a\nabc,blue,b\n")),
    Bad("table_header_only.csv", "a header and no rows", "load_table",
        "DataError: {file}: table has no data rows", text("x,colour,label\n")),
    Bad("table_ragged.csv", "a row with more fields than the header", "load_table",
        "DataError: {file}: cannot parse CSV (…)", text("x,colour,label\n1.5,red,a\n2.5,blue,b,extra,more\n")),
    Bad("table_latin1.csv", "latin-1 text (byte 0xE9, not UTF-8)", "load_table",
        "DataError: {file}: not UTF-8 text (invalid continuation byte at byte 22, line 2)",
        text(f"x,colour,label\n1.5,ros{LATIN1},a\n", "latin-1")),
    Bad("table_text.parquet", "a CSV file named .parquet", "load_table",
        "DataError: {file}: cannot parse Parquet (…not a parquet file…)", text("x,colour,label\n1.5,red,a\n")),
    Bad("table_unsupported.tsv", "a table format mmadapt does not read", "load_table",
        "DataError: {file}: unsupported table extension '.tsv' (expected one of .csv, .parquet, .pq)",
        text("x\tcolour\tlabel\n")),
    # -- graphs
    Bad("graph_not_json.json", "not JSON", "load_graph",
        "DataError: {file}: invalid JSON at line 1 column 2 (…)", text("{nodes: [0, 1]}\n")),
    Bad("graph_edge_outside.json", "an edge to node 7 of a 3-node graph", "load_graph",
        "DataError: {file}: edges[1] = [0, 7] points outside [0, 3)",
        as_json({"num_nodes": 3, "edges": [[0, 1], [0, 7]]})),
    Bad("graph_unknown_node.json", "a node-link edge whose target is not a node", "load_graph",
        "DataError: {file}: links[0].target: 9 is not the id of a node in 'nodes'",
        as_json({"nodes": [{"id": 0}, {"id": 1}], "links": [{"source": 0, "target": 9}]})),
    Bad("graph_zero_nodes.json", "a graph of 0 nodes", "load_graph",
        "DataError: {file}: empty graph: num_nodes must be an int >= 1, got 0", as_json({"num_nodes": 0})),
    Bad("graph_ragged_features.json", "node features of different lengths", "load_graph",
        "DataError: {file}: node_features: expected one list of numbers per node, all of one length",
        as_json({"num_nodes": 2, "edges": [[0, 1]], "node_features": [[1.0, 2.0], [3.0]]})),
    Bad("graph_bad_line.edgelist", "a line that is not two integer node ids", "load_graph",
        "DataError: {file}: line 2: expected 'u v' with integer node ids, got 'a b'", text("0 1\na b\n")),
    Bad("graph_huge_node_id.edgelist", "an edge to node 2,000,000,000 (a 2-billion-node graph)", "load_graph",
        "DataError: {file}: 2000000001 nodes (an edge list numbers nodes 0 .. its largest id, 2000000000), "
        "more than max_nodes=4096", text("0 1\n1 2000000000\n")),
    Bad("graph_latin1.edgelist", "a latin-1 comment (byte 0xE9, not UTF-8)", "load_graph",
        "DataError: {file}: not UTF-8 text (invalid continuation byte at byte 5)",
        text(f"# caf{LATIN1} graph\n0 1\n", "latin-1")),
    Bad("graph_broken.graphml", "GraphML with an unclosed element", "load_graph",
        "DataError: {file}: cannot parse GraphML (…)",
        text('<?xml version="1.0"?>\n<graphml><graph edgedefault="undirected"><node id="a"></graph>\n')),
    # -- VQA v2
    Bad("vqa_not_json.json", "not JSON (a trailing comma)", "load_vqa",
        "DataError: {file}: invalid JSON at line 1 column 18 (…)", text('{"questions": [],}\n')),
    Bad("vqa_missing_questions.json", "no 'questions' key", "load_vqa",
        "DataError: {file}: questions missing", as_json({"data_subtype": "val2014", "question": []})),
    Bad("vqa_no_image_id.json", "a question without 'image_id'", "load_vqa",
        "DataError: {file}: questions[1].image_id missing",
        as_json({"data_subtype": "val2014", "questions": [VQA_Q[0], {"question": "Why?", "question_id": 20}]})),
    Bad("vqa_top_level_list.json", "a list where the questions object should be", "load_vqa",
        "DataError: {file}: expected a JSON object at the top level, got list", as_json(VQA_Q)),
    Bad("vqa_latin1.json", "latin-1 text (byte 0xE9, not UTF-8)", "load_vqa",
        "DataError: {file}: not UTF-8 text (invalid continuation byte at byte …)",
        text(json.dumps({"data_subtype": "val2014", "questions": [
            {"image_id": 1, "question": f"Caf{LATIN1}?", "question_id": 10}]}, ensure_ascii=False), "latin-1")),
    Bad("vqa_annotations_no_answers.json", "an annotation without 'answers' (for ok_vqa_questions.json)",
        "load_vqa+annotations", "DataError: {file}: annotations[0].answers missing",
        as_json({"data_subtype": "val2014", "annotations": [
            {k: v for k, v in OK_ANNOTATIONS["annotations"][0].items() if k != "answers"}]})),
    Bad("vqa_results_unknown_qid.json", "a result for question 999, which is not annotated", "score_vqa_files",
        "VQAFormatError: results file {file}: results[1].question_id 999 is not in annotations file …",
        as_json([{"question_id": 10, "answer": "red"}, {"question_id": 999, "answer": "2"}])),
    Bad("vqa_results_duplicate_qid.json", "question 10 answered twice", "score_vqa_files",
        "VQAFormatError: results file {file}: question_id 10 is answered twice (results[0] and results[1])",
        as_json([{"question_id": 10, "answer": "red"}, {"question_id": 10, "answer": "blue"}])),
    Bad("vqa_results_duplicate_qid_reload.json", "question 10 answered twice", "load_vqa_results",
        "DataError: {file}: [1].question_id 10 appears twice",
        as_json([{"question_id": 10, "answer": "red"}, {"question_id": 10, "answer": "blue"}])),
    Bad("vqa_results_not_list.json", "an object where the results list should be", "score_vqa_files",
        "VQAFormatError: results file {file}: expected a list of {'question_id', 'answer'} objects, got dict",
        as_json({"question_id": 10, "answer": "red"})),
    # -- COCO captions / Karpathy
    Bad("coco_not_json.json", "not JSON (single quotes)", "load_coco_captions",
        "DataError: {file}: invalid JSON at line 1 column 2 (…)", text("{'images': []}\n")),
    Bad("coco_missing_images.json", "no 'images' key", "load_coco_captions", "DataError: {file}: images missing",
        as_json({"annotations": OK_CAPTIONS["annotations"]})),
    Bad("coco_no_caption.json", "an annotation without 'caption'", "load_coco_captions",
        "DataError: {file}: annotations[0].caption missing",
        as_json({"images": OK_CAPTIONS["images"], "annotations": [{"image_id": 1, "id": 1}]})),
    Bad("coco_unknown_image.json", "a caption of image 7, which is not in 'images'", "load_coco_captions",
        "DataError: {file}: annotations[0].image_id 7 is not in images",
        as_json({"images": OK_CAPTIONS["images"], "annotations": [{"image_id": 7, "id": 1, "caption": "x"}]})),
    Bad("coco_latin1.json", "latin-1 captions (byte 0xE9, not UTF-8)", "load_coco_captions",
        "DataError: {file}: not UTF-8 text (invalid continuation byte at byte …)",
        text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}],
                         "annotations": [{"image_id": 1, "id": 1, "caption": f"a caf{LATIN1}."}]},
                        ensure_ascii=False), "latin-1")),
    Bad("coco_traversal.json", "an image file_name that climbs out of the image root", "load_coco_captions",
        "DataError: {file}: images[0].file_name: '../../etc/passwd' points outside the data root …",
        as_json({"images": [{"id": 1, "file_name": "../../etc/passwd"}], "annotations": []})),
    Bad("coco_results_duplicate.json", "image 1 captioned twice", "score_caption_files",
        "CaptionFormatError: results file {file}: image_id 1 has two captions (results[0] and results[1])",
        as_json([{"image_id": 1, "caption": "a disc"}, {"image_id": 1, "caption": "a square"}])),
    Bad("coco_results_unknown_image.json", "a caption for image 9, which has no references", "score_caption_files",
        "CaptionFormatError: results file {file}: …9…",
        as_json([{"image_id": 1, "caption": "a disc"}, {"image_id": 9, "caption": "a square"}])),
    Bad("karpathy_no_sentences.json", "a Karpathy image without 'sentences'", "load_karpathy",
        "DataError: {file}: images[0].sentences missing",
        as_json({"images": [{"filename": "a.jpg", "imgid": 0, "split": "test"}]})),
    # -- JSON-lines manifests (format: manifest)
    Bad("manifest_not_json.jsonl", "line 2 is not JSON", "manifest",
        "DataError: {file}:2: not valid JSON (…)", text('{"path": "a.png", "label": "x"}\n{path: b.png}\n')),
    Bad("manifest_no_label.jsonl", "a line without 'label'", "manifest",
        "DataError: {file}:1: expected an object with 'path' and 'label'", text('{"path": "a.png"}\n')),
    Bad("manifest_path_not_string.jsonl", "a 'path' that is a number", "manifest",
        "DataError: {file}:1: path: expected a path string, got int (3)",
        text('{"path": 3, "label": "x"}\n')),
    Bad("manifest_latin1.jsonl", "latin-1 text (byte 0xE9, not UTF-8)", "manifest",
        "DataError: {file}: not UTF-8 text (invalid continuation byte at byte 13, line 1)",
        text(f'{{"path": "caf{LATIN1}.png", "label": "x"}}\n', "latin-1")),
    Bad("manifest_traversal.jsonl", "a path that climbs out of the data root", "manifest",
        "DataError: {file}:2: path: '../../etc/passwd' points outside the data root …",
        text('{"path": "a.png", "label": "x"}\n{"path": "../../etc/passwd", "label": "x"}\n')),
    Bad("manifest_absolute.jsonl", "an absolute path", "manifest",
        "DataError: {file}:1: path: '/etc/passwd' points outside the data root … (an absolute path)",
        text('{"path": "/etc/passwd", "label": "x"}\n')),
    # -- video QA (MSRVTT-QA), AudioCaps, MSR-VTT retrieval captions
    Bad("videoqa_not_json.json", "not JSON", "load_video_qa", "DataError: {file}: not valid JSON (…)",
        text("[{id: 0}]\n")),
    Bad("videoqa_no_video_id.json", "a question without 'video_id' / 'video'", "load_video_qa",
        "DataError: {file}: [0]: missing or non-string field(s) video_id",
        as_json([{"id": 0, "question": "what is it?", "answer": "cat"}])),
    Bad("videoqa_bad_id.json", "a question id that is not an integer", "load_video_qa",
        "DataError: {file}: [0].id: expected an integer question id, got 'first'",
        as_json([{"id": "first", "video_id": 1, "question": "what is it?", "answer": "cat"}])),
    Bad("videoqa_latin1.json", "latin-1 text (byte 0xE9, not UTF-8)", "load_video_qa",
        "DataError: {file}: not valid JSON (…)",
        text(f'[{{"id": 0, "video_id": 1, "question": "caf{LATIN1}?", "answer": "x"}}]', "latin-1")),
    Bad("videoqa_traversal.json", "a video id that climbs out of the video root", "load_video_qa",
        "DataError: {file}: [0]: '../../etc/passwd' points outside the data root …",
        as_json([{"id": 0, "video": "../../etc/passwd", "question": "what is it?", "answer": "cat"}])),
    Bad("audiocaps_no_caption_column.csv", "no 'caption' column", "load_audiocaps",
        "DataError: {file}: missing column(s) caption (AudioCaps has audiocap_id, youtube_id, start_time, caption)",
        text("audiocap_id,youtube_id,start_time,text\n1,abc,0,a dog barks\n")),
    Bad("audiocaps_empty_caption.csv", "a row with an empty caption", "load_audiocaps",
        "DataError: {file}:3: empty youtube_id or caption",
        text("audiocap_id,youtube_id,start_time,caption\n1,abc,0,a dog barks\n2,def,0,\n")),
    Bad("audiocaps_latin1.csv", "latin-1 text (byte 0xE9, not UTF-8)", "load_audiocaps",
        "DataError: {file}: not UTF-8 text (invalid continuation byte at byte 55, line 2)",
        text(f"audiocap_id,youtube_id,start_time,caption\n1,abc,0,a caf{LATIN1}\n", "latin-1")),
    Bad("audiocaps_traversal.csv", "a youtube_id that climbs out of the audio root", "load_audiocaps",
        "DataError: {file}:2: '../../etc/passwd.wav' points outside the data root …",
        text("audiocap_id,youtube_id,start_time,caption\n1,../../etc/passwd,0,a dog barks\n")),
    Bad("msrvtt_no_sentence.csv", "a caption file without a 'sentence' column", "read_captions",
        "DataError: {file}: [0]: needs a video_id and a sentence (caption)", text("video_id,caption\nvideo1,a cat\n")),
    Bad("msrvtt_latin1.csv", "latin-1 text (byte 0xE9, not UTF-8)", "read_captions",
        "DataError: {file}: cannot read (…)", text(f"video_id,sentence\nvideo1,a caf{LATIN1}\n", "latin-1")),
    Bad("msrvtt_traversal.csv", "a video id that climbs out of the video root", "read_captions",
        "DataError: {file}: [0]: '../../etc/passwd.mp4' points outside the data root …",
        text("video_id,sentence\n../../etc/passwd,a cat\n")),
    # -- recipes
    Bad("recipe_not_yaml.yaml", "not YAML (a tab indent)", "Config.from_yaml",
        "ConfigError: {file}: not valid YAML at line 2 column 1 (…)", text("train:\n\tmax_steps: 3\n")),
    Bad("recipe_list.yaml", "a list at the top level", "Config.from_yaml",
        "ConfigError: {file}: expected a mapping at the top level, got list", text("- train\n- eval\n")),
    Bad("recipe_unknown_key.yaml", "a misspelt key", "Config.from_yaml",
        "ConfigError: {file}: train.max_step: unknown key (did you mean 'max_steps'?)",
        text("train:\n  max_step: 3\n")),
    Bad("recipe_wrong_type.yaml", "a word where an integer is expected", "Config.from_yaml",
        "ConfigError: {file}: train.max_steps: expected an integer, got 'many'", text("train:\n  max_steps: many\n")),
    Bad("recipe_latin1.yaml", "a latin-1 comment (byte 0xE9, not UTF-8)", "Config.from_yaml",
        "ConfigError: {file}: not UTF-8 text (invalid continuation byte at byte 5)",
        text(f"# caf{LATIN1}\ntrain:\n  max_steps: 3\n", "latin-1")),
]


#: what each ``loader`` of the table calls (tests/test_bad_inputs.py runs exactly these)
LOADER_CALLS: dict[str, str] = {
    "load_image": "mmadapt.io.image.load_image(file)",
    "load_video": "mmadapt.io.video.load_video(file, n_frames=4)",
    "load_audio": "mmadapt.io.audio.load_audio(file)",
    "load_point_cloud": "mmadapt.io.point_cloud.load_point_cloud(file, n_points=16)",
    "load_h5_point_clouds": "mmadapt.io.point_cloud.load_h5_point_clouds(file)",
    "load_table": "mmadapt.io.table.load_table(file, TableSchema(numeric=['x'], categorical=['colour'], "
                  "target='label'))",
    "load_graph": "mmadapt.io.graph.load_graph(file, max_nodes=4096) (the graph tokenizer's default limit)",
    "load_vqa": "mmadapt.data.formats.vqa_v2.load_vqa(file, check_images=False)",
    "load_vqa+annotations": "mmadapt.data.formats.vqa_v2.load_vqa('ok_vqa_questions.json', file, check_images=False)",
    "score_vqa_files": "mmadapt.eval.vqa_metric.score_vqa_files('ok_vqa_questions.json', "
                       "'ok_vqa_annotations.json', file)",
    "load_vqa_results": "mmadapt.data.formats.vqa_v2.load_vqa_results(file)",
    "load_coco_captions": "mmadapt.data.formats.coco_captions.load_coco_captions(file, 'images', check_images=False)",
    "load_karpathy": "mmadapt.data.formats.karpathy.load_karpathy(file, 'images', 'test', check_images=False)",
    "score_caption_files": "mmadapt.eval.caption_metric.score_caption_files('ok_captions.json', file)",
    "manifest": "ClassificationTask('cls', LabelledTaskConfig(train=make_dataset('manifest', annotations=file)))"
                ".records('train') (mmadapt.tasks.classification)",
    "load_video_qa": "mmadapt.data.formats.msrvtt_qa.load_video_qa(file) (template '{video}' for videoqa_traversal.json)",
    "load_audiocaps": "mmadapt.data.formats.audiocaps.load_audiocaps(file)",
    "read_captions": "mmadapt.data.formats.msrvtt_retrieval.read_captions(file, <this folder>, '{video_id}.mp4')",
    "Config.from_yaml": "mmadapt.config.Config.from_yaml(file)",
}


# ---------------------------------------------------------------------------------------------- writing
def readme() -> str:
    lines = [
        "# Bad-input corpus",
        "",
        "Small broken files, one or more for every loader and format mmadapt reads. Generated by",
        "`make_corpus.py` (deterministic; see its docstring) — edit the script, not the files, then run",
        "`python tests/data/bad/make_corpus.py` and commit the script, the files and this README together.",
        "`tests/test_bad_inputs.py` feeds each file to its loader and checks that the error below is what the",
        "user sees: `{file}` stands for the path given to the loader, `…` for text from a third-party parser.",
        "Files named `ok_*` are well-formed companions (the questions / annotations / captions the broken",
        "results files are scored against).",
        "",
        "| file | what is wrong | loader | what the user sees |",
        "| --- | --- | --- | --- |",
    ]
    for bad in CORPUS:
        error = bad.error.replace("|", "\\|")
        lines.append(f"| `{bad.name}` | {bad.problem} | `{bad.loader}` | `{error}` |")
    lines += ["", "## Loaders", "", "What each name of the loader column calls (paths relative to this folder):", ""]
    lines += [f"- `{name}`: `{call}`" for name, call in LOADER_CALLS.items()]
    return "\n".join(lines) + "\n"


def write_corpus(out: Path) -> list[Path]:
    """Write every corpus file, the companions and README.md into ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in [*((bad.name, bad.make) for bad in CORPUS), *COMPANIONS.items()]:
        (out / name).write_bytes(make())
        written.append(out / name)
    (out / "README.md").write_text(readme(), encoding="utf-8")
    return written + [out / "README.md"]


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    for path in write_corpus(target):
        print(f"{path.stat().st_size:6d}  {path.name}")
