"""Audio for the speech modality: files in and out, log-mel features, the Griffin-Lim vocoder."""

from m3dgan.audio.config import PAD_VALUE, MelConfig
from m3dgan.audio.io import load_audio, save_wav
from m3dgan.audio.mel import mel_to_linear, spectral_convergence, stft_magnitude, wave_to_mel
from m3dgan.audio.vocoder import griffin_lim, mel_to_wave
from m3dgan.errors import AudioError

__all__ = [
    "PAD_VALUE",
    "AudioError",
    "MelConfig",
    "griffin_lim",
    "load_audio",
    "mel_to_linear",
    "mel_to_wave",
    "save_wav",
    "spectral_convergence",
    "stft_magnitude",
    "wave_to_mel",
]
