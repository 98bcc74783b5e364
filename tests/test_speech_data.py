"""The speech side of the data store (ragged float16 mels), SpeechFrames batches, the fortunes
sentence cleaner and a small real build of the espeak-ng ``speech`` corpus."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

from m3dgan.audio import PAD_VALUE, MelConfig, load_audio, wave_to_mel
from m3dgan.cli import main
from m3dgan.data import build, store
from m3dgan.data.builtin import fortunes, speech
from m3dgan.data.frames import SpeechFrames
from m3dgan.data.tensors import batch_to_model, side_specs
from m3dgan.errors import DataError

pytestmark = pytest.mark.usefixtures("isolated_env")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
needs_fortunes = pytest.mark.skipif(
    not fortunes.FORTUNES_DIR.is_dir(), reason="needs the Debian fortunes files"
)
N_MELS = 80


def speech_manifest(**changes) -> store.Manifest:
    kw = dict(
        name="tiny-speech",
        image_size=0,
        source_channels=0,
        target_channels=N_MELS,
        source_kind="text",
        target_kind="speech",
        domains=["a", "b"],
        audio=MelConfig().to_dict(),
    )
    kw.update(changes)
    return store.Manifest(**kw)


def random_mels(lengths: list[int], seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(t, N_MELS, generator=gen) * 2 - 1 for t in lengths]


def split_of(mels: list[torch.Tensor]) -> dict:
    n = len(mels)
    return {
        "source": [f"sentence {i}" for i in range(n)],
        "target": mels,
        "label": torch.arange(n),
        "domain": torch.arange(n) % 2,
    }


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, list[torch.Tensor]]:
    mels = random_mels([5, 1, 9, 3])
    root = store.write_dataset(tmp_path / "ds", speech_manifest(), {"train": split_of(mels)})
    return root, mels


# --- store -------------------------------------------------------------------------------------


def test_round_trip_keeps_lengths_values_and_pads_with_silence(written) -> None:
    root, mels = written
    store.verify(root)
    split = store.load_split(root, "train")
    frames = split["target"]
    assert isinstance(frames, SpeechFrames)
    assert frames.lengths.tolist() == [5, 1, 9, 3] and frames.lengths.dtype == torch.int64
    assert (len(frames), frames.n_mels, frames.max_length) == (4, N_MELS, 9)
    for i, mel in enumerate(mels):
        assert frames[i].dtype == torch.float16
        assert torch.equal(frames[i], mel.to(torch.float16))
    batch = frames[torch.tensor([1, 2, 0])]
    assert batch.dtype == torch.float16 and batch.shape == (3, 9, N_MELS)
    assert torch.equal(batch[0, :1], mels[1].half()) and torch.equal(batch[2, :5], mels[0].half())
    assert bool((batch[0, 1:] == PAD_VALUE).all()) and bool((batch[2, 5:] == PAD_VALUE).all())
    assert torch.equal(batch[1], mels[2].half())  # the longest row has no padding
    assert split["source"][2] == "sentence 2"
    manifest = store.read_manifest(root)
    assert manifest.audio == MelConfig().to_dict() and manifest.speech_sides() == ("target",)
    raw = load_file(str(root / "train.safetensors"))
    assert (
        raw["target_frames"].shape == (18, N_MELS) and raw["target_frames"].dtype == torch.float16
    )
    assert raw["target_lengths"].tolist() == [5, 1, 9, 3]


def test_speech_source_side_and_speech_frames_input(tmp_path: Path) -> None:
    """asr-style data (speech source, text target) written from SpeechFrames directly."""
    mels = SpeechFrames.from_list(random_mels([4, 6]))
    manifest = speech_manifest(
        source_kind="speech", target_kind="text", source_channels=N_MELS, target_channels=0
    )
    split = {"source": mels, "target": ["a b", "c d"], "label": torch.arange(2)}
    split["domain"] = torch.zeros(2, dtype=torch.int64)
    root = store.write_dataset(tmp_path / "asr", manifest, {"test": split})
    loaded = store.load_split(root, "test")
    assert loaded["source"].lengths.tolist() == [4, 6] and loaded["target"] == ["a b", "c d"]


def test_old_manifest_without_audio_field_still_reads(tmp_path: Path) -> None:
    manifest = store.Manifest(name="img", image_size=4, source_channels=1, target_channels=1)
    split = {
        "source": torch.zeros(2, 1, 4, 4, dtype=torch.uint8),
        "target": torch.zeros(2, 1, 4, 4, dtype=torch.uint8),
        "label": torch.arange(2),
        "domain": torch.zeros(2, dtype=torch.int64),
    }
    root = store.write_dataset(tmp_path / "img", manifest, {"train": split})
    raw = json.loads((root / store.MANIFEST).read_text())
    del raw["audio"]
    (root / store.MANIFEST).write_text(json.dumps(raw))
    assert store.read_manifest(root).audio == {}
    assert store.load_split(root, "train")["source"].shape == (2, 1, 4, 4)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"audio": {}}, "target is speech, so audio must hold its mel settings"),
        ({"target_channels": 40}, "target_channels=40, but audio says n_mels=80"),
        ({"audio": {"n_mels": 80, "colour": 3}}, "invalid mel settings"),
        ({"audio": {**MelConfig().to_dict(), "fmax": 20000.0}}, "invalid mel settings"),
        ({"audio": {**MelConfig().to_dict(), "n_mels": "80"}}, "must be numbers"),
        ({"audio": {**MelConfig().to_dict(), "n_mels": 80.0}}, "n_mels must be a whole number"),
        ({"audio": {**MelConfig().to_dict(), "fmax": float("nan")}}, "fmax is nan"),
        ({"audio": {**MelConfig().to_dict(), "n_mels": 10**400}}, "n_mels=a huge number is out"),
        ({"audio": {**MelConfig().to_dict(), "hop_length": 0}}, "hop_length=0 is out of range"),
        ({"target_kind": "text", "target_channels": 0}, "audio .* set but no side is speech"),
        ({"audio": []}, "field 'audio' has a wrong type"),
        ({"files": {"../outside.bin": "00"}}, "must be a relative path"),
        ({"files": {"/etc/passwd": "00"}}, "must be a relative path"),
    ],
)
def test_manifest_validation(changes: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        store.check_manifest(speech_manifest(**changes))


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (torch.zeros(2, 5, N_MELS), "is speech in the manifest"),
        (["x", "y"], "is speech in the manifest"),
        (random_mels([3]), "has 1 utterances, label has 2"),
        (random_mels([3, 0]), "mel spectrogram 1 must be a \\[T >= 1, n_mels\\] tensor"),
        ([torch.zeros(3, N_MELS), torch.zeros(3, 40)], "has 40 mel bins, not 80"),
        (random_mels([3, 3])[:1] + [torch.full((2, N_MELS), float("nan"))], "NaN"),
    ],
)
def test_write_refuses_bad_speech_sides(tmp_path: Path, target, message: str) -> None:
    split = {"source": ["a", "b"], "target": target, "label": torch.arange(2)}
    split["domain"] = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(DataError, match=message):
        store.write_dataset(tmp_path / "bad", speech_manifest(), {"train": split})


def test_extra_files_in_sub_folders_are_checksummed_and_cleared(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    extra = {"audio/test/00000.flac": b"abc", "notes.txt": b"x"}
    store.write_dataset(root, speech_manifest(), {"train": split_of(random_mels([2]))}, extra)
    assert (root / "audio/test/00000.flac").read_bytes() == b"abc"
    assert "audio/test/00000.flac" in store.verify(root).files
    (root / "audio/test/00000.flac").write_bytes(b"abd")
    with pytest.raises(DataError, match="00000.flac does not match its checksum"):
        store.verify(root)
    for bad in ("../x.flac", "/tmp/x.flac", "audio/../../x", "a\\b", store.MANIFEST):
        with pytest.raises(DataError, match="must be a relative path inside the folder"):
            store.write_dataset(
                root, speech_manifest(), {"train": split_of(random_mels([2]))}, {bad: b""}
            )
    store.clear_dataset_files(root)
    assert not (root / "audio").exists() and not (root / store.MANIFEST).exists()


def damage(root: Path, **tensors: torch.Tensor | None) -> None:
    """Rewrite train.safetensors with some tensors replaced (None = removed)."""
    path = root / "train.safetensors"
    data = load_file(str(path))
    for key, value in tensors.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    save_file(data, str(path))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f, n: {"target_lengths": n + 1}, "lengths add up to 22 frames but 18 are stored"),
        (lambda f, n: {"target_frames": f[:, :40].contiguous()}, "has 40 mel bins"),
        (lambda f, n: {"target_frames": f.float()}, "must be float16"),
        (lambda f, n: {"target_lengths": n.int()}, "int64"),
        (lambda f, n: {"target_lengths": None}, "no \\['target_lengths'\\]"),
        (
            lambda f, n: {"target_lengths": torch.tensor([5, 0, 10, 3])},
            "row 1 has length 0",
        ),
        (lambda f, n: {"target_frames": f.index_fill(0, torch.tensor([3]), float("nan"))}, "NaN"),
        (
            lambda f, n: {"target_lengths": n[:3].clone(), "target_frames": f[:15].clone()},
            "has 3 utterances, label has 4",
        ),
        (lambda f, n: {"target_frames": f.reshape(-1).contiguous()}, "2-d"),
    ],
)
def test_damaged_split_file_raises_data_error_naming_it(written, change, message: str) -> None:
    root, _ = written
    raw = load_file(str(root / "train.safetensors"))
    damage(root, **change(raw["target_frames"], raw["target_lengths"]))
    with pytest.raises(DataError, match=message) as info:
        store.load_split(root, "train")
    assert "train" in str(info.value)


def test_truncated_split_file_is_a_data_error(written) -> None:
    root, _ = written
    path = root / "train.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="train.safetensors: damaged data file"):
        store.load_split(root, "train")


# --- SpeechFrames ------------------------------------------------------------------------------


def test_speech_frames_indexing_forms() -> None:
    mels = random_mels([3, 7, 1, 4])
    frames = SpeechFrames.from_list(mels)
    assert repr(frames) == "SpeechFrames(4 utterances, 15 frames, 80 mels, longest 7)"
    assert torch.equal(frames[-1], mels[3].half()) and torch.equal(
        frames[np.int64(2)], mels[2].half()
    )
    assert torch.equal(frames[torch.tensor(1)], mels[1].half())
    by_list, by_tensor = frames[[3, 0]], frames[torch.tensor([3, 0])]
    assert torch.equal(by_list, by_tensor) and by_list.shape == (2, 4, N_MELS)
    assert torch.equal(frames[np.array([3, 0])], by_list)
    assert torch.equal(frames[torch.tensor([False, True, False, True])], frames[[1, 3]])
    assert frames[1:3].shape == (2, 7, N_MELS) and frames[[-1]].shape == (1, 4, N_MELS)
    assert frames[[]].shape == (0, 0, N_MELS)
    repeated = frames[[2, 2]]
    assert bool((repeated[:, 1:] == PAD_VALUE).all()) is True and repeated.shape[1] == 1
    sub = frames.subset(torch.tensor([3, 1]))
    assert sub.lengths.tolist() == [4, 7] and torch.equal(sub[1], mels[1].half())
    assert [len(m) for m in frames] == [3, 7, 1, 4] and len(frames.to_list()) == 4
    for bad in (4, -5, [0, 4], torch.tensor([0.5])):
        with pytest.raises(IndexError):
            frames[bad]
    empty = SpeechFrames.from_list([], n_mels=N_MELS)
    assert len(empty) == 0 and empty.max_length == 0
    with pytest.raises(DataError, match="needs n_mels"):
        SpeechFrames.from_list([])


def test_specs_and_model_batches_for_speech(written) -> None:
    root, _ = written
    manifest = store.read_manifest(root)
    train = store.load_split(root, "train")
    vocabs = {"source": type("V", (), {"size": 30})()}
    train["source"] = torch.zeros(4, 12, dtype=torch.int64)  # as encode_split leaves text
    src, tgt = side_specs(manifest, "text", "speech", vocabs, train)
    assert (tgt.kind, tgt.channels, tgt.size) == ("speech", N_MELS, 9) and src.size == 12
    batch = batch_to_model(train["target"][torch.tensor([0, 1])], torch.device("cpu"), True)
    assert batch.dtype == torch.float32 and batch.shape == (2, 5, N_MELS)
    assert bool((batch[1, 1:] == PAD_VALUE).all())


# --- fortunes sentences ------------------------------------------------------------------------


def test_cleaner_rules_on_made_up_records() -> None:
    record = (
        'He said, "Never -- ever -- run!!!"  Mr. Smith agreed and left the room.\n'
        "Then he came back\nand sat down quietly again.\n\t\t-- Anonymous,\n\t\tsome book"
    )
    text = fortunes.record_text(record)
    assert "Anonymous" not in text and '"' not in text and "!!" not in text
    sentences = fortunes.split_sentences(text)
    assert sentences == [
        "He said, Never, ever, run!",
        "Mr. Smith agreed and left the room.",
        "Then he came back and sat down quietly again.",
    ]
    assert fortunes.clean_sentences([f"{record}\n%\nhe SAID TWICE that it rained.\n%\n"]) == [
        "He said, Never, ever, run!",
        "Mr. Smith agreed and left the room.",
        "Then he came back and sat down quietly again.",
    ]
    assert not fortunes.is_clean("The year 1984 was long.")  # digits
    assert not fortunes.is_clean("Use UNIX and be happy.")  # acronym
    assert not fortunes.is_clean("Too short here.")
    assert not fortunes.is_clean("no capital letter at the start.")
    assert not fortunes.is_clean("It ends without a mark")
    assert not fortunes.is_clean("Caf\u00e9 au lait is quite nice.")
    assert not fortunes.is_clean(" ".join(["word"] * 13) + ".")
    assert fortunes.is_clean("I can't stand it; really, I can't!")
    assert fortunes.clean_sentences(["It is what it is.\n%\nIT is what it IS.\n%\n"]) == [
        "It is what it is."
    ]
    assert fortunes.record_text("ab\bab overstruck line") == ""


@needs_fortunes
def test_cleaner_on_real_fortunes_files() -> None:
    files = fortunes.fortune_files()
    assert files and not any(p.suffix in (".dat", ".u8") for p in files)
    text = (fortunes.FORTUNES_DIR / "fortunes").read_text(encoding="utf-8")
    records = list(fortunes.records(text))
    assert len(records) > 300 and not any(r.strip() == "%" for r in records)
    attributed = [r for r in records if "\n\t\t-- " in r]
    assert attributed
    for record in attributed:
        assert "-- " not in fortunes.record_text(record)
    sentences = fortunes.clean_sentences([text])
    assert len(sentences) > 200
    assert "Be cheerful while you are alive." in sentences  # its attribution dropped
    assert "A day for firm decisions!" in sentences  # "!!!!!" -> "!"
    assert all(fortunes.is_clean(s) for s in sentences)
    assert len({s.lower() for s in sentences}) == len(sentences)
    assert all(4 <= len(s.split()) <= 12 for s in sentences)


def test_missing_fortunes_folder_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="apt-get install fortunes"):
        fortunes.fortune_files(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no fortunes files"):
        fortunes.fortune_files(tmp_path / "empty")


def test_split_sentences_by_limit() -> None:
    rng = np.random.default_rng(0)
    train, test = speech.split_sentences(11796, rng, None)
    assert len(test) == 590 and len(train) + len(test) == 11796
    assert not set(train.tolist()) & set(test.tolist())
    train, test = speech.split_sentences(11796, np.random.default_rng(0), 10)
    assert (len(train), len(test)) == (7, 3)
    train, test = speech.split_sentences(11796, np.random.default_rng(0), 2)
    assert (len(train), len(test)) == (1, 1)
    with pytest.raises(DataError, match="at least 2 sentences"):
        speech.split_sentences(11796, np.random.default_rng(0), 1)


# --- a real build ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory) -> Path:
    """``m3dgan data build speech --limit 10`` through the CLI, in a temporary M3DGAN_HOME."""
    if shutil.which("espeak-ng") is None or not fortunes.FORTUNES_DIR.is_dir():
        pytest.skip("needs espeak-ng and the fortunes files")
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("M3DGAN_HOME", str(home))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            assert main(["data", "build", "speech", "--limit", "10"]) == 0
        finally:
            torch.set_num_threads(threads)
    return home / "datasets" / "speech"


@needs_espeak
def test_tiny_build_layout(tiny_build: Path) -> None:
    manifest = store.verify(tiny_build)
    assert (manifest.source_kind, manifest.target_kind) == ("text", "speech")
    assert (manifest.target_channels, manifest.image_size) == (N_MELS, 0)
    assert manifest.domains == [s.name for s in speech.STYLES] and len(manifest.domains) == 4
    assert manifest.audio == MelConfig().to_dict()
    prov = manifest.provenance
    assert (
        prov["synthesiser"]["voice"] == "en-us+klatt5" and "1.5" in prov["synthesiser"]["program"]
    )
    assert prov["build"]["limit"] == 10 and len(prov["fortunes"]["files"]) > 10
    assert (
        prov["sentences"]["train"]
        + prov["sentences"]["test"]
        + sum(v for k, v in prov["dropped"].items() if k.startswith("train"))
        + prov["dropped"].get("test sentences", 0)
        == 10
    )
    train, test = store.load_split(tiny_build, "train"), store.load_split(tiny_build, "test")
    assert 1 <= len(train["label"]) <= 7 and len(test["label"]) % 4 == 0 and len(test["label"])
    assert not set(train["label"].tolist()) & set(test["label"].tolist())  # split by sentence
    # test: each sentence in all four styles, its rows together
    for k in range(0, len(test["label"]), 4):
        assert test["domain"][k : k + 4].tolist() == [0, 1, 2, 3]
        assert len(set(test["label"][k : k + 4].tolist())) == 1
        assert len(set(test["source"][k : k + 4])) == 1
    # train: styles assigned round-robin
    counts = torch.bincount(train["domain"], minlength=4)
    assert int(counts.max() - counts.min()) <= 2
    sentences, _ = fortunes.collect_sentences()
    for label, text in zip(
        train["label"].tolist() + test["label"].tolist(),
        train["source"] + test["source"],
        strict=True,
    ):
        assert sentences[label] == text
    fps = MelConfig().frames_per_second
    for frames in (train["target"], test["target"]):
        seconds = frames.lengths.float() / fps
        assert bool((seconds >= speech.MIN_SECONDS - 0.05).all()) and bool(
            (seconds <= speech.MAX_SECONDS + 0.05).all()
        )
        assert frames.frames.min() >= -1.0 and frames.frames.max() <= 1.0


@needs_espeak
def test_tiny_build_test_audio_matches_its_mels(tiny_build: Path) -> None:
    manifest = store.read_manifest(tiny_build)
    test = store.load_split(tiny_build, "test")
    flacs = sorted(f for f in manifest.files if f.startswith("audio/test/"))
    assert flacs == [speech.audio_file(i) for i in range(len(test["label"]))]
    for row in (0, len(flacs) - 1):
        info = sf.info(str(tiny_build / flacs[row]))
        assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
        mel = wave_to_mel(load_audio(tiny_build / flacs[row]), MelConfig())
        stored = test["target"][row].float()
        assert abs(len(mel) - len(stored)) <= 1  # frames ≈ duration * 16000 / 256
        t = min(len(mel), len(stored))
        assert float((mel[:t] - stored[:t]).abs().mean()) < 0.01  # 16-bit PCM vs float


@needs_espeak
def test_tiny_build_styles_differ_as_designed(tiny_build: Path) -> None:
    """Within every test sentence the four styles keep the order their settings promise: length
    (speed) sad > soft > neutral > cheerful, mean mel level (amplitude) cheerful > neutral > sad
    > soft, so each clip's style is identified by its two ranks. (The cross-sentence classifier
    measurement is in bench/speech_styles.py and the builder's docstring.)"""
    test = store.load_split(tiny_build, "test")
    frames = test["target"]
    index = {s.name: i for i, s in enumerate(speech.STYLES)}
    by_length = [index[n] for n in ("sad", "soft", "neutral", "cheerful")]
    by_level = [index[n] for n in ("cheerful", "neutral", "sad", "soft")]
    for k in range(0, len(frames), 4):
        lengths = frames.lengths[k : k + 4].float()
        levels = torch.stack([frames[k + s].float().mean() for s in range(4)])
        assert torch.argsort(lengths, descending=True).tolist() == by_length
        assert torch.argsort(levels, descending=True).tolist() == by_level
        assert float(levels[index["neutral"]] - levels[index["soft"]]) > 0.1  # ~10 dB quieter


@needs_espeak
def test_build_is_cached_and_rebuilt_when_asked(tiny_build: Path, monkeypatch) -> None:
    home = tiny_build.parent.parent
    monkeypatch.setenv("M3DGAN_HOME", str(home))
    stamp = (tiny_build / store.MANIFEST).stat().st_mtime_ns
    assert build.build_dataset("speech", limit=10, progress=False) == tiny_build
    assert (tiny_build / store.MANIFEST).stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert build.ensure_dataset(str(tiny_build)) == tiny_build


@needs_espeak
def test_render_refuses_what_espeak_cannot_speak() -> None:
    with pytest.raises(DataError, match="only silence"):
        speech.render_clip("   ", speech.STYLES[0], MelConfig(), keep_audio=False)
