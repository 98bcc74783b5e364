"""tts and asr end to end through the CLI on a small real espeak-ng corpus in the store format:
train, translate (reference WAV at an odd rate, token weights, style scale, random z, speech
input), evaluate, and the errors bad audio gets."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from conftest import TINY_SPEECH_OVERRIDES, set_args

from m3dgan.audio import MelConfig, load_audio, wave_to_mel
from m3dgan.audio.inputs import trim_silence
from m3dgan.cli import main
from m3dgan.data.store import Manifest, write_dataset

pytestmark = [
    pytest.mark.usefixtures("isolated_env"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng"),
]

SENTENCES = [
    "The cat sat on the mat.",
    "A dog ran in the park.",
    "We like green tea.",
    "Open the red door.",
    "She sells sea shells.",
    "Time flies like an arrow.",
]
STYLES = {"low-slow": ["-p", "20", "-s", "120"], "high-fast": ["-p", "80", "-s", "220"]}
SPEECH_OVERRIDES = [*TINY_SPEECH_OVERRIDES, "train.sample_every=3", "train.checkpoint_every=3"]


def espeak(text: str, args: list[str], path: Path) -> Path:
    subprocess.run(["espeak-ng", "-v", "en-us+klatt5", *args, "-w", str(path), text], check=True)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """6 sentences × 2 styles; train on 4 sentences, test on 2 (both styles each)."""
    folder = tmp_path_factory.mktemp("speech")
    cfg = MelConfig()
    splits = {}
    for split, sents in (("train", SENTENCES[:4]), ("test", SENTENCES[4:])):
        texts, mels, domains, labels = [], [], [], []
        for k, text in enumerate(sents):
            for d, args in enumerate(STYLES.values()):
                wave = load_audio(espeak(text, args, folder / "clip.wav"))
                mels.append(wave_to_mel(trim_silence(wave, cfg), cfg))
                texts.append(text)
                domains.append(d)
                labels.append(k)
        splits[split] = {
            "source": texts,
            "target": mels,
            "label": torch.tensor(labels),
            "domain": torch.tensor(domains),
        }
    manifest = Manifest(
        name="tiny-speech",
        image_size=0,
        source_channels=0,
        target_channels=cfg.n_mels,
        source_kind="text",
        target_kind="speech",
        domains=list(STYLES),
        audio=cfg.to_dict(),
    )
    return write_dataset(folder / "data", manifest, splits)


@pytest.fixture(scope="module")
def odd_reference(tmp_path_factory) -> Path:
    """A reference WAV of another text at 44.1 kHz stereo (any rate and channels are accepted)."""
    folder = tmp_path_factory.mktemp("ref")
    wave, rate = sf.read(str(espeak("Hello there.", STYLES["high-fast"], folder / "a.wav")))
    up = soxr.resample(wave, rate, 44100)
    path = folder / "reference.wav"
    sf.write(str(path), np.stack([up, up], axis=1), 44100)
    return path


def train(task: str, data: Path, out: Path, objective: str = "full", steps: int = 3) -> Path:
    args = ["train", "--task", task, "--objective", objective, "--data", str(data)]
    args += ["--out", str(out), "--steps", str(steps), "--no-progress"]
    assert main(args + set_args(SPEECH_OVERRIDES)) == 0
    return out


@pytest.fixture(scope="module")
def tts_run(corpus, tmp_path_factory) -> Path:
    return train("tts", corpus, tmp_path_factory.mktemp("runs") / "tts")


def wav_info(path: Path) -> tuple[int, int]:
    info = sf.info(str(path))
    return info.samplerate, info.frames


def test_tts_training_writes_checkpoint_and_audible_samples(tts_run):
    assert list((tts_run / "checkpoints").glob("*.safetensors"))
    assert list((tts_run / "samples").glob("step_*.png"))
    wavs = list((tts_run / "samples").glob("step_*/*.wav"))
    assert wavs and all(wav_info(w)[0] == 16000 for w in wavs)


def test_translate_with_reference_tokens_scale_and_samples(tts_run, odd_reference, tmp_path):
    out = tmp_path / "out"
    base = ["translate", "--checkpoint", str(tts_run), "--text", "We like tea.", "--seed", "1"]
    assert main([*base, "--reference", str(odd_reference), "--out", str(out)]) == 0
    rate, frames = wav_info(out / "text0_ref0.wav")
    assert rate == 16000 and frames > 0
    assert "text0_ref0.wav" in (out / "index.html").read_text()  # a page to listen to them
    assert main([*base, "--tokens", "1:0.7,3:0.3", "--style-scale", "1.5", "--out", str(out)]) == 0
    assert (out / "text0_tok0.wav").is_file()
    assert "tokens 1:0.7,3:0.3, style scale 1.5" in (out / "index.html").read_text()
    assert main([*base, "--samples", "2", "--out", str(out)]) == 0
    assert (out / "text0_z1.wav").is_file()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "not a readable audio file|empty"),
        (lambda p: p.write_bytes(b"RIFF1234WAVEfmt garbage"), "not a readable audio file"),
        (lambda p: sf.write(str(p), np.zeros(16000, np.float32), 16000), "silent"),
        # 10 ms of a tone in a second of silence: too short, said in milliseconds
        (
            lambda p: sf.write(
                str(p),
                np.concatenate(
                    [
                        np.zeros(8000),
                        0.5 * np.sin(np.arange(160) * 0.3),
                        np.zeros(8000),
                    ]
                ).astype(np.float32),
                16000,
            ),
            r"only \d+ ms of sound after trimming silence \(\d+ frames\); need at least 128 ms",
        ),
    ],
)
def test_bad_reference_audio_is_a_clean_error(tts_run, tmp_path, capsys, make, message):
    bad = tmp_path / "bad.wav"
    make(bad)
    code = main(
        ["translate", "--checkpoint", str(tts_run), "--text", "Hi there.", "--reference", str(bad)]
        + ["--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "error:" in err and "Traceback" not in err
    import re

    assert re.search(message, err)


def test_a_wav_as_tts_input_says_the_input_is_text(tts_run, tmp_path, capsys):
    wav = tmp_path / "speech.wav"
    sf.write(str(wav), (0.3 * np.sin(np.arange(16000) * 0.05)).astype(np.float32), 16000)
    args = ["translate", "--checkpoint", str(tts_run), "--input", str(wav)]
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{wav}: cannot read text" in err and "give a UTF-8 .txt file or --text" in err
    assert "Traceback" not in err


def test_bad_token_weights_are_a_clean_error(tts_run, tmp_path, capsys):
    code = main(
        ["translate", "--checkpoint", str(tts_run), "--text", "Hi.", "--tokens", "9:1"]
        + ["--out", str(tmp_path / "o")]
    )
    assert code == 2 and "INDEX:WEIGHT" in capsys.readouterr().err


def test_evaluate_tts_writes_metrics_and_a_listening_page(tts_run, corpus, tmp_path):
    from m3dgan.evaluate import evaluate

    metrics = evaluate(
        tts_run, data_root=corpus, audio_dir=tmp_path / "audio", judge_steps=5, progress=False
    )
    for key in ("wer_tts_ref", "wer_tts_z", "wer_real", "style_accuracy_tts", "length_ratio"):
        assert metrics[key] is not None and metrics[key] >= 0
    # per reference style: the outputs' rates, and the same sentences' real audio (the ceiling)
    for key in ("wer_tts_ref_per_style", "cer_tts_ref_per_style", "wer_vocoded_per_style"):
        assert sorted(metrics[key]) == sorted(metrics["styles"])
        assert all(v >= 0 for v in metrics[key].values())
    # every style says the same sentences (as many words and characters), so the corpus rate is
    # the mean of the styles' rates
    styles = len(metrics["styles"])
    for key in ("wer_tts_ref", "cer_tts_ref"):
        mean = sum(metrics[f"{key}_per_style"].values()) / styles
        assert abs(mean - metrics[key]) < 1e-6
    page = Path(metrics["listening_page"]).read_text()
    for name in ("grid_0_low-slow.wav", "reference_0_high-fast.wav"):
        assert name in page and (tmp_path / "audio" / name).is_file()


def test_evaluation_outputs_are_seeded_and_leave_the_global_rng_alone(tts_run, corpus):
    """The speech decoder's prenet dropout draws from torch's global RNG. ``Outputs`` runs it on
    the evaluation's own stream, seeded once and continued: the same mels as seeding the global
    RNG before the first call (what the evaluation always did), whatever the global RNG held,
    and the caller's global RNG state is left as it was."""
    from m3dgan.data.store import load_split
    from m3dgan.data.tensors import encode_split
    from m3dgan.evaluate.generate import Outputs
    from m3dgan.infer import Translator

    tr = Translator.from_checkpoint(tts_run, device="cpu")
    test = encode_split(load_split(corpus, "test"), tr.vocabs)
    refs = test["target"][torch.tensor([1, 0, 3, 2])]
    torch.manual_seed(0)  # the former way: seed the global RNG, then one generator for codes
    gen = torch.Generator().manual_seed(0)
    expected = []
    for rows, ref in (([0, 1], refs[:2]), ([2, 3], refs[2:]), ([0, 1, 2, 3], None)):
        ids = test["source"][torch.tensor(rows)]
        ids = ids[:, : int((ids != 0).sum(1).max())]
        code = dict(reference=ref.float()) if ref is not None else dict(generator=gen)
        expected.append(tr.model.translate(ids, **code))
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        outputs = Outputs(tr, seed=0)
        pairs = zip(outputs.batches(test["source"], 2), outputs.batches(refs, 2), strict=True)
        got = [outputs.translate(s, r) for s, r in pairs]
        got += [outputs.translate(s) for s in outputs.batches(test["source"], 4)]
        assert torch.equal(torch.get_rng_state(), state)
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


def test_asr_trains_translates_speech_and_evaluates(corpus, tmp_path, capsys):
    run = train("asr", corpus, tmp_path / "asr")
    clip = espeak("Open the red door.", [], tmp_path / "in.wav")
    assert (
        main(
            ["translate", "--checkpoint", str(run), "--input", str(clip)]
            + ["--out", str(tmp_path / "t")]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "t").glob("in_*.txt")) == [
        f"in_z{k}.txt" for k in range(4)
    ]
    from m3dgan.evaluate import evaluate

    metrics = evaluate(run, data_root=corpus, progress=False)
    assert metrics["utterances"] == 4 and metrics["cer"] >= 0
    out = tmp_path / "m.json"
    assert (
        main(["evaluate", "--checkpoint", str(run), "--data", str(corpus), "--out", str(out)]) == 0
    )
    assert json.loads(out.read_text())["task"] == "asr"


def test_data_export_writes_wavs_translate_reads(corpus, tts_run, tmp_path, capsys):
    """tts: sentences in, recordings (Griffin-Lim from the stored mels) as references; asr
    reads the same corpus the other way round."""
    out = tmp_path / "files"
    assert main(["data", "export", "tts", "--data", str(corpus), "--out", str(out), "--count", "2"]) == 0
    texts, wavs = sorted((out / "inputs").glob("*.txt")), sorted((out / "references").glob("*.wav"))
    assert len(texts) == len(wavs) == 2
    # the references take the styles in turn (the first sentence's first style, the second's
    # second), so an export shows what each style sounds like
    styles = {w.stem.split("_", 1)[1] for w in wavs}
    assert len(styles) == 2, wavs
    rate, frames = wav_info(wavs[0])
    assert rate == 16000 and frames > 1600
    args = ["translate", "--checkpoint", str(tts_run), "--input", str(texts[0])]
    assert main([*args, "--reference", str(wavs[1]), "--out", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t" / f"{texts[0].stem}_ref0.wav").is_file()
    asr = tmp_path / "asr"
    assert main(["data", "export", "asr", "--data", str(corpus), "--out", str(asr), "--count", "1"]) == 0
    assert [p.suffix for p in (asr / "inputs").iterdir()] == [".wav"]
