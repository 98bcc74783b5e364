"""Issue "The house": inference stands on its own, configs layer in a fixed order, and a run
carries what inference needs (issue 11; docs/contributing.md has the trail)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["m3dgan.infer", "m3dgan.evaluate"])
def test_inference_does_not_import_training(module: str) -> None:
    """Translating or evaluating must not load the training loop (distributed, guard, run
    state, sample reports): a fresh interpreter imports the module and checks."""
    code = (
        f"import sys, {module}\n"
        "loaded = [m for m in ('m3dgan.train', 'm3dgan.guard', 'm3dgan.run_state', "
        "'m3dgan.distributed') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_config_layers(tmp_path) -> None:
    """Built-in defaults < task defaults < --config file < flags < --set (issue "The house": a
    file with task: tts and train.lr/batch_size trained at the task's 5e-4 and 16)."""
    from m3dgan.config import Config, layered_config

    path = tmp_path / "tts.yaml"
    path.write_text("task: tts\ntrain: {lr: 1e-3, batch_size: 8}\nmodel: {nz: 6}\n")
    cfg = layered_config(config_file=path)
    assert (cfg.task, cfg.train.lr, cfg.train.batch_size, cfg.model.nz) == ("tts", 1e-3, 8, 6)
    assert cfg.train.sample_every == 250  # a task default the file does not name
    assert cfg.train.steps == Config().train.steps  # a built-in default nobody names
    cfg = layered_config(
        config_file=path,
        flags={"train.batch_size": 4, "train.steps": None},
        overrides=["train.batch_size=2", "train.lr=3e-4"],
    )
    assert (cfg.train.batch_size, cfg.train.lr) == (2, 3e-4)
    assert layered_config(config_file=path, flags={"train.batch_size": 4}).train.batch_size == 4
    # the task named on the command line wins over the file's, and brings its own defaults
    cfg = layered_config("en2fr", config_file=path)
    assert cfg.task == "en2fr" and cfg.train.lr == 1e-3 and cfg.train.batch_size == 8


def test_config_file_over_task_defaults_through_the_cli(tmp_path, capsys) -> None:
    from m3dgan.cli import main

    path = tmp_path / "tts.yaml"
    path.write_text("task: tts\ntrain: {lr: 1e-3, batch_size: 8}\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(out), "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "lr: 0.001" in printed and "batch_size: 8" in printed


# -- the mel settings travel with the run ------------------------------------------------------

ODD_MELS = dict(sample_rate=22050, hop_length=220, n_mels=64, fmax=11025.0)


@pytest.fixture(scope="module")
def odd_mel_run(tmp_path_factory):
    """A 2-step tts run on a data set built with non-default mel settings (22.05 kHz, hop 220,
    64 bins); samples written at step 2."""
    from conftest import TINY_SPEECH_OVERRIDES, set_args, train_tiny_run
    from speech_fixtures import tiny_tts_dataset

    from m3dgan.audio import MelConfig

    cfg = MelConfig(**ODD_MELS)
    data = tiny_tts_dataset(tmp_path_factory.mktemp("odd"), cfg, name="odd-mels")
    overrides = [*TINY_SPEECH_OVERRIDES, "train.sample_every=2"]
    argv = ["--task", "tts", "--no-progress", *set_args(overrides)]
    out = train_tiny_run(data, tmp_path_factory, 2, argv)
    return out, data, cfg


def test_non_default_mel_settings_survive_the_checkpoint(odd_mel_run, tmp_path, monkeypatch):
    """Bug: the run state never saved the mel settings, so inference and the training samples
    vocoded a 22.05 kHz data set as 16 kHz (MelConfig() defaults)."""
    import soundfile as sf

    from m3dgan import checkpoint as ckpt
    from m3dgan.cli import main
    from m3dgan.infer import Translator

    run, _, cfg = odd_mel_run
    monkeypatch.setenv("M3DGAN_HOME", str(tmp_path / "home"))
    assert ckpt.load_latest(run).meta["audio"] == cfg.to_dict()
    tr = Translator.from_checkpoint(run)
    assert tr.mel_config == cfg
    sample_wavs = sorted((run / "samples" / "step_00000002").glob("*.wav"))
    assert sample_wavs and all(sf.info(str(p)).samplerate == 22050 for p in sample_wavs)
    out = tmp_path / "out"
    assert (
        main(["translate", "--checkpoint", str(run), "--text", "The cat.", "--out", str(out)]) == 0
    )
    wav = sf.info(str(out / "text0_z0.wav"))
    assert wav.samplerate == 22050
    # one hop of audio per generated frame: the data set's hop (220), not the default's (256)
    mels = tr.translate(tr.encode_text("The cat."), seed=0)
    waves = tr.to_waves(mels)
    from m3dgan.modalities.speech.frames import frame_lengths

    frames = int(frame_lengths(mels, mels.shape[-1])[0])
    assert len(waves[0]) == max(frames - 1, 1) * 220


def test_older_checkpoint_without_mel_settings(odd_mel_run, tmp_path, monkeypatch):
    """A checkpoint saved before the settings were recorded: read from its data set if it is on
    this machine, else one clear CheckpointError when it is loaded (never silent defaults)."""
    import json
    import shutil

    from m3dgan import checkpoint as ckpt
    from m3dgan import paths
    from m3dgan.errors import CheckpointError
    from m3dgan.infer import Translator

    run, data, cfg = odd_mel_run
    monkeypatch.setenv("M3DGAN_HOME", str(tmp_path / "home"))
    old = tmp_path / "old-run"
    shutil.copytree(run, old)
    sidecar_path = ckpt.resolve(old)
    sidecar = json.loads(sidecar_path.read_text())
    del sidecar["audio"]  # as m3dgan wrote sidecars before it recorded the mel settings
    sidecar[ckpt.SIDECAR_CHECKSUM] = ckpt.sidecar_checksum(sidecar)
    sidecar_path.write_text(json.dumps(sidecar))
    with pytest.raises(CheckpointError, match="lacks the mel settings .* 'odd-mels' is not on"):
        Translator.from_checkpoint(old)
    shutil.copytree(data, paths.dataset_dir("odd-mels"))
    assert Translator.from_checkpoint(old).mel_config == cfg


def test_run_record_round_trip_and_missing_fields() -> None:
    from m3dgan.config import layered_config
    from m3dgan.errors import CheckpointError
    from m3dgan.modalities import ModalitySpec
    from m3dgan.run_record import RunRecord

    record = RunRecord(
        config=layered_config("tts"),
        source=ModalitySpec("text", 40, 60),
        target=ModalitySpec("speech", 80, 160),
        dataset="speech",
        domains=["neutral", "sad"],
        vocab={},
        audio={"sample_rate": 16000},
        guard={"lr_scale": 0.5, "rollbacks": 1},
    )
    again = RunRecord.from_dict(record.to_dict())
    assert again == record and again.task == "tts"
    meta = record.to_dict()
    del meta["target"], meta["vocab"]
    with pytest.raises(CheckpointError, match=r"run/step_1\.json: lacks target, vocab"):
        RunRecord.from_dict(meta, "run/step_1.json")
    with pytest.raises(CheckpointError, match="lacks the source vocabulary"):
        again.modality("source")  # a text side without its vocabulary
    old = record.to_dict()
    del old["audio"]  # saved before the mel settings were recorded
    assert RunRecord.from_dict(old).audio is None


def test_resume_reads_the_record_and_refuses_a_changed_data_set(tmp_path, capsys) -> None:
    """Resume reads the checkpoint's RunRecord; a data set whose vocabulary changed since would
    train other token ids under the same weights, so it is one clear error, not a silent run."""
    from conftest import TINY_OVERRIDES, set_args
    from text_fixtures import TEXT_MODEL_OVERRIDES, write_text2text

    from m3dgan.cli import main

    data = write_text2text(tmp_path / "data")
    run = tmp_path / "run"
    base = ["train", "--task", "en2fr", "--objective", "mle", "--out", str(run), "--no-progress"]
    tiny = set_args([*TINY_OVERRIDES, *TEXT_MODEL_OVERRIDES, "train.batch_size=4"])
    assert main([*base, "--data", str(data), "--steps", "2", *tiny]) == 0
    resume = ["train", "--resume", "--out", str(run), "--no-progress", "--steps", "3"]
    assert main([*resume, "--data", str(data)]) == 0  # the same data: goes on
    other = write_text2text(tmp_path / "other", n_train=2)  # fewer texts: fewer characters
    capsys.readouterr()
    assert main([*resume, "--data", str(other), "--steps", "4"]) == 2
    err = capsys.readouterr().err
    assert "changed since this checkpoint was saved" in err and "vocabularies" in err
    assert err.count("\n") == 1
