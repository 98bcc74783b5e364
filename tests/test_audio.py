"""Audio I/O, log-mel features and the Griffin-Lim vocoder on real espeak-ng speech."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from m3dgan.audio import (
    PAD_VALUE,
    AudioError,
    MelConfig,
    load_audio,
    mel_to_linear,
    mel_to_wave,
    save_wav,
    spectral_convergence,
    stft_magnitude,
    wave_to_mel,
)

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory) -> Path:
    """A real utterance as espeak-ng writes it (22050 Hz mono)."""
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-v", "en-us+klatt5", "-w", str(path), "Please call Stella at noon."],
        check=True,
    )
    return path


def test_load_resamples_to_16k(speech_wav):
    rate = sf.info(str(speech_wav)).samplerate
    assert rate == 22050
    wave = load_audio(speech_wav)
    native, _ = sf.read(str(speech_wav), dtype="float32")
    assert wave.dtype == np.float32
    assert abs(len(wave) - len(native) * 16000 / rate) <= 2


def test_unusual_rate_and_stereo_give_the_same_features(speech_wav, tmp_path):
    wave = load_audio(speech_wav)
    import soxr

    odd = soxr.resample(wave, 16000, 11025)
    stereo = np.stack([odd, odd], axis=1)
    path = tmp_path / "odd.flac"
    sf.write(str(path), stereo, 11025)
    again = load_audio(path)
    mel_a, mel_b = wave_to_mel(wave, MelConfig()), wave_to_mel(again, MelConfig())
    t = min(len(mel_a), len(mel_b))
    assert abs(len(mel_a) - len(mel_b)) <= 1
    # 11025 Hz keeps content below 5.5 kHz only: compare the bins under 4 kHz
    low = int(0.6 * MelConfig().n_mels)
    assert (mel_a[:t, :low] - mel_b[:t, :low]).abs().mean() < 0.05


def test_mel_range_and_silence_floor(speech_wav):
    mel = wave_to_mel(load_audio(speech_wav), MelConfig())
    assert mel.shape[1] == 80 and mel.min() >= -1 and mel.max() <= 1
    silent = wave_to_mel(np.zeros(16000, np.float32), MelConfig())
    assert torch.all(silent == PAD_VALUE)


def test_griffin_lim_round_trip_spectral_convergence(speech_wav):
    cfg = MelConfig()
    wave = torch.from_numpy(load_audio(speech_wav))
    ref = stft_magnitude(wave[None], cfg)
    rebuilt = mel_to_wave(wave_to_mel(wave, cfg), cfg)
    sc = spectral_convergence(ref, stft_magnitude(rebuilt[None], cfg))
    # the mel projection alone loses ~0.3 here; Griffin-Lim adds little on top of it
    mel_only = spectral_convergence(ref, mel_to_linear(wave_to_mel(wave, cfg)[None], cfg))
    assert sc < 0.45 and sc < mel_only + 0.1
    # and many more iterations converge further than a few
    few = mel_to_wave(wave_to_mel(wave, cfg), cfg, iterations=2)
    assert sc < spectral_convergence(ref, stft_magnitude(few[None], cfg))


def test_batched_vocoder_matches_single_and_cuts_lengths(speech_wav):
    wave = load_audio(speech_wav)
    cfg = MelConfig()
    long, short = wave_to_mel(wave, cfg), wave_to_mel(wave[: len(wave) // 2], cfg)
    batch = torch.full((2, len(long), 80), PAD_VALUE)
    batch[0], batch[1, : len(short)] = long, short
    waves = mel_to_wave(batch, cfg, lengths=[len(long), len(short)])
    alone = mel_to_wave(short, cfg)
    n = len(alone)
    assert waves[1, n:].abs().max() == 0
    # same phase seed, same frames: the short row sounds like the short clip on its own
    assert torch.corrcoef(torch.stack([waves[1, : n - 2048], alone[: n - 2048]]))[0, 1] > 0.9


def test_save_wav_round_trip(tmp_path):
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000).astype(np.float32)
    path = save_wav(tmp_path / "out" / "tone.wav", torch.from_numpy(tone) * 3)  # clipped
    data, rate = sf.read(str(path), dtype="float32")
    assert rate == 16000 and len(data) == 8000 and np.abs(data).max() <= 1.0
    assert not list(path.parent.glob(".*tmp"))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such audio file"),
        (lambda p: p.write_bytes(b"RIFF\x00\x00garbage" * 10), "not a readable audio file"),
        (lambda p: sf.write(str(p), np.zeros((0,), np.float32), 16000), "empty"),
        (lambda p: sf.write(str(p), np.zeros(16000, np.float32), 16000), "silent"),
        (lambda p: sf.write(str(p), np.full(10, 0.5, np.float32), 16000), "ms of audio"),
    ],
)
def test_bad_audio_is_a_clear_error(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=message):
        load_audio(path)
