"""Load an audio file as a float waveform at a chosen sample rate; compute fbank / log-mel features; write wav.

What :func:`load_audio` guarantees:

* float32 ``[S]`` (mono, the mean of the channels) or ``[C, S]`` (``mono=False``), at ``sample_rate``
  (resampled with ``torchaudio.functional.resample`` when the file's rate differs), values as stored
  (PCM scaled to [-1, 1));
* the whole file (or its first ``max_seconds``) is really decoded, and a WAV file whose ``data`` chunk is
  cut short fails *here* (libsndfile alone would silently return the samples that are left);
* every failure caused by the file is a :class:`~mmadapt.errors.DataError` with a one-line message naming
  the path and what is wrong, e.g. ``DataError: a.wav: truncated WAV file (the header declares 32000 bytes
  of samples, 16000 are there)``; bad arguments are a :class:`~mmadapt.errors.ConfigError`.

Files are read and written with soundfile (libsndfile); torchaudio is used only for resampling and features
(its own ``load`` / ``save`` need torchcodec and FFmpeg). Both come with ``pip install 'mmadapt[audio]'``.
The source is a path or a member of a WebDataset shard (:class:`~mmadapt.io.shard_member.ShardMember`,
decoded from its bytes in memory, named ``shard.tar:member``).
"""

from __future__ import annotations

import functools
import io
import math
import os
import struct
import warnings
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import torch

from mmadapt.errors import ConfigError, DataError
from mmadapt.io._files import check_media
from mmadapt.io.shard_member import MediaBlob, MediaSource

__all__ = ["AUDIO_EXTENSIONS", "audio_features", "load_audio", "write_audio"]

# What libsndfile reads (MP3 since libsndfile 1.1).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")

FeatureKind = Literal["fbank", "log_mel"]


def load_audio(
    path: MediaSource,
    sample_rate: int = 16000,
    mono: bool = True,
    max_seconds: float | None = None,
) -> torch.Tensor:
    """Read the audio file at ``path`` as float32 ``[S]`` (``mono``) or ``[C, S]`` at ``sample_rate``.

    ``max_seconds`` keeps only the start of the file: ``round(max_seconds * sample_rate)`` samples at most
    (the file is read a little past that point so that resampling sees the same context as for the whole file).

    Raises:
        DataError: the file is missing, a directory, empty, has an unsupported extension, is not a
            recognised audio file, is truncated, holds no samples, or holds NaN / infinite samples.
        ConfigError: an invalid argument.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
        raise ConfigError(f"load_audio: sample_rate: expected int >= 1, got {sample_rate!r}")
    if max_seconds is not None and not max_seconds > 0:
        raise ConfigError(f"load_audio: max_seconds: expected > 0 or None, got {max_seconds!r}")
    where = check_media(path, "audio", AUDIO_EXTENSIONS)
    suffix = path.suffix if isinstance(path, MediaBlob) else Path(where).suffix
    try:  # a shard member is read once, into memory; a file is opened by path
        handle: BinaryIO = io.BytesIO(path.read()) if isinstance(path, MediaBlob) else open(where, "rb")
    except OSError as exc:
        raise DataError(f"{where}: cannot read file ({exc.strerror or exc})") from None
    with handle:
        if suffix.lower() == ".wav":
            try:
                _check_wav_not_truncated(handle, where)
            except OSError as exc:
                raise DataError(f"{where}: cannot read file ({exc.strerror or exc})") from None
            handle.seek(0)
        samples, file_rate = _read(handle, where, max_seconds)  # float32 [S, C]
    if not np.isfinite(samples).all():
        raise DataError(f"{where}: audio holds NaN or infinite samples")
    waveform = torch.from_numpy(samples).T.contiguous()  # [C, S]
    if mono:
        waveform = waveform.mean(dim=0)
    if file_rate != sample_rate:
        import torchaudio

        waveform = torchaudio.functional.resample(waveform, orig_freq=file_rate, new_freq=sample_rate)
    if max_seconds is not None:
        waveform = waveform[..., : round(max_seconds * sample_rate)]
    return waveform


def audio_features(
    waveform: torch.Tensor,
    sample_rate: int,
    kind: FeatureKind = "fbank",
    n_mels: int = 128,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
) -> torch.Tensor:
    """Mel features of a mono waveform ``[S]``, as ``[frames, n_mels]`` float32.

    ``"fbank"``: Kaldi log mel filterbanks (``torchaudio.compliance.kaldi.fbank``) with the settings of AST
    (``htk_compat=True, window_type="hanning", dither=0.0``, no energy term); frames are not padded, so
    ``frames = 1 + (S - frame_length) // frame_shift`` (in samples; at 16 kHz ``1 + (S - 400) // 160``).
    ``"log_mel"``: ``torchaudio.transforms.MelSpectrogram`` (power spectrum, Hann window, centred frames, ``n_fft``
    the frame length rounded up to a power of two and large enough that no mel filter is empty) then
    ``log(x + 1e-6)``; ``frames = 1 + S // frame_shift``.

    Raises:
        DataError: the waveform is not 1-D, is shorter than one frame, or holds NaN / infinite values.
        ConfigError: an invalid argument.
    """
    if kind not in ("fbank", "log_mel"):
        raise ConfigError(f"audio_features: kind: expected 'fbank' or 'log_mel', got {kind!r}")
    if isinstance(n_mels, bool) or not isinstance(n_mels, int) or n_mels < 1:
        raise ConfigError(f"audio_features: n_mels: expected int >= 1, got {n_mels!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
        raise ConfigError(f"audio_features: sample_rate: expected int >= 1, got {sample_rate!r}")
    frame_length = round(sample_rate * frame_length_ms / 1000)
    frame_shift = round(sample_rate * frame_shift_ms / 1000)
    if frame_length < 1 or frame_shift < 1:
        raise ConfigError(
            f"audio_features: frame_length_ms={frame_length_ms} / frame_shift_ms={frame_shift_ms} give less than "
            f"one sample at {sample_rate} Hz"
        )
    if waveform.ndim != 1:
        raise DataError(f"audio_features: expected a mono waveform [S], got shape {list(waveform.shape)}")
    if waveform.shape[0] < frame_length:
        raise DataError(
            f"audio_features: waveform of {waveform.shape[0]} samples is shorter than one {frame_length_ms} ms "
            f"frame ({frame_length} samples at {sample_rate} Hz)"
        )
    if not torch.isfinite(waveform).all():
        raise DataError("audio_features: waveform holds NaN or infinite values")
    waveform = waveform.float()
    if kind == "fbank":
        from torchaudio.compliance import kaldi

        return kaldi.fbank(
            waveform.unsqueeze(0),
            sample_frequency=sample_rate,
            num_mel_bins=n_mels,
            frame_length=frame_length_ms,
            frame_shift=frame_shift_ms,
            htk_compat=True,
            window_type="hanning",
            dither=0.0,
            use_energy=False,
        )
    mel = _mel_spectrogram(sample_rate, frame_length, frame_shift, n_mels)(waveform)  # [n_mels, frames]
    return torch.log(mel + 1e-6).T.contiguous()


def write_audio(
    path: str | os.PathLike[str],
    waveform: np.ndarray | torch.Tensor,
    sample_rate: int,
    subtype: str = "PCM_16",
) -> Path:
    """Write ``waveform`` (``[S]`` or ``[C, S]``, float in [-1, 1]) as a WAV file; returns ``Path(path)``.

    ``subtype`` is the libsndfile sample format: ``"PCM_16"`` (default), ``"PCM_24"``, ``"FLOAT"``, ...
    PCM subtypes refuse samples outside [-1, 1] rather than clip them silently.
    """
    import soundfile

    where = Path(path)
    if where.suffix.lower() != ".wav":
        raise ConfigError(f"write_audio: {where}: expected a .wav path")
    samples = waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
    if samples.ndim not in (1, 2) or samples.shape[-1] == 0:
        raise ConfigError(
            f"write_audio: {where}: expected a waveform [S] or [C, S] with S >= 1, got {list(samples.shape)}"
        )
    if not np.isfinite(samples).all():
        raise ConfigError(f"write_audio: {where}: waveform holds NaN or infinite values")
    if subtype.startswith("PCM") and np.abs(samples).max() > 1.0:
        raise ConfigError(
            f"write_audio: {where}: samples reach {np.abs(samples).max():.3f}, outside [-1, 1]; {subtype} would clip"
        )
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
        raise ConfigError(f"write_audio: sample_rate: expected int >= 1, got {sample_rate!r}")
    soundfile.write(where, samples.T.astype(np.float32), sample_rate, subtype=subtype, format="WAV")
    return where


def _read(handle: BinaryIO, where: str, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """float32 ``[S, C]`` and the file's sample rate; a little more than ``max_seconds`` when it is set."""
    import soundfile

    try:
        with soundfile.SoundFile(handle) as f:
            file_rate, declared = f.samplerate, f.frames
            wanted = declared
            if max_seconds is not None:  # 10 ms past the cut: context for the resampling filter
                wanted = min(declared, math.ceil(max_seconds * file_rate) + math.ceil(0.01 * file_rate))
            samples = f.read(wanted, dtype="float32", always_2d=True)
    except soundfile.LibsndfileError as exc:
        reason = _libsndfile_reason(exc)
        if "not recognised" in reason.lower():
            raise DataError(f"{where}: not a recognised audio file ({reason})") from None
        raise DataError(f"{where}: cannot decode audio ({reason})") from None
    if declared == 0:
        raise DataError(f"{where}: audio file holds no samples")
    if len(samples) < wanted:
        raise DataError(f"{where}: truncated audio file ({len(samples)} of {wanted} frames could be decoded)")
    return samples, file_rate


def _check_wav_not_truncated(f: BinaryIO, where: str) -> None:
    """Compare the RIFF ``data`` chunk's declared size with the bytes in the file ``f`` (streamed WAVs that
    declare 0 or 0xFFFFFFFF, "size unknown", are let through; RF64 and other containers are left to
    libsndfile)."""
    size = f.seek(0, os.SEEK_END)
    f.seek(0)
    head = f.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        return
    order = "<" if head[:4] == b"RIFF" else ">"
    offset = 12
    while offset + 8 <= size:
        f.seek(offset)
        chunk_id, chunk_size = struct.unpack(f"{order}4sI", f.read(8))
        if chunk_id == b"data":
            present = size - offset - 8
            if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > present:
                raise DataError(
                    f"{where}: truncated WAV file (the header declares {chunk_size} bytes of samples, "
                    f"{present} are there)"
                )
            return
        offset += 8 + chunk_size + (chunk_size & 1)


def _libsndfile_reason(exc: Exception) -> str:
    """libsndfile's own words ("Format not recognised.") without soundfile's "Error opening '<path>': " prefix."""
    text = " ".join(str(getattr(exc, "error_string", "") or exc).split())
    return text.rstrip(".")


@functools.lru_cache(maxsize=8)
def _mel_spectrogram(sample_rate: int, frame_length: int, frame_shift: int, n_mels: int) -> torch.nn.Module:
    """MelSpectrogram whose ``n_fft`` is the frame length rounded up to a power of two, doubled until every mel
    filter covers at least one FFT bin (128 mels at 16 kHz need 1024, not 512; an empty filter is a dead row)."""
    import torchaudio

    n_fft = 1 << (frame_length - 1).bit_length()
    while n_fft < 1 << 16:
        with warnings.catch_warnings():  # torchaudio warns about empty filters: that is what we test for here
            warnings.simplefilter("ignore", UserWarning)
            filters = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate)
        if bool((filters.amax(dim=0) > 0).all()):
            break
        n_fft *= 2
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=n_fft, win_length=frame_length, hop_length=frame_shift, n_mels=n_mels
    )
