"""A user's audio file → the mel batch a speech model reads, with the checks it needs.

Inputs are treated like the training corpus was: resampled to the model's rate, mixed to mono,
trimmed of leading and trailing silence (the corpus was trimmed the same way), then turned into
normalised log-mels. Sources are bounded by the model (at most twice its longest training
utterance, as for text); a reference may be any length — only its first ``max_reference_s``
seconds are read, since its style is a global property.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from m3dgan.audio.config import PAD_VALUE, MelConfig
from m3dgan.audio.io import load_audio
from m3dgan.audio.mel import wave_to_mel
from m3dgan.errors import AudioError
from m3dgan.extras import require

TRIM_TOP_DB = 40.0  # what counts as silence at the ends, relative to the loudest frame
MIN_FRAMES = 8  # 128 ms: less than this is not an utterance


def trim_silence(wave: np.ndarray, cfg: MelConfig) -> np.ndarray:
    librosa = require("librosa", "trimming silence")  # the speech extra, imported when used

    trimmed, _ = librosa.effects.trim(
        wave, top_db=TRIM_TOP_DB, frame_length=cfg.win_length, hop_length=cfg.hop_length
    )
    return trimmed


def read_mels(
    path: str | Path, cfg: MelConfig, *, max_frames: int | None = None, crop: bool = False
) -> torch.Tensor:
    """Audio file → mels [T, n_mels]. Longer than ``max_frames``: an error, or with ``crop`` the
    first ``max_frames`` frames and a warning."""
    mel = wave_to_mel(trim_silence(load_audio(path, cfg.sample_rate), cfg), cfg)
    if len(mel) < MIN_FRAMES:
        ms = 1000 / cfg.frames_per_second
        raise AudioError(
            f"{path}: only {len(mel) * ms:.0f} ms of sound after trimming silence "
            f"({len(mel)} frames); need at least {MIN_FRAMES * ms:.0f} ms ({MIN_FRAMES} frames)"
        )
    if max_frames is not None and len(mel) > max_frames:
        seconds = max_frames / cfg.frames_per_second
        if not crop:
            raise AudioError(
                f"{path}: {len(mel) / cfg.frames_per_second:.1f} s of speech is longer than this "
                f"model reads ({seconds:.1f} s, twice its longest training utterance)"
            )
        warnings.warn(f"{path}: only the first {seconds:.1f} s are used", stacklevel=2)
        mel = mel[:max_frames]
    return mel


def pad_mels(mels: list[torch.Tensor]) -> torch.Tensor:
    """[T_i, n_mels] tensors → [B, T_max, n_mels], padded with the silence floor."""
    t = max(len(m) for m in mels)
    out = torch.full((len(mels), t, mels[0].shape[1]), PAD_VALUE)
    for i, m in enumerate(mels):
        out[i, : len(m)] = m
    return out
