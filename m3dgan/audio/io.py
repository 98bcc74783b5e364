"""Reading and writing audio files (soundfile), with the checks a user's file needs.

Any rate and channel count is accepted on input: channels are averaged to mono and the rate is
converted with soxr (a high-quality resampler). Problems a user can fix — a missing, unreadable,
empty or silent file — raise :class:`AudioError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from m3dgan.errors import AudioError
from m3dgan.extras import require

# soundfile and soxr (the speech extra) are imported where they are used, so an image-only
# install can import this package (m3dgan.extras)

SILENCE_PEAK = 1e-4  # a file whose loudest sample is below this (-80 dBFS) holds no speech


def load_audio(path: str | Path, sample_rate: int = 16000, min_seconds: float = 0.05) -> np.ndarray:
    """Mono float32 samples of ``path`` at ``sample_rate``."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    sf = require("soundfile", "reading audio files")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{path}: not a readable audio file ({exc})") from exc
    if data.size == 0:
        raise AudioError(f"{path}: the audio file is empty (0 samples)")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wave).all():
        raise AudioError(f"{path}: the audio holds NaN or infinite samples")
    if rate != sample_rate:
        soxr = require("soxr", "resampling audio")
        wave = soxr.resample(wave, rate, sample_rate, quality="HQ").astype(np.float32)
    if len(wave) < min_seconds * sample_rate:
        raise AudioError(
            f"{path}: only {len(wave) / sample_rate * 1000:.0f} ms of audio; "
            f"need at least {min_seconds * 1000:.0f} ms"
        )
    if np.abs(wave).max() < SILENCE_PEAK:
        raise AudioError(f"{path}: the audio is silent (peak below -80 dBFS)")
    return np.ascontiguousarray(wave, dtype=np.float32)


def save_wav(path: str | Path, wave, sample_rate: int = 16000) -> Path:
    """Write 16-bit PCM WAV atomically (temp file, then rename); returns the path."""
    path = Path(path)
    samples = np.asarray(wave.detach().cpu() if hasattr(wave, "detach") else wave, np.float32)
    samples = np.clip(np.nan_to_num(samples), -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    require("soundfile", "writing WAV files").write(
        str(tmp), samples, sample_rate, subtype="PCM_16", format="WAV"
    )
    tmp.replace(path)
    return path
