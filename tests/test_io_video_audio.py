"""Video and audio loaders on real files written here, and the synthetic video / audio sets.

Video frames are flat grey with brightness ``8 + 8 * j`` in frame ``j`` (:func:`_levels` reads ``j`` back), so
each test can see *which* frames were picked, with room for codec loss.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import torch

from mmadapt.data.synthetic import audio as synthetic_audio
from mmadapt.data.synthetic import video as synthetic_video
from mmadapt.data.synthetic.video import DIRECTIONS, MovingShape, render_clip, sample_moving_shape
from mmadapt.errors import ConfigError, DataError
from mmadapt.io.audio import audio_features, load_audio, write_audio
from mmadapt.io.video import frame_indices, load_video, write_video

# decord ships wheels for x86_64 only (setup.cfg's [video] extra); elsewhere the decord cases are skipped.
needs_decord = pytest.mark.skipif(importlib.util.find_spec("decord") is None, reason="decord is not installed")
BACKENDS = (pytest.param("decord", marks=needs_decord), "pyav")


# ------------------------------------------------------------------------------------------------ helpers
def _numbered_frames(count: int, size: int = 32) -> np.ndarray:
    """uint8 [count, size, size, 3]: frame j is flat grey 8 + 8 j."""
    return np.stack([np.full((size, size, 3), 8 + 8 * j, dtype=np.uint8) for j in range(count)])


def _levels(clip: torch.Tensor) -> list[int]:
    """The frame numbers j encoded by :func:`_numbered_frames` in a decoded clip [T, 3, H, W]."""
    return ((clip.mean(dim=(1, 2, 3)) * 255 - 8) / 8).round().long().tolist()


def _one_line_error(call, path: Path, *words: str) -> str:
    with pytest.raises(DataError) as info:
        call(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    for word in words:
        assert word in message, message
    return message


def _motion(clip: torch.Tensor) -> tuple[int, int]:
    """The sign of the dominant shift (rows, cols) from each frame to the next of a clip [T, 3, H, W] on a
    torus: argmax of the summed circular cross-correlations of consecutive frames."""
    grey = clip.mean(dim=1)
    grey = grey - grey.mean(dim=(1, 2), keepdim=True)
    spectra = torch.fft.fft2(grey)
    correlation = torch.fft.ifft2(spectra[1:] * spectra[:-1].conj()).real.sum(dim=0)
    height, width = correlation.shape
    row, col = divmod(int(correlation.argmax()), width)
    row, col = (row - height if row > height // 2 else row), (col - width if col > width // 2 else col)
    return int(np.sign(row)), int(np.sign(col))


@pytest.fixture(scope="module")
def numbered(tmp_path_factory) -> dict[str, Path]:
    """The same 1 s of content as a 30 fps file (30 frames) and a 10 fps file (every third frame)."""
    root = tmp_path_factory.mktemp("numbered")
    frames = _numbered_frames(30)
    return {
        "30fps": write_video(root / "n30.mp4", frames, fps=30),
        "10fps": write_video(root / "n10.mp4", frames[::3], fps=10),
        "short": write_video(root / "short.mp4", frames[:3], fps=30),
    }


# -------------------------------------------------------------------------------------------- load_video
@pytest.mark.parametrize("backend", BACKENDS)
def test_video_round_trip_gives_every_frame_in_order(numbered, backend) -> None:
    clip = load_video(numbered["30fps"], n_frames=30, backend=backend)
    assert clip.shape == (30, 3, 32, 32) and clip.dtype == torch.float32
    assert 0.0 <= clip.min() and clip.max() <= 1.0
    assert _levels(clip) == list(range(30))
    assert (clip - clip.mean(dim=(1, 2, 3), keepdim=True)).abs().max() < 2 / 255  # flat frames stay flat


def test_write_video_writes_a_yuv420p_mp4(numbered) -> None:
    with av.open(str(numbered["30fps"])) as container:
        stream = container.streams.video[0]
        assert container.format.name.startswith("mov,mp4")
        assert stream.codec_context.name in ("h264", "mpeg4") and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.frames, stream.average_rate, stream.width, stream.height) == (30, 30, 32, 32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_video_keeps_colours_and_layout(tmp_path, backend) -> None:
    # 48 pixels wide: a width decord 0.6 cannot convert, so its backend falls back to PyAV here
    frames = np.zeros((4, 32, 48, 3), dtype=np.uint8)
    frames[:, :, :24] = (220, 30, 30)  # left half red
    frames[:, :, 24:] = (30, 30, 220)  # right half blue
    clip = load_video(write_video(tmp_path / "halves.mp4", frames, fps=25), n_frames=2, backend=backend)
    assert clip.shape == (2, 3, 32, 48)
    red, blue = clip[:, :, 16, 8] * 255, clip[:, :, 16, 40] * 255
    assert torch.allclose(red, torch.tensor([220.0, 30, 30]).expand(2, 3), atol=12)
    assert torch.allclose(blue, torch.tensor([30.0, 30, 220]).expand(2, 3), atol=12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_uniform_sampling_takes_segment_centres(numbered, backend) -> None:
    # 30 frames, 4 segments of 7.5: centres 3.75, 11.25, 18.75, 26.25
    assert _levels(load_video(numbered["30fps"], n_frames=4, backend=backend)) == [3, 11, 18, 26]
    # 3 frames, 8 wanted: frames repeat, in order
    assert _levels(load_video(numbered["short"], n_frames=8, backend=backend)) == [0, 0, 0, 1, 1, 2, 2, 2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_fps_resampling_makes_frame_rates_agree(numbered, backend) -> None:
    at_30 = load_video(numbered["30fps"], n_frames=4, fps=10, backend=backend)
    at_10 = load_video(numbered["10fps"], n_frames=4, fps=10, backend=backend)
    # both timelines are source frames 0, 3, 6, ..., 27 (10 steps); the centres of 4 segments: steps 1, 3, 6, 8
    assert _levels(at_30) == _levels(at_10) == [3, 9, 18, 24]
    assert torch.allclose(at_30, at_10, atol=3 / 255)
    # upsampling repeats frames: 10 frames at 10 fps seen at 30 fps
    assert _levels(load_video(numbered["10fps"], n_frames=5, fps=30, backend=backend)) == [3, 9, 15, 21, 27]


def test_frame_indices_rules() -> None:
    assert frame_indices(30, 30) == list(range(30))
    assert frame_indices(30, 4) == [3, 11, 18, 26]
    assert frame_indices(3, 8) == [0, 0, 0, 1, 1, 2, 2, 2]
    assert frame_indices(30, 4, native_fps=30, fps=10) == [3, 9, 18, 24]
    assert frame_indices(31, 11, native_fps=30, fps=10) == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30]  # 11 steps
    assert frame_indices(10, 4, native_fps=29.97, fps=29.97) == frame_indices(10, 4)
    with pytest.raises(ConfigError, match="native_fps"):
        frame_indices(10, 4, fps=10)


def test_random_sampling_one_frame_per_segment() -> None:
    draws = [frame_indices(30, 5, "random", generator=torch.Generator().manual_seed(s)) for s in range(20)]
    for draw in draws:
        assert all(6 * i <= index < 6 * (i + 1) for i, index in enumerate(draw)), draw
    assert len({tuple(d) for d in draws}) > 10  # really random across seeds
    again = frame_indices(30, 5, "random", generator=torch.Generator().manual_seed(3))
    assert again == draws[3]


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_sampling_of_a_file_is_reproducible(numbered, backend) -> None:
    def draw(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return load_video(numbered["30fps"], n_frames=5, sampling="random", backend=backend, generator=generator)

    first = draw(7)
    assert torch.equal(first, draw(7))
    assert _levels(first) == frame_indices(30, 5, "random", generator=torch.Generator().manual_seed(7))


@needs_decord
def test_decord_and_pyav_decode_identical_frames(tmp_path) -> None:
    for size in (32, 48):  # 48: decord's width bug, so its backend falls back to PyAV (with the same indices)
        clip = sample_moving_shape(np.random.default_rng(3), "moving_left", size)
        path = write_video(tmp_path / f"moving{size}.mp4", render_clip(clip, size, 16), fps=8)
        for options in ({"n_frames": 16}, {"n_frames": 6, "fps": 4.0}, {"n_frames": 8, "size": (24, 20)}):
            by_decord = load_video(path, backend="decord", **options)
            by_pyav = load_video(path, backend="pyav", **options)
            assert by_decord.shape[0] == options["n_frames"] and torch.equal(by_decord, by_pyav), (size, options)


def test_resize_is_antialiased_bilinear(numbered) -> None:
    clip = load_video(numbered["30fps"], n_frames=4, size=16)
    square = load_video(numbered["30fps"], n_frames=4)
    assert clip.shape == (4, 3, 16, 16)
    assert torch.allclose(clip.mean(dim=(1, 2, 3)), square.mean(dim=(1, 2, 3)), atol=1e-3)
    assert load_video(numbered["30fps"], n_frames=2, size=(24, 40)).shape == (2, 3, 24, 40)
    assert load_video(numbered["30fps"], n_frames=2, size=[8, 12]).shape == (2, 3, 8, 12)  # a YAML list


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_video_files_raise_one_line_data_errors(tmp_path, numbered, backend) -> None:
    def load(path: Path) -> torch.Tensor:
        return load_video(path, backend=backend)

    (tmp_path / "folder.mp4").mkdir()
    (tmp_path / "empty.mp4").touch()
    (tmp_path / "notes.txt").write_text("not a video")
    (tmp_path / "text.mp4").write_text("hello, I am a text file with a video extension\n")
    data = numbered["30fps"].read_bytes()
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])

    _one_line_error(load, tmp_path / "missing.mp4", "file not found")
    _one_line_error(load, tmp_path / "folder.mp4", "is a directory")
    _one_line_error(load, tmp_path / "empty.mp4", "empty file (0 bytes)")
    _one_line_error(load, tmp_path / "notes.txt", "unsupported video extension '.txt'")
    _one_line_error(load, tmp_path / "text.mp4", "not a video file")
    _one_line_error(load, tmp_path / "half.mp4", "truncated or corrupt MP4 file")


def test_bad_video_arguments_raise_config_errors(tmp_path, numbered) -> None:
    for kwargs, field in (
        ({"n_frames": 0}, "n_frames"),
        ({"sampling": "middle"}, "sampling"),
        ({"fps": -1.0}, "fps"),
        ({"size": (0, 4)}, "size"),
        ({"backend": "opencv"}, "backend"),
    ):
        with pytest.raises(ConfigError, match=field):
            load_video(numbered["30fps"], **kwargs)
    with pytest.raises(ConfigError, match="even height and width"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 31, 32, 3), np.uint8), fps=10)
    with pytest.raises(ConfigError, match=r"uint8 frames \[T>=1, H, W, 3\], got float32"):
        write_video(tmp_path / "float.mp4", np.zeros((2, 32, 32, 3), np.float32), fps=10)


# -------------------------------------------------------------------------------------------- load_audio
def _tone(frequency: float, sample_rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def test_wav_round_trip_keeps_the_samples(tmp_path) -> None:
    tone = _tone(440.0, 16000)
    pcm = load_audio(write_audio(tmp_path / "pcm.wav", tone, 16000))
    assert pcm.shape == (16000,) and pcm.dtype == torch.float32
    assert torch.allclose(pcm, torch.from_numpy(tone), atol=1 / 32768 + 1e-7)  # 16-bit quantisation
    exact = load_audio(write_audio(tmp_path / "float.wav", tone, 16000, subtype="FLOAT"))
    assert torch.equal(exact, torch.from_numpy(tone))


def test_stereo_mono_mix_and_channels(tmp_path) -> None:
    left, right = _tone(300.0, 8000), _tone(300.0, 8000, amplitude=0.25)
    path = write_audio(tmp_path / "stereo.wav", np.stack([left, -right]), 8000, subtype="FLOAT")
    both = load_audio(path, sample_rate=8000, mono=False)
    assert both.shape == (2, 8000)
    assert torch.equal(both[1], torch.from_numpy(-right))
    assert torch.allclose(load_audio(path, sample_rate=8000), torch.from_numpy((left - right) / 2), atol=1e-7)


def test_resampling_8k_to_16k_keeps_the_tone(tmp_path) -> None:
    path = write_audio(tmp_path / "tone8k.wav", _tone(1000.0, 8000), 8000)
    upsampled = load_audio(path, sample_rate=16000)
    assert upsampled.shape == (16000,)
    spectrum = torch.fft.rfft(upsampled).abs()  # 1 s at 16 kHz: bin k is k Hz
    assert int(spectrum.argmax()) == 1000
    assert spectrum[2000:].max() < 1e-2 * spectrum.max()  # no image above the old Nyquist
    assert upsampled.abs().max() == pytest.approx(0.5, abs=0.01)
    # max_seconds cuts after resampling and matches the start of the whole clip
    start = load_audio(path, sample_rate=16000, max_seconds=0.25)
    assert start.shape == (4000,)
    assert torch.allclose(start, upsampled[:4000], atol=1e-6)


def test_fbank_and_log_mel_shapes_and_peak(tmp_path) -> None:
    waveform = torch.from_numpy(_tone(1000.0, 16000))
    fbank = audio_features(waveform, 16000)
    assert fbank.shape == (1 + (16000 - 400) // 160, 128) == (98, 128)
    assert audio_features(waveform[:12345], 16000, n_mels=64).shape == (1 + (12345 - 400) // 160, 64)

    # the loudest mel bin is the one whose centre is nearest 1 kHz (HTK mel scale, 20 Hz .. 8 kHz for kaldi)
    def mel(hz: float) -> float:
        return 1127 * math.log1p(hz / 700)

    centres = [mel(20) + (k + 1) * (mel(8000) - mel(20)) / 129 for k in range(128)]
    nearest = min(range(128), key=lambda k: abs(centres[k] - mel(1000)))
    assert set(fbank.argmax(dim=1).tolist()) <= {nearest - 1, nearest, nearest + 1}
    log_mel = audio_features(waveform, 16000, kind="log_mel", n_mels=80)
    assert log_mel.shape == (1 + 16000 // 160, 80)
    assert torch.isfinite(log_mel).all() and log_mel.min() > math.log(1e-6) - 1e-3
    with pytest.raises(DataError, match="shorter than one 25.0 ms frame"):
        audio_features(waveform[:399], 16000)
    with pytest.raises(DataError, match=r"mono waveform \[S\], got shape \[2, 16000\]"):
        audio_features(waveform.expand(2, -1), 16000)


def test_bad_audio_files_raise_one_line_data_errors(tmp_path) -> None:
    good = write_audio(tmp_path / "good.wav", _tone(440.0, 16000), 16000).read_bytes()
    (tmp_path / "folder.wav").mkdir()
    (tmp_path / "empty.wav").touch()
    (tmp_path / "sound.txt").write_text("not audio")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF" + bytes(range(256)) * 4)
    (tmp_path / "text.wav").write_text("just some text\n")
    (tmp_path / "half.wav").write_bytes(good[: len(good) // 2])
    (tmp_path / "header.wav").write_bytes(good[:30])
    soundfile.write(tmp_path / "silent.wav", np.zeros(0, np.float32), 16000)
    soundfile.write(tmp_path / "nan.wav", np.full(100, np.nan, np.float32), 16000, subtype="FLOAT")

    _one_line_error(load_audio, tmp_path / "missing.wav", "file not found")
    _one_line_error(load_audio, tmp_path / "folder.wav", "is a directory")
    _one_line_error(load_audio, tmp_path / "empty.wav", "empty file (0 bytes)")
    _one_line_error(load_audio, tmp_path / "sound.txt", "unsupported audio extension '.txt'")
    _one_line_error(load_audio, tmp_path / "corrupt.wav", "not a recognised audio file")
    _one_line_error(load_audio, tmp_path / "text.wav", "not a recognised audio file")
    _one_line_error(load_audio, tmp_path / "half.wav", "truncated WAV file", "declares 32000 bytes")
    _one_line_error(load_audio, tmp_path / "header.wav", "cannot decode audio", "data")
    _one_line_error(load_audio, tmp_path / "silent.wav", "no samples")
    _one_line_error(load_audio, tmp_path / "nan.wav", "NaN")


# ------------------------------------------------------------------------------------- synthetic video
def _manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_video_dataset_files_manifest_balance_and_determinism(tmp_path) -> None:
    manifest = synthetic_video.write_video_dataset(tmp_path / "a", "train", 10, seed=0)
    again = synthetic_video.write_video_dataset(tmp_path / "b", "train", 10, seed=0)
    synthetic_video.write_video_dataset(tmp_path / "c", "train", 10, seed=1)
    rows = _manifest(manifest)
    assert manifest == tmp_path / "a" / "train.jsonl"
    assert [sorted(row) for row in rows] == [["label", "path", "shape"]] * 10  # shape: for video QA sets
    assert {row["shape"] for row in rows} <= set(synthetic_video.SHAPES)
    assert [row["path"] for row in rows] == [f"train/{i:06d}.mp4" for i in range(10)]
    counts = Counter(row["label"] for row in rows)
    assert set(counts) == set(synthetic_video.CLASSES) and max(counts.values()) - min(counts.values()) <= 1
    assert all(Counter(r["label"] for r in rows[:8])[c] == 2 for c in synthetic_video.CLASSES)
    assert manifest.read_text() == again.read_text()
    for row in rows:
        assert (tmp_path / "a" / row["path"]).read_bytes() == (tmp_path / "b" / row["path"]).read_bytes()
    assert (tmp_path / "a" / rows[0]["path"]).read_bytes() != (tmp_path / "c" / rows[0]["path"]).read_bytes()
    clip = load_video(tmp_path / "a" / rows[0]["path"], n_frames=16)
    assert clip.shape == (16, 3, 32, 32)


def test_reversing_a_clip_gives_the_opposite_class_exactly() -> None:
    opposite = {
        "moving_right": "moving_left",
        "moving_left": "moving_right",
        "moving_down": "moving_up",
        "moving_up": "moving_down",
    }
    rng = np.random.default_rng(0)
    for label in synthetic_video.CLASSES:
        clip = sample_moving_shape(rng, label, 32)
        frames = render_clip(clip, 32, 16)
        reversed_clip = MovingShape(**{**clip.__dict__, "label": opposite[label], "start": clip.centre(15, 32)})
        assert np.array_equal(render_clip(reversed_clip, 32, 16), frames[::-1])
        assert len({f.tobytes() for f in frames}) == 16  # the shape really moves every frame


def test_no_single_frame_tells_the_class() -> None:
    rng = np.random.default_rng(1)
    for label in synthetic_video.CLASSES:
        clip = sample_moving_shape(rng, label, 32)
        frames = render_clip(clip, 32, 12)
        for t in (0, 5, 11):
            here = clip.centre(t, 32)
            for other in synthetic_video.CLASSES:
                d_row, d_col = DIRECTIONS[other]
                start = ((here[0] - d_row * clip.speed * t) % 32, (here[1] - d_col * clip.speed * t) % 32)
                twin = MovingShape(**{**clip.__dict__, "label": other, "start": start})
                assert np.array_equal(render_clip(twin, 32, 12)[t], frames[t]), (label, other, t)


def test_decoded_clips_move_in_their_class_direction(tmp_path) -> None:
    manifest = synthetic_video.write_video_dataset(tmp_path, "val", 12, seed=5, n_frames=12, fps=6.0)
    for row in _manifest(manifest):
        clip = load_video(tmp_path / row["path"], n_frames=12)
        d_row, d_col = DIRECTIONS[row["label"]]
        assert _motion(clip) == (d_row, d_col), row
        assert _motion(clip.flip(0)) == (-d_row, -d_col), row


# ------------------------------------------------------------------------------------- synthetic audio
def test_audio_dataset_files_manifest_balance_and_determinism(tmp_path) -> None:
    manifest = synthetic_audio.write_audio_dataset(tmp_path / "a", "train", 10, seed=0)
    again = synthetic_audio.write_audio_dataset(tmp_path / "b", "train", 10, seed=0)
    rows = _manifest(manifest)
    assert [sorted(row) for row in rows] == [["label", "path"]] * 10
    assert Counter(row["label"] for row in rows) == {c: 2 for c in synthetic_audio.CLASSES}
    for row in rows:
        written = tmp_path / "a" / row["path"]
        assert written.suffix == ".wav" and written.read_bytes() == (tmp_path / "b" / row["path"]).read_bytes()
        info = soundfile.info(written)
        assert (info.samplerate, info.frames, info.channels, info.subtype) == (16000, 16000, 1, "PCM_16")
    assert manifest.read_text() == again.read_text()
    other = synthetic_audio.write_audio_dataset(tmp_path / "c", "train", 10, seed=1)
    assert other.read_text() != manifest.read_text() or any(
        (tmp_path / "a" / r["path"]).read_bytes() != (tmp_path / "c" / r["path"]).read_bytes() for r in rows
    )


def test_audio_classes_sound_as_named(tmp_path) -> None:
    manifest = synthetic_audio.write_audio_dataset(tmp_path, "val", 15, seed=2)
    for row in _manifest(manifest):
        fbank = audio_features(load_audio(tmp_path / row["path"]), 16000)  # [98, 128]
        peak = fbank.argmax(dim=1).float()  # the loudest mel bin of each frame
        rise = peak[-20:].median() - peak[:20].median()  # from the first to the last 0.2 s
        loudness = fbank.logsumexp(dim=1)
        swing = loudness.max() - loudness.min()
        contrast = (fbank.max(dim=1).values - fbank.median(dim=1).values).mean()  # a tone towers over its frame
        label, facts = row["label"], (row, rise, swing, contrast)
        if label == "rising_chirp":  # a sweep of >= 1 octave moves >= 8 mel bins between these windows
            assert rise > 4 and contrast > 6.5, facts
        elif label == "falling_chirp":
            assert rise < -4 and contrast > 6.5, facts
        elif label == "tone":
            assert rise == 0 and swing < 0.3 and contrast > 6.5, facts
        elif label == "am_tone":  # depth >= 50%: the power swings by >= 4x (1.39 in log units)
            assert rise == 0 and swing > 0.8 and contrast > 6.5, facts
        else:
            assert contrast < 5.5, facts
