"""Reading and writing audio files (soundfile), with the checks a user's file needs.

Any rate and channel count is accepted on input: channels are mixed to mono by
:func:`mix_to_mono` (the one mixdown every audio reader uses) and the rate is converted with soxr
(a high-quality resampler). Problems a user can fix — a missing, unreadable, empty or silent
file — raise :class:`AudioError` naming the file.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from m3dgan.atomic import write_bytes
from m3dgan.errors import AudioError
from m3dgan.extras import require

# soundfile and soxr (the speech extra) are imported where they are used, so an image-only
# install can import this package (m3dgan.extras)

SILENCE_PEAK = 1e-4  # a file whose loudest sample is below this (-80 dBFS) holds no speech
ANTI_PHASE = -0.5  # a channel this anti-correlated with the loudest one is wired in reverse
CANCELLED = 0.25  # a mix this much quieter (RMS, -12 dB) than its loudest channel destroyed it


def mix_to_mono(data: np.ndarray, name: str) -> np.ndarray:
    """Samples [n, channels] → mono [n] float32, without letting the channels cancel out.

    Channels are averaged, as usual; but a channel whose correlation with the loudest channel is
    below ``ANTI_PHASE`` (the same signal in opposite polarity, a common wiring fault) is inverted
    first, and if the mix is still more than 12 dB quieter than the loudest channel, the loudest
    channel is used alone. Either repair warns, naming ``name``.
    """
    data = np.asarray(data, np.float32)
    if data.ndim == 1:
        return data
    if data.shape[1] == 1:
        return data[:, 0]
    wide = data.astype(np.float64)
    rms = np.sqrt(np.mean(wide**2, axis=0))
    loudest = int(np.argmax(rms))
    if rms[loudest] == 0.0:
        return data.mean(axis=1)
    signs = np.ones(data.shape[1])
    for c in range(data.shape[1]):
        if c != loudest and rms[c] > 0:
            corr = float(wide[:, c] @ wide[:, loudest]) / (len(wide) * rms[c] * rms[loudest])
            if corr < ANTI_PHASE:
                signs[c] = -1.0
    inverted = [c + 1 for c in range(data.shape[1]) if signs[c] < 0]
    if inverted:
        warnings.warn(
            f"{name}: channel {', '.join(map(str, inverted))} carries the signal of channel "
            f"{loudest + 1} in opposite polarity (averaging would cancel it); inverted it before "
            "mixing to mono",
            stacklevel=3,
        )
    mix = (wide * signs).mean(axis=1)
    if np.sqrt(np.mean(mix**2)) < CANCELLED * rms[loudest]:
        warnings.warn(
            f"{name}: its {data.shape[1]} channels cancel out when mixed to mono; "
            f"using channel {loudest + 1}, the loudest, alone",
            stacklevel=3,
        )
        return data[:, loudest]
    return mix.astype(np.float32)


def load_audio(path: str | Path, sample_rate: int = 16000, min_seconds: float = 0.05) -> np.ndarray:
    """Mono float32 samples of ``path`` at ``sample_rate`` (channels mixed by :func:`mix_to_mono`).

    Silent means every channel peaks below -80 dBFS; the check is made on the channels as
    stored, so the message never blames a file whose channels would cancel in a plain average.
    """
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
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: the audio holds NaN or infinite samples")
    if np.abs(data).max() < SILENCE_PEAK:
        channels = "every channel peaks" if data.shape[1] > 1 else "peak"
        raise AudioError(f"{path}: the audio is silent ({channels} below -80 dBFS)")
    wave = mix_to_mono(data, str(path))
    if rate != sample_rate:
        soxr = require("soxr", "resampling audio")
        wave = soxr.resample(wave, rate, sample_rate, quality="HQ").astype(np.float32)
    if len(wave) < min_seconds * sample_rate:
        raise AudioError(
            f"{path}: only {len(wave) / sample_rate * 1000:.0f} ms of audio; "
            f"need at least {min_seconds * 1000:.0f} ms"
        )
    if np.abs(wave).max() < SILENCE_PEAK:  # a mix or resampling of a file just above the floor
        raise AudioError(f"{path}: the audio is silent after mixing to mono and resampling")
    return np.ascontiguousarray(wave, dtype=np.float32)


def save_wav(path: str | Path, wave, sample_rate: int = 16000) -> Path:
    """Write 16-bit PCM WAV atomically (``m3dgan.atomic``); returns the path.

    The WAV is encoded in memory first: libsndfile writing to a file reports a full disk as a
    bare "System error" without its cause, the atomic writer names the path and the cause
    (OutputError) and leaves no partial file."""
    path = Path(path)
    samples = np.asarray(wave.detach().cpu() if hasattr(wave, "detach") else wave, np.float32)
    samples = np.clip(np.nan_to_num(samples), -1.0, 1.0)
    buffer = io.BytesIO()
    require("soundfile", "writing WAV files").write(
        buffer, samples, sample_rate, subtype="PCM_16", format="WAV"
    )
    return write_bytes(path, buffer.getvalue())
