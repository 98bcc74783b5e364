"""Stereo files users hand us (issue 10, section 2, case 7): a mixdown must not destroy the
speech, and "silent" must mean silent.

Real speech from espeak-ng ("hello there"), written as the files people have: mono, stereo with
both channels alike, and stereo with the second channel in opposite polarity (a common wiring
fault, where a plain average of the channels is digital silence).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import TINY_SPEECH_OVERRIDES, set_args
from speech_fixtures import tiny_tts_dataset

import m3dgan
from m3dgan.audio import AudioError, MelConfig, load_audio, wave_to_mel
from m3dgan.audio.inputs import read_mels, trim_silence
from m3dgan.audio.io import mix_to_mono
from m3dgan.cli import main
from m3dgan.data.formats.utterances import Utterance, utterance_mel

pytestmark = [
    pytest.mark.usefixtures("isolated_env"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng"),
]


def espeak(text: str, path: Path, *args: str) -> Path:
    subprocess.run(["espeak-ng", *args, "-w", str(path), text], check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("stereo")
    mono = espeak("hello there", folder / "mono.wav")
    samples, rate = sf.read(str(mono), dtype="int16")  # espeak-ng: 16-bit PCM
    assert np.abs(samples).max() > 3000  # real speech at a real level
    out = {"mono": mono}
    for name, right in (("in_phase", samples), ("anti_phase", -samples)):
        out[name] = folder / f"{name}.wav"
        sf.write(str(out[name]), np.stack([samples, right], axis=1), rate, subtype="PCM_16")
    out["silent"] = folder / "silent.wav"
    sf.write(str(out["silent"]), np.zeros((rate, 2), np.int16), rate, subtype="PCM_16")
    return out


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_anti_phase_stereo_is_read_at_full_level(files: dict[str, Path]) -> None:
    mono = load_audio(files["mono"])
    with pytest.warns(UserWarning) as caught:
        wave = load_audio(files["anti_phase"])
    assert wave.shape == mono.shape
    assert rms(wave) == pytest.approx(rms(mono), rel=1e-3)  # full level, not -inf dB
    assert np.abs(wave - mono).max() < 1e-4
    assert [str(w.message) for w in caught] == [
        f"{files['anti_phase']}: channel 2 carries the signal of channel 1 in opposite polarity "
        "(averaging would cancel it); inverted it before mixing to mono"
    ]


def test_in_phase_stereo_is_the_plain_average(files: dict[str, Path], recwarn) -> None:
    assert np.abs(load_audio(files["in_phase"]) - load_audio(files["mono"])).max() < 1e-6
    assert not [w for w in recwarn if "channel" in str(w.message)]


def test_silence_message_tells_the_truth(files: dict[str, Path]) -> None:
    with pytest.raises(AudioError, match=r"silent\.wav: the audio is silent \(every channel peaks"):
        load_audio(files["silent"])
    with pytest.warns(UserWarning, match="opposite polarity"):
        load_audio(files["anti_phase"])  # the channels are loud: never called silent


def test_channels_that_cancel_without_being_opposite_fall_back_to_the_loudest(
    tmp_path: Path,
) -> None:
    """Channels 2 and 3 at 115° and 245° from channel 1, the loudest (each correlates with it at
    -0.42, so neither is "inverted"): their average is over 20 dB below each channel, so the
    loudest channel is used alone."""
    rate = 16000
    t = np.arange(rate) / rate
    channels = [np.sin(2 * np.pi * 220 * t + np.radians(a)) for a in (0, 115, 245)]
    channels[0] = channels[0] * 1.05  # channel 1 is the loudest
    data = (0.5 * np.stack(channels, axis=1)).astype(np.float32)
    sf.write(str(tmp_path / "three.wav"), data, rate, subtype="FLOAT")
    with pytest.warns(UserWarning, match=r"three\.wav: its 3 channels cancel out .* channel 1"):
        wave = load_audio(tmp_path / "three.wav")
    assert np.array_equal(wave, data[:, 0])
    assert rms(data.mean(axis=1)) < 0.1 * rms(wave)  # what a plain average would have given


def test_mix_to_mono_keeps_mono_and_plain_stereo_as_before() -> None:
    rng = np.random.default_rng(0)
    left, right = rng.normal(size=(2, 4000)).astype(np.float32) * 0.1
    assert np.array_equal(mix_to_mono(left[:, None], "x"), left)
    both = np.stack([left, right], axis=1)  # uncorrelated channels: averaged, no warning
    np.testing.assert_allclose(mix_to_mono(both, "x"), both.mean(axis=1), atol=1e-7)


def test_corpus_converters_use_the_same_mixdown(files: dict[str, Path]) -> None:
    """LJSpeech and LibriSpeech rows (utterances.utterance_mel) and users' speech inputs
    (read_mels) go through load_audio, so an anti-phase recording gives the mono mel."""
    cfg = MelConfig()
    expected = wave_to_mel(trim_silence(load_audio(files["mono"]), cfg), cfg)
    with pytest.warns(UserWarning, match="opposite polarity"):
        mel = read_mels(files["anti_phase"], cfg)
    assert torch.allclose(mel, expected, atol=1e-3)
    row = Utterance("LJ001-0001", "hello there", files["anti_phase"], 0, "metadata.csv, line 1")
    with pytest.warns(UserWarning, match="opposite polarity"):
        corpus_mel = utterance_mel(row, cfg)
    assert torch.allclose(corpus_mel.float(), expected, atol=1e-2)  # stored as float16


def test_every_audio_reader_mixes_down_with_mix_to_mono() -> None:
    """Any module that decodes audio with soundfile (``sf.read``) mixes it with mix_to_mono,
    or gets it from load_audio, so there is one mixdown (builtin/espeak.py, audio/io.py today)."""
    root = Path(m3dgan.__file__).parent
    readers = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        if calls & {"sf.read", "soundfile.read", "sf.SoundFile", "sf.blocks"}:
            readers.append(path.relative_to(root).as_posix())
            assert "mix_to_mono" in calls, f"{path} reads audio without mix_to_mono"
    assert "audio/io.py" in readers and "data/builtin/espeak.py" in readers


# --- through the command line -----------------------------------------------------------------

SPEECH_OVERRIDES = TINY_SPEECH_OVERRIDES


@pytest.fixture(scope="module")
def tts_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step tts run on 4 espeak-ng sentences in 2 styles (a reference sets the style)."""
    data = tiny_tts_dataset(tmp_path_factory.mktemp("speech"), MelConfig())
    out = tmp_path_factory.mktemp("runs") / "tts"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("M3DGAN_HOME", str(tmp_path_factory.mktemp("home")))
        args = ["train", "--task", "tts", "--data", str(data), "--out", str(out), "--steps", "2"]
        assert main([*args, "--no-progress", *set_args(SPEECH_OVERRIDES)]) == 0
    torch.set_num_threads(threads)
    return out


def test_cli_takes_an_anti_phase_reference(
    tts_run: Path, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    base = ["translate", "--checkpoint", str(tts_run), "--text", "The cat.", "--out", str(out)]
    with pytest.warns(UserWarning, match=r"anti_phase\.wav: channel 2 .* opposite polarity"):
        code = main([*base, "--reference", str(files["anti_phase"]), "--seed", "0"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert sf.info(str(out / "text0_ref0.wav")).frames > 0
    # the same style as the mono recording gives: the reference is the same speech
    mono_out = tmp_path / "mono"
    base[-1] = str(mono_out)
    assert main([*base, "--reference", str(files["mono"]), "--seed", "0"]) == 0
    a, _ = sf.read(str(out / "text0_ref0.wav"))
    b, _ = sf.read(str(mono_out / "text0_ref0.wav"))
    assert a.shape == b.shape and np.abs(a - b).max() < 0.05


def test_cli_silent_stereo_reference_is_called_silent(
    tts_run: Path, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(
        ["translate", "--checkpoint", str(tts_run), "--text", "The cat.", "--out", str(tmp_path)]
        + ["--reference", str(files["silent"])]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    assert "silent.wav: the audio is silent (every channel peaks below -80 dBFS)" in err
