"""Speech from espeak-ng: one sentence in one speaking style → trimmed 16 kHz samples.

espeak-ng (Debian package ``espeak-ng``) is a formant synthesiser: deterministic, offline, fast
(~50x real time on one core) and controllable — pitch (``-p``), speed (``-s``, words per minute),
amplitude (``-a``) and, through SSML, pitch range. The Klatt variant ``en-us+klatt5`` is
understood far better by a reference ASR than the default voice, so every style uses it.

A :class:`Style` is one row of espeak-ng settings; the speech builder's four styles play the role
of the paper's EMT-4 emotions (see :mod:`m3dgan.data.builtin.speech` for the choice and how well a
classifier tells them apart).
"""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import asdict, dataclass
from xml.sax.saxutils import escape

import numpy as np

from m3dgan.audio.config import MelConfig
from m3dgan.audio.inputs import trim_silence
from m3dgan.audio.io import mix_to_mono
from m3dgan.errors import DataError
from m3dgan.extras import require  # soundfile, soxr: the speech extra, imported when used

VOICE = "en-us+klatt5"
TIMEOUT_S = 60.0  # one sentence takes milliseconds; anything this slow is a hung process


@dataclass(frozen=True)
class Style:
    """espeak-ng settings of one speaking style."""

    name: str
    pitch: int  # -p, 0..99 (espeak default 50)
    speed: int  # -s, words per minute (default 175)
    amplitude: int  # -a, 0..200 (default 100)
    pitch_range: str = "medium"  # SSML <prosody range>: x-low, low, medium, high, x-high

    def arguments(self) -> list[str]:
        return ["-p", str(self.pitch), "-s", str(self.speed), "-a", str(self.amplitude)]

    def to_dict(self) -> dict:
        return asdict(self)


def espeak_binary() -> str:
    """Path of the espeak-ng program; DataError saying how to install it when missing."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise DataError(
            "espeak-ng not found: the speech corpus is synthesised with it; install it with "
            "`sudo apt-get install espeak-ng` (scripts/setup.sh does)"
        )
    return path


def espeak_version() -> str:
    out = subprocess.run(
        [espeak_binary(), "--version"], capture_output=True, text=True, timeout=TIMEOUT_S
    )
    return out.stdout.split("Data at")[0].strip()


def ssml(text: str, style: Style) -> str:
    """The sentence as SSML with the style's pitch range (the other settings are arguments)."""
    return f'<speak><prosody range="{style.pitch_range}">{escape(text)}</prosody></speak>'


def synthesize(text: str, style: Style, voice: str = VOICE) -> tuple[np.ndarray, int]:
    """espeak-ng's raw output for ``text`` in ``style``: (float32 samples, sample rate)."""
    command = [espeak_binary(), "-v", voice, "-m", "-z", *style.arguments(), "--stdout"]
    try:
        done = subprocess.run(
            command, input=ssml(text, style).encode("utf-8"), capture_output=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise DataError(f"espeak-ng hung on {text!r} ({style.name})") from exc
    if done.returncode != 0 or not done.stdout:
        message = done.stderr.decode("utf-8", "replace").strip()
        raise DataError(f"espeak-ng failed on {text!r} ({style.name}): {message}")
    sf = require("soundfile", "the speech corpus")
    try:
        data, rate = sf.read(io.BytesIO(done.stdout), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise DataError(f"espeak-ng wrote unreadable audio for {text!r}: {exc}") from exc
    return mix_to_mono(data, f"espeak-ng output for {text!r}"), rate  # the one mixdown


def render(text: str, style: Style, cfg: MelConfig, voice: str = VOICE) -> np.ndarray:
    """``text`` spoken in ``style`` at ``cfg.sample_rate``, silence trimmed from both ends, the
    way :func:`m3dgan.audio.inputs.read_mels` treats a user's recording."""
    wave, rate = synthesize(text, style, voice)
    if rate != cfg.sample_rate:
        soxr = require("soxr", "the speech corpus")
        wave = soxr.resample(wave, rate, cfg.sample_rate, quality="HQ")
    wave = np.clip(wave, -1.0, 1.0).astype(np.float32)
    trimmed = trim_silence(wave, cfg) if len(wave) >= cfg.n_fft else wave[:0]
    if len(trimmed) < cfg.n_fft:  # less than one analysis window: nothing was spoken
        raise DataError(f"espeak-ng produced only silence for {text!r} ({style.name})")
    return np.ascontiguousarray(trimmed, dtype=np.float32)
