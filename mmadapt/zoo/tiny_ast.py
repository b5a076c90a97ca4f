"""``zoo:tiny-ast``: a small HF ``ASTModel`` (Audio Spectrogram Transformer) pretrained here to hear the
synthetic sounds of :mod:`mmadapt.data.synthetic.audio`.

Training clips are synthesised in memory with :func:`~mmadapt.data.synthetic.audio.synthesize` (1 s at
16 kHz, no files), turned into log-mel filterbanks by the very ``ASTFeatureExtractor`` that is saved with
the model (64 mel bins, padded to 100 frames; normalised with the mean / std of these features, measured on
the training pool), so ``AutoFeatureExtractor`` preprocessing matches training exactly. The [CLS] token
after the final LayerNorm (``last_hidden_state[:, 0]``) feeds two linear heads:

* the sound class, one of :data:`~mmadapt.data.synthetic.audio.CLASSES` (tone, rising / falling chirp,
  AM tone, noise);
* the coarse pitch band of the clip, ``low`` / ``mid`` / ``high`` (see :func:`base_frequency` and
  :func:`pitch_band`; noise has no pitch and is left out of that loss), so the [CLS] also carries an
  attribute a caption can mention ("a high rising chirp").

``synthesize`` does not return its random frequencies, so the pitch is measured on the waveform itself
(a spectral peak), which also makes it the pitch one hears rather than a hidden parameter.

The features are computed once for a pool of clips (``data.n_train_clips``) and batches are drawn from the
pool: the feature extractor runs one clip at a time (~1 ms each with synthesis) and would otherwise cost as
much as the training step. Each training clip gets a random loudness (``train.gain_db``), applied to the
cached features: without it the model told tones from AM tones partly by their mean level (AM lowers it),
and a probe on its [CLS] failed on quiet tones and loud AM tones; with it, it has to hear the modulation.
The heads are thrown away; only the ``ASTModel`` and its feature extractor are saved. Held-out accuracies
(sound class, per class, pitch band; clips at their natural loudness, and again at a random gain) are
recorded in the manifest.

Measured here (2-core CPU, 1 thread): ~135 s for the full build, held-out sound class 0.99, pitch band
0.99. Tone vs AM tone is what takes the steps: it sits near chance until ~400-600 steps, then separates
(the other classes and the pitch band are learnt in the first ~100).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mmadapt.data.synthetic.audio import CLASSES, synthesize
from mmadapt.zoo.pretrain import autocast, pretrain

CODE_VERSION = 1

PITCH_BANDS = ("low", "mid", "high")

DEFAULT_SPEC: dict = {
    "name": "zoo:tiny-ast",
    "code_version": CODE_VERSION,
    "seed": 0,
    # one intra-op thread: on this shared 2-core machine a 2-thread pool ran a training step 5-10x *slower*
    # than 1 thread whenever another process was busy (and Kaldi fbank per clip 0.5 ms → 18 ms)
    "threads": 1,
    "audio": {"sample_rate": 16000, "seconds": 1.0},
    "model": {
        "num_mel_bins": 64,
        "max_length": 100,  # frames of 10 ms: 1 s (a 1 s clip gives 98, padded with zeros to 100)
        "patch_size": 16,
        "frequency_stride": 10,
        "time_stride": 10,
        "hidden_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 256,
        "position_init": "sincos",  # 2D sin-cos (frequency × time) start for the learned position table
    },
    # pitch band edges: the log-thirds of 200 Hz to 4 kHz (synthesize's tone / AM carrier range)
    "pitch": {"edges_hz": [543.0, 1474.0]},
    "data": {"n_train_clips": 6000},
    "train": {
        "steps": 800,
        "batch_size": 64,
        "lr": 1e-3,
        "warmup_steps": 30,
        "min_lr_ratio": 0.02,
        "weight_decay": 0.05,
        "grad_clip": 1.0,
        "bf16_autocast": "auto",  # bf16 only where the CPU has it natively (pretrain.py)
        # random loudness per training clip, uniform in dB (see build())
        "gain_db": [-12.0, 6.0],
    },
    "eval": {"n_clips": 1000, "batch_size": 250},
}

#: Overrides that make a build take a few seconds (for tests); the model is then untrained.
QUICK_OVERRIDES: dict = {
    "model": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
    "data": {"n_train_clips": 20},
    "train": {"steps": 3, "batch_size": 8, "warmup_steps": 1},
    "eval": {"n_clips": 10, "batch_size": 10},
}

_PITCHED_WINDOW_S = 0.064  # chirps: the spectrum of a 64 ms window at mid-clip


def base_frequency(waveform: np.ndarray, label: str, sample_rate: int) -> float | None:
    """The clip's base frequency in Hz, measured on ``waveform`` [S]; ``None`` for ``noise``.

    Tones: the sine's frequency; AM tones: the carrier's (both the peak of the whole clip's Hann-windowed
    spectrum, 1 Hz bins for 1 s); chirps: the frequency at mid-clip (the peak of a 64 ms window there), the
    geometric centre of the sweep, so a rising and a falling chirp over the same range get the same band.
    """
    if label == "noise":
        return None
    x = np.asarray(waveform, dtype=np.float64)
    if label in ("rising_chirp", "falling_chirp"):
        n = min(len(x), round(_PITCHED_WINDOW_S * sample_rate))
        start = max(0, len(x) // 2 - n // 2)
        x = x[start : start + n]
    n_fft = max(len(x), 1 << 12)  # zero-padding: at least 4096 bins (~4 Hz at 16 kHz) for short windows
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=n_fft))
    spectrum[0] = 0.0  # no DC
    return float(np.argmax(spectrum) * sample_rate / n_fft)


def pitch_band(frequency: float | None, edges_hz=DEFAULT_SPEC["pitch"]["edges_hz"]) -> str | None:
    """``"low"`` below ``edges_hz[0]``, ``"high"`` from ``edges_hz[1]``, else ``"mid"``; ``None`` for ``None``."""
    if frequency is None:
        return None
    return PITCH_BANDS[int(np.searchsorted(np.asarray(edges_hz), frequency, side="right"))]


def sincos_grid(rows: int, cols: int, dim: int) -> torch.Tensor:
    """Fixed 2D sin-cos position embeddings ``[rows · cols, dim]`` in row-major order (AST patches run over
    frequency, then time): half the channels encode the row (frequency), half the column (time)."""
    if dim % 4:
        raise ValueError(f"sincos_grid: hidden size {dim} is not a multiple of 4")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    r, c = torch.meshgrid(torch.arange(rows, dtype=torch.float64), torch.arange(cols, dtype=torch.float64),
                          indexing="ij")

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(r), encode(c)], dim=1).float()


def make_feature_extractor(spec: dict, mean: float = 0.0, std: float = 0.5, normalize: bool = True):
    """The ``ASTFeatureExtractor`` of ``spec`` (Kaldi fbank, padded / cut to ``max_length`` frames), which
    maps a log-mel value ``x`` to ``(x - mean) / (2 · std)`` (AST's convention) when ``normalize``."""
    from transformers import ASTFeatureExtractor

    m = spec["model"]
    return ASTFeatureExtractor(sampling_rate=int(spec["audio"]["sample_rate"]), num_mel_bins=m["num_mel_bins"],
                               max_length=m["max_length"], do_normalize=normalize, mean=float(mean),
                               std=float(std), return_attention_mask=False)


def clip(seed: int, stream: int, index: int, spec: dict) -> tuple[np.ndarray, int, int]:
    """Clip ``index`` of ``stream`` (0 = train, 1 = eval): waveform [S], class index, pitch band index
    (``-100`` for noise). Classes cycle through :data:`CLASSES`, so every 5 consecutive clips are balanced."""
    label = CLASSES[index % len(CLASSES)]
    sr, seconds = int(spec["audio"]["sample_rate"]), float(spec["audio"]["seconds"])
    wave = synthesize(np.random.default_rng([seed, stream, index]), label, sr, seconds)
    band = pitch_band(base_frequency(wave, label, sr), spec["pitch"]["edges_hz"])
    return wave, CLASSES.index(label), (-100 if band is None else PITCH_BANDS.index(band))


def _features(spec: dict, seed: int, stream: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Un-normalised log-mel features ``[n, max_length, mel]`` of ``n`` clips, their classes and bands."""
    fe = make_feature_extractor(spec, normalize=False)
    sr = int(spec["audio"]["sample_rate"])
    waves, classes, bands = [], [], []
    for i in range(n):
        w, c, b = clip(seed, stream, i, spec)
        waves.append(w)
        classes.append(c)
        bands.append(b)
    feats = torch.cat([fe(waves[i : i + 256], sampling_rate=sr, return_tensors="pt")["input_values"]
                       for i in range(0, n, 256)])
    return feats, torch.tensor(classes), torch.tensor(bands)


def _with_gain(raw: torch.Tensor, gain_db: torch.Tensor, n_real: int) -> torch.Tensor:
    """Un-normalised log-mel features ``[B, T, M]`` of the same clips played ``gain_db`` [B] louder. A gain
    on the waveform is exactly a shift of its log-mel frames (Kaldi fbank is linear in the waveform up to the
    log), so loudness is changed on cached features; the zero padding after ``n_real`` frames stays zero."""
    out = raw.clone()
    out[:, :n_real] += gain_db.view(-1, 1, 1) * (math.log(10) / 10)  # log power: 2 ln(10^(dB/20))
    return out


def _real_frames(spec: dict) -> int:
    """How many fbank frames a clip really has (the rest up to ``max_length`` is zero padding)."""
    samples = round(float(spec["audio"]["seconds"]) * int(spec["audio"]["sample_rate"]))
    frame, shift = int(0.025 * spec["audio"]["sample_rate"]), int(0.010 * spec["audio"]["sample_rate"])
    return min(int(spec["model"]["max_length"]), 1 + (samples - frame) // shift)


@torch.no_grad()
def heads_accuracy(ast, class_head, pitch_head, batches) -> dict[str, float]:
    """Held-out accuracy of the sound class (overall and per class) and of the pitch band (pitched clips)."""
    ast.eval()
    hits: dict[str, list[float]] = {}
    for x, classes, bands in batches:
        cls = ast(input_values=x).last_hidden_state[:, 0]
        ok = class_head(cls).argmax(-1) == classes
        hits.setdefault("sound_class", []).extend(ok.float().tolist())
        for j, name in enumerate(CLASSES):
            hits.setdefault(f"class/{name}", []).extend(ok[classes == j].float().tolist())
        keep = bands != -100
        hits.setdefault("pitch_band", []).extend((pitch_head(cls).argmax(-1) == bands)[keep].float().tolist())
    return {k: round(sum(v) / len(v), 4) for k, v in hits.items() if v}


def build(out_dir: Path, spec: dict, progress: bool = True) -> dict:
    """Pretrain the AST of ``spec`` on synthesised sounds; save it and its feature extractor to ``out_dir``."""
    from transformers import ASTConfig, ASTModel

    t0 = time.perf_counter()
    seed, tr, m = int(spec["seed"]), spec["train"], spec["model"]
    # the training pool: features once, normalisation stats from its real (unpadded) frames
    feats, classes, bands = _features(spec, seed, 0, int(spec["data"]["n_train_clips"]))
    real = feats[:, : _real_frames(spec)]
    mean, std = float(real.mean()), float(real.std())
    fe = make_feature_extractor(spec, mean=round(mean, 6), std=round(std, 6))
    n_real = _real_frames(spec)
    t_data = time.perf_counter() - t0

    config = ASTConfig(
        hidden_size=m["hidden_size"], num_hidden_layers=m["num_hidden_layers"],
        num_attention_heads=m["num_attention_heads"], intermediate_size=m["intermediate_size"],
        hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, qkv_bias=True,
        layer_norm_eps=1e-12, patch_size=m["patch_size"], frequency_stride=m["frequency_stride"],
        time_stride=m["time_stride"], max_length=m["max_length"], num_mel_bins=m["num_mel_bins"],
    )
    torch.manual_seed(seed)
    ast = ASTModel(config)
    emb = ast.embeddings
    with torch.no_grad():
        # HF starts [CLS], [DIST] and the position table at zero: [CLS] and [DIST] would then stay equal
        # copies of each other, and patches would carry no position (rising vs falling chirps need it)
        emb.cls_token.normal_(0.0, 0.02)
        emb.distillation_token.normal_(0.0, 0.02)
        if m["position_init"] == "sincos":
            f_out, t_out = emb.get_shape(config)
            emb.position_embeddings[0, 2:] = sincos_grid(f_out, t_out, m["hidden_size"])
    class_head = torch.nn.Linear(m["hidden_size"], len(CLASSES))
    pitch_head = torch.nn.Linear(m["hidden_size"], len(PITCH_BANDS))
    n_params = sum(p.numel() for p in ast.parameters())

    params = (list(ast.named_parameters()) + [("class_head." + n, p) for n, p in class_head.named_parameters()]
              + [("pitch_head." + n, p) for n, p in pitch_head.named_parameters()])
    bs = int(tr["batch_size"])
    g = torch.Generator().manual_seed(seed)
    ast.train()

    lo_db, hi_db = (float(v) for v in tr["gain_db"])

    def step_loss(step: int) -> torch.Tensor:
        idx = torch.randint(len(feats), (bs,), generator=g)
        x = feats[idx]
        x = _with_gain(x, lo_db + (hi_db - lo_db) * torch.rand(bs, generator=g), n_real)
        x = (x - fe.mean) / (2 * fe.std)  # = fe.normalize
        with autocast(tr):
            cls = ast(input_values=x).last_hidden_state[:, 0]
            class_logits, pitch_logits = class_head(cls), pitch_head(cls)
        loss = F.cross_entropy(class_logits.float(), classes[idx])
        if (bands[idx] != -100).any():
            loss = loss + F.cross_entropy(pitch_logits.float(), bands[idx], ignore_index=-100)
        return loss

    def no_decay(name: str, p: torch.Tensor) -> bool:
        return p.dim() < 2 or "position_embeddings" in name or "token" in name

    ema, t_train = pretrain(params, no_decay, step_loss, tr, betas=(0.9, 0.99),
                            desc="zoo:tiny-ast pretrain", progress=progress)

    ev = spec["eval"]
    n_eval, ebs = int(ev["n_clips"]), int(ev["batch_size"])
    e_raw, e_classes, e_bands = _features(spec, seed, 1, n_eval)
    e_gain = lo_db + (hi_db - lo_db) * torch.rand(n_eval, generator=torch.Generator().manual_seed(seed + 1))
    acc = {}
    for prefix, raw in (("", e_raw), ("random_gain/", _with_gain(e_raw, e_gain, n_real))):
        x = torch.from_numpy(fe.normalize(raw.numpy()))
        batches = ((x[i : i + ebs], e_classes[i : i + ebs], e_bands[i : i + ebs]) for i in range(0, n_eval, ebs))
        acc.update({prefix + k: v for k, v in heads_accuracy(ast, class_head, pitch_head, batches).items()
                    if not (prefix and k.startswith("class/"))})

    ast.save_pretrained(out_dir, safe_serialization=True)
    fe.save_pretrained(out_dir)
    return {
        "n_params": n_params,
        "feature_mean": fe.mean,
        "feature_std": fe.std,
        "final_train_loss_ema": round(float(ema), 4) if ema is not None else None,
        "accuracy": acc,
        "data_seconds": round(t_data, 2),
        "train_seconds": round(t_train, 2),
        "seconds": round(time.perf_counter() - t0, 2),
    }
