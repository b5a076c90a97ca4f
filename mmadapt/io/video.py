"""Load a clip of ``n_frames`` frames from a video file as a float tensor; write small mp4 files.

What :func:`load_video` guarantees:

* float32 ``[T, 3, H, W]`` with ``T == n_frames``, RGB, values in [0, 1];
* the frames picked are a pure function of the file's frame count (and frame rate, when ``fps`` is given),
  ``n_frames``, ``sampling`` and ``generator`` (see :func:`frame_indices`), so decord and PyAV return the same
  frames, bit for bit on the files :func:`write_video` writes;
* every sampled frame is really decoded: a truncated or corrupt file fails *here*, inside the data loader;
* every failure caused by the file is a :class:`~mmadapt.errors.DataError` with a one-line message naming the
  path and what is wrong, e.g. ``DataError: clips/a.mp4: cannot open video (truncated or corrupt MP4 file)``;
  bad arguments are a :class:`~mmadapt.errors.ConfigError`.

Backends: decord (fast random access) when it is installed, else PyAV; ``backend="pyav"`` forces PyAV, which
decodes from the start up to the last frame it needs. Both come with ``pip install 'mmadapt[video]'``.
decord 0.6.0 cannot convert frames of some widths (measured: 16, 24, 48 and 72 pixels; its batch copy fails
with "DECORDArrayCopyFromTo: The size must exactly match", and single-frame reads return 4 garbage channels):
such files are decoded with PyAV instead, with the frame indices already chosen.

The source is a path or a member of a WebDataset shard (:class:`~mmadapt.io.shard_member.ShardMember`): both
backends then decode its bytes from memory (decord's ``VideoReader`` and ``av.open`` take a file object), and
messages name ``shard.tar:member``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from mmadapt.errors import ConfigError, DataError
from mmadapt.io._files import check_media
from mmadapt.io.shard_member import MediaSource, open_media, read_head

__all__ = ["VIDEO_EXTENSIONS", "frame_indices", "load_video", "write_video"]

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")

# One thread, and no macroblock-tree rate control. Measured with PyAV 18 / x264 core 165 on 32 x 32 and 64 x 64
# clips: with mbtree on, the same frames encoded to different bytes (and decoded frames off by up to 4 levels)
# in about half of the processes, 1 to 5 writes in 60, depending on nothing but the process's memory state;
# with mbtree=0, about 2,000 writes in 36 processes were all byte-identical.
_X264_OPTIONS = {"threads": "1", "x264-params": "mbtree=0"}

Sampling = Literal["uniform", "random"]
Backend = Literal["auto", "decord", "pyav"]
# (frame count, frame rate or None) -> the frame indices to decode, as chosen by the caller's sampling settings.
_Picker = Callable[[int, float | None], list[int]]


def load_video(
    path: MediaSource,
    n_frames: int = 8,
    sampling: Sampling = "uniform",
    fps: float | None = None,
    size: int | tuple[int, int] | list[int] | None = None,
    backend: Backend = "auto",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Decode ``n_frames`` frames of the video at ``path``.

    Args:
        n_frames: how many frames to return (``T``).
        sampling: ``"uniform"``: the centre frame of each of ``n_frames`` equal segments of the clip;
            ``"random"``: one random frame per segment, drawn with ``generator``.
        fps: first resample the clip's timeline at this rate, using the file's own frame rate, so that a
            30 fps and a 10 fps file of the same content give the same frames; ``None`` uses every frame.
        size: resize (bilinear, antialiased) to ``size × size``, or to ``(H, W)`` (a tuple or list); ``None``
            keeps the file's size.
        backend: ``"auto"`` (decord if installed, else PyAV), ``"decord"`` or ``"pyav"``.
        generator: the random source of ``sampling="random"`` (the global torch RNG if ``None``).

    Returns:
        float32 ``[T, 3, H, W]`` in [0, 1]. Clips shorter than ``n_frames`` repeat frames (in order).

    Raises:
        DataError: the file is missing, a directory, empty, has an unsupported extension, is not a video,
            has no video stream or no frames, is truncated or corrupt, or has no frame rate while ``fps`` is set.
        ConfigError: an invalid argument.
    """
    _check_arguments(n_frames, sampling, fps, size, backend)
    where = check_media(path, "video", VIDEO_EXTENSIONS)

    def pick(num_frames: int, native_fps: float | None) -> list[int]:
        if num_frames <= 0:
            raise DataError(f"{where}: video has no frames")
        if fps is not None and not native_fps:
            raise DataError(f"{where}: video has no frame rate, cannot resample it to fps={fps}")
        return frame_indices(num_frames, n_frames, sampling, native_fps=native_fps, fps=fps, generator=generator)

    read = _read_with_pyav if backend == "pyav" or (backend == "auto" and not _has_decord()) else _read_with_decord
    frames = torch.from_numpy(read(path, where, pick))  # uint8 [T, H, W, 3]
    clip = rearrange(frames, "t h w c -> t c h w").float().div_(255.0)
    if size is not None:
        height, width = (size, size) if isinstance(size, int) else size
        clip = F.interpolate(clip, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return clip


def frame_indices(
    num_frames: int,
    n_frames: int,
    sampling: Sampling = "uniform",
    native_fps: float | None = None,
    fps: float | None = None,
    generator: torch.Generator | None = None,
) -> list[int]:
    """The (sorted) indices into a clip of ``num_frames`` frames that :func:`load_video` decodes.

    With ``fps`` (which needs ``native_fps``, the file's frame rate), the clip is first resampled: step ``k``
    of the new timeline (time ``k / fps``) shows source frame ``floor(k * native_fps / fps)``, and the new
    timeline has ``ceil(num_frames * fps / native_fps)`` steps (each source frame lasts ``1 / native_fps``).
    The ``L`` resulting steps are cut into ``n_frames`` equal segments; segment ``i`` spans
    ``[i * L / n_frames, (i + 1) * L / n_frames)`` and gives the step at fraction ``u_i`` of it, with
    ``u_i = 0.5`` (uniform) or ``u_i ~ U[0, 1)`` from ``generator`` (random). Indices are clamped to the clip,
    so clips shorter than ``n_frames`` repeat frames.
    """
    if num_frames < 1 or n_frames < 1:
        raise ConfigError(f"frame_indices: expected num_frames >= 1 and n_frames >= 1, got {num_frames}, {n_frames}")
    if fps is None:
        timeline = torch.arange(num_frames)
    else:
        if not native_fps or native_fps <= 0 or fps <= 0:
            raise ConfigError(f"frame_indices: resampling needs native_fps > 0 and fps > 0, got {native_fps}, {fps}")
        # The 1e-9 guards exact ratios (30 fps -> 10 fps: 3 source frames per step) against float rounding.
        steps = max(1, math.ceil(num_frames * fps / native_fps - 1e-9))
        timeline = torch.floor(torch.arange(steps, dtype=torch.float64) * (native_fps / fps) + 1e-9).long()
        timeline = timeline.clamp_(max=num_frames - 1)
    if sampling == "uniform":
        offsets = torch.full((n_frames,), 0.5, dtype=torch.float64)
    elif sampling == "random":
        offsets = torch.rand(n_frames, generator=generator, dtype=torch.float64)
    else:
        raise ConfigError(f"sampling: expected 'uniform' or 'random', got {sampling!r}")
    length = len(timeline)
    steps_picked = torch.floor((torch.arange(n_frames, dtype=torch.float64) + offsets) * (length / n_frames))
    return timeline[steps_picked.long().clamp_(max=length - 1)].tolist()


def write_video(path: str | os.PathLike[str], frames: np.ndarray | torch.Tensor, fps: float) -> Path:
    """Encode ``frames`` (uint8 ``[T, H, W, 3]``, RGB, even ``H`` and ``W``) as an mp4 file at ``fps``.

    H.264 (libx264, CRF 23) when PyAV has it, else MPEG-4 Part 2; pix_fmt yuv420p. The same frames give the
    same bytes (see ``_X264_OPTIONS``). Returns ``Path(path)``.
    """
    where = Path(path)
    if where.suffix.lower() != ".mp4":
        raise ConfigError(f"write_video: {where}: expected a .mp4 path")
    pixels = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3 or pixels.shape[0] == 0:
        raise ConfigError(
            f"write_video: {where}: expected uint8 frames [T>=1, H, W, 3], got {pixels.dtype} {list(pixels.shape)}"
        )
    _, height, width, _ = pixels.shape
    if height % 2 or width % 2:
        raise ConfigError(f"write_video: {where}: yuv420p needs even height and width, got {height}x{width}")
    if not fps > 0:
        raise ConfigError(f"write_video: fps: expected > 0, got {fps}")
    av = _import_pyav()
    codec, options = ("libx264", _X264_OPTIONS) if "libx264" in av.codecs_available else ("mpeg4", {"threads": "1"})
    with av.open(os.fspath(where), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(100_000), options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index, pixel_frame in enumerate(pixels):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixel_frame), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return where


def _read_with_decord(source: MediaSource, where: str, pick: _Picker) -> np.ndarray:
    """uint8 ``[T, H, W, 3]``: the frames ``pick`` chooses, decoded by decord (random access)."""
    import decord

    opened = open_media(source)
    try:
        reader = decord.VideoReader(opened, ctx=decord.cpu(0))
    except Exception as exc:  # noqa: BLE001 - decord raises RuntimeError / DECORDError with FFmpeg's log text
        if "cannot find video stream" in str(exc):
            raise DataError(f"{where}: no video stream") from None
        raise DataError(f"{where}: {_open_failure(source)}") from None
    indices = pick(len(reader), reader.get_avg_fps() or None)
    try:
        return reader.get_batch(indices).asnumpy()
    except Exception as exc:  # noqa: BLE001 - DECORDError on a damaged stream
        if "DECORDArrayCopyFromTo" in str(exc):  # decord 0.6's RGB buffer bug (frame widths 16, 24, 48, 72, ...)
            return _read_with_pyav(source, where, lambda num_frames, native_fps: indices)
        raise DataError(f"{where}: cannot decode video (truncated or corrupt stream)") from None


def _read_with_pyav(source: MediaSource, where: str, pick: _Picker) -> np.ndarray:
    """uint8 ``[T, H, W, 3]``: the frames ``pick`` chooses, decoded by PyAV from the start to the last one."""
    av = _import_pyav()
    opened = open_media(source)
    try:
        container = av.open(opened)
    except av.FFmpegError:
        raise DataError(f"{where}: {_open_failure(source)}") from None
    with container:
        if not container.streams.video:
            raise DataError(f"{where}: no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        num_frames = stream.frames
        if not num_frames:  # the container does not say (e.g. WebM): count packets, then rewind
            num_frames = _count_packets(container, where)
            container.seek(0)
        indices = pick(num_frames, float(rate) if rate else None)
        wanted, last = set(indices), max(indices)
        decoded: dict[int, np.ndarray] = {}
        n_decoded = 0
        try:
            for index, frame in enumerate(container.decode(stream)):
                n_decoded = index + 1
                if index in wanted:
                    decoded[index] = frame.to_ndarray(format="rgb24")
                if index == last:
                    break
        except av.FFmpegError:
            raise DataError(f"{where}: cannot decode video (truncated or corrupt stream)") from None
    if len(decoded) < len(wanted):
        raise DataError(
            f"{where}: truncated video: the container lists {num_frames} frames, only {n_decoded} could be decoded"
        )
    return np.stack([decoded[index] for index in indices])


def _count_packets(container: Any, where: str) -> int:
    """Frames of the first video stream, counted by demuxing (no decoding) when the container does not say."""
    try:
        return sum(1 for packet in container.demux(video=0) if packet.size)
    except Exception:  # noqa: BLE001 - av.FFmpegError subclasses
        raise DataError(f"{where}: cannot read video packets (truncated or corrupt file)") from None


def _open_failure(source: MediaSource) -> str:
    """Why a container could not be opened: a cut or damaged file of a known format, or not a video at all."""
    try:
        head = read_head(source, 12)
    except OSError as exc:
        return f"cannot read file ({exc.strerror or exc})"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "cannot open video (truncated or corrupt MP4 file)"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "cannot open video (truncated or corrupt Matroska/WebM file)"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "cannot open video (truncated or corrupt AVI file)"
    return "not a video file (unrecognised format)"


def _check_arguments(
    n_frames: int, sampling: str, fps: float | None, size: int | tuple[int, int] | list[int] | None, backend: str
) -> None:
    if not _is_positive_int(n_frames):
        raise ConfigError(f"load_video: n_frames: expected int >= 1, got {n_frames!r}")
    if sampling not in ("uniform", "random"):
        raise ConfigError(f"load_video: sampling: expected 'uniform' or 'random', got {sampling!r}")
    if fps is not None and not fps > 0:
        raise ConfigError(f"load_video: fps: expected > 0 or None, got {fps!r}")
    pair = isinstance(size, (tuple, list)) and len(size) == 2 and all(_is_positive_int(side) for side in size)
    if not (size is None or _is_positive_int(size) or pair):
        raise ConfigError(f"load_video: size: expected int >= 1 or (H, W), got {size!r}")
    if backend not in ("auto", "decord", "pyav"):
        raise ConfigError(f"load_video: backend: expected 'auto', 'decord' or 'pyav', got {backend!r}")
    if backend == "decord" and not _has_decord():
        raise ConfigError("load_video: backend='decord' but decord is not installed (pip install 'mmadapt[video]')")


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _has_decord() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def _import_pyav() -> Any:
    try:
        import av
    except ImportError as exc:
        raise ImportError("mmadapt.io.video needs PyAV: pip install 'mmadapt[video]'") from exc
    return av
