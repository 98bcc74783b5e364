"""Griffin-Lim: a magnitude spectrogram → a waveform, batched in torch.

The fast variant (Perraudin et al. 2013: a momentum step on the phase estimate) converges in far
fewer iterations than the original, so 32 iterations are enough for intelligible speech. A whole
batch of utterances is one stft/istft per iteration; padded frames are silence and each wave is
cut back to its own length.
"""

from __future__ import annotations

import torch

from m3dgan.audio.config import MelConfig
from m3dgan.audio.mel import _window, mel_to_linear


def griffin_lim(
    magnitude: torch.Tensor,
    cfg: MelConfig,
    iterations: int = 32,
    momentum: float = 0.99,
    power: float = 1.2,
    seed: int = 0,
) -> torch.Tensor:
    """Linear magnitudes [B, F, T] → waves [B, (T − 1) · hop]. ``power`` > 1 sharpens the
    spectrogram before phase recovery (less of Griffin-Lim's metallic buzz)."""
    mag = magnitude.float().pow(power)
    shortest = cfg.n_fft // cfg.hop_length + 2  # the STFT's centre padding needs n_fft samples
    if mag.shape[-1] < shortest:  # a few frames: pad with silence (cut off again by lengths)
        mag = torch.nn.functional.pad(mag, (0, shortest - mag.shape[-1]))
    window = _window(cfg, mag.device)
    length = (mag.shape[-1] - 1) * cfg.hop_length
    gen = torch.Generator(device="cpu").manual_seed(seed)
    # one random start shared by every row (and every length): a row's output does not depend on
    # what else is in the batch
    # (drawn frame-major, so a shorter utterance gets a prefix of a longer one's start)
    phase = torch.rand(mag.shape[-1], mag.shape[-2], generator=gen).T.to(mag.device) * 2 * torch.pi
    spec = torch.polar(mag, phase)
    previous = torch.zeros_like(spec)

    def istft(s: torch.Tensor) -> torch.Tensor:
        return torch.istft(
            s, cfg.n_fft, cfg.hop_length, cfg.win_length, window=window, length=length
        )

    for _ in range(iterations):
        wave = istft(spec)
        rebuilt = torch.stft(
            wave,
            cfg.n_fft,
            cfg.hop_length,
            cfg.win_length,
            window=window,
            center=True,
            return_complex=True,
        )
        accelerated = rebuilt + (momentum / (1 + momentum)) * (rebuilt - previous)
        previous = rebuilt
        spec = mag * (accelerated / accelerated.abs().clamp_min(1e-8))  # unit phasors
    return istft(spec)


@torch.no_grad()
def mel_to_wave(
    mel: torch.Tensor,
    cfg: MelConfig,
    iterations: int = 32,
    lengths: torch.Tensor | list[int] | None = None,
) -> torch.Tensor:
    """Normalised log-mel [T, n_mels] or [B, T, n_mels] → waves [N] or [B, N] in [-1, 1].

    ``lengths`` (frames per row) cut each wave to its utterance; rows of a padded batch are
    otherwise as long as the longest one, with silence at the end."""
    single = mel.ndim == 2
    x = mel[None] if single else mel
    waves = griffin_lim(mel_to_linear(x, cfg), cfg, iterations)
    peak = waves.abs().amax(dim=1, keepdim=True).clamp_min(1.0)
    waves = waves / peak  # only ever scales down, never amplifies noise
    if lengths is not None:
        n = [max(int(t) - 1, 1) * cfg.hop_length for t in lengths]
        waves = torch.stack(
            [
                torch.nn.functional.pad(w[:k], (0, waves.shape[1] - k))
                for w, k in zip(waves, n, strict=True)
            ]
        )
    return waves[0] if single else waves
