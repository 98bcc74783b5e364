"""Waveforms ↔ normalised log-mel spectrograms (torch; batched; CPU or GPU).

The mel filterbank is librosa's (Slaney-normalised); everything else is torch so features can be
computed on the device next to the model, for a batch at once.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from m3dgan.audio.config import PAD_VALUE, MelConfig
from m3dgan.extras import require

_AMP_FLOOR = 1e-5  # -100 dB: quieter than anything the normalised range keeps


@lru_cache(maxsize=8)
def _filterbank(cfg: MelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(mel basis [n_mels, F], its pseudo-inverse [F, n_mels]) for ``cfg``, as float32."""
    # imported lazily: librosa is the speech extra, and it pulls numba (a second to load)
    librosa = require("librosa", "mel spectrograms")

    basis = librosa.filters.mel(
        sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax
    ).astype(np.float32)
    pinv = np.linalg.pinv(basis).astype(np.float32)
    return torch.from_numpy(basis), torch.from_numpy(pinv)


def _window(cfg: MelConfig, device: torch.device) -> torch.Tensor:
    return torch.hann_window(cfg.win_length, device=device)


def _as_batch(wave: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, bool]:
    x = torch.as_tensor(np.asarray(wave) if not isinstance(wave, torch.Tensor) else wave)
    x = x.float()
    single = x.ndim == 1
    return (x[None] if single else x), single


def stft_magnitude(wave: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """|STFT| [B, F, T] of waves [B, N]."""
    spec = torch.stft(
        wave,
        cfg.n_fft,
        cfg.hop_length,
        cfg.win_length,
        window=_window(cfg, wave.device),
        center=True,
        return_complex=True,
    )
    return spec.abs()


def wave_to_mel(wave: np.ndarray | torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """Waves [N] or [B, N] (float, [-1, 1], at ``cfg.sample_rate``) → normalised log-mel
    [T, n_mels] or [B, T, n_mels] in [-1, 1] (float32)."""
    x, single = _as_batch(wave)
    basis, _ = _filterbank(cfg)
    mel = basis.to(x.device) @ stft_magnitude(x, cfg)  # [B, n_mels, T]
    db = 20.0 * torch.log10(mel.clamp_min(_AMP_FLOOR)) - cfg.ref_db
    norm = ((db - cfg.min_db) / -cfg.min_db).clamp(0.0, 1.0) * 2.0 - 1.0
    out = norm.transpose(1, 2).contiguous()
    return out[0] if single else out


def mel_to_linear(mel: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """Normalised log-mel [B, T, n_mels] → non-negative linear magnitude [B, F, T] (the
    pseudo-inverse of the filterbank, clamped at zero)."""
    db = (mel.float().clamp(-1.0, 1.0) + 1.0) / 2.0 * -cfg.min_db + cfg.min_db + cfg.ref_db
    amp = torch.pow(10.0, db / 20.0)
    amp = torch.where(mel <= PAD_VALUE, torch.zeros_like(amp), amp)  # the floor is silence
    _, pinv = _filterbank(cfg)
    return (pinv.to(mel.device) @ amp.transpose(1, 2)).clamp_min(0.0)


def spectral_convergence(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """‖|S| − |Ŝ|‖_F / ‖|S|‖_F between two magnitude spectrograms (0 = identical)."""
    t = min(reference.shape[-1], estimate.shape[-1])
    ref, est = reference[..., :t], estimate[..., :t]
    return float(
        torch.linalg.vector_norm(ref - est) / torch.linalg.vector_norm(ref).clamp_min(1e-8)
    )
