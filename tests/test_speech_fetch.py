"""Readers and fetchers of the published speech corpora, on tiny fixtures in the real formats.

The fixtures (:mod:`speech_fixtures`) are real espeak-ng speech, stored as the corpora store it:
an ``LJSpeech-1.1.tar.bz2`` with ``metadata.csv`` and 22,050 Hz WAVs, and LibriSpeech's
``train-clean-100.tar.gz`` / ``test-clean.tar.gz`` with ``trans.txt`` files and 16 kHz FLACs.
They are served from 127.0.0.1, fetched, converted and checked row by row: texts, mel frame
counts against the speech's duration, domains, splits; then broken inputs must give DataErrors
that name the file and line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import speech_fixtures as sfx
from http_server import serve

from m3dgan import paths
from m3dgan.audio import MelConfig
from m3dgan.cli import main
from m3dgan.data import build, store
from m3dgan.data.formats import fetch, librispeech, ljspeech, utterances
from m3dgan.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("isolated_env")

FPS = MelConfig().frames_per_second  # 62.5 mel frames per second at 16 kHz, hop 256


@pytest.fixture(scope="module")
def lj() -> tuple[dict[str, bytes], dict[str, sfx.Clip]]:
    return sfx.ljspeech_files()


@pytest.fixture(scope="module")
def libri() -> dict:
    train, train_clips = sfx.librispeech_files(librispeech.TRAIN_SUBSET, sfx.LIBRI_TRAIN)
    test, test_clips = sfx.librispeech_files(librispeech.TEST_SUBSET, sfx.LIBRI_TEST)
    return {"train": train, "test": test, "clips": {**train_clips, **test_clips}}


def _check_frames(mel, clip: sfx.Clip) -> None:
    """The stored mel covers the speech but not the padding silence: trimmed, ~duration * 62.5."""
    frames = len(mel)
    assert 0.7 * clip.speech_seconds * FPS < frames <= clip.speech_seconds * FPS + 4
    assert frames < clip.file_seconds * FPS - 40  # the 2 x 0.4 s of padding are gone
    values = np.asarray(mel, dtype=np.float32)
    assert values.shape[1] == 80 and values.min() >= -1.0 and values.max() <= 1.0
    assert values.max() > 0.0  # speech, not the silence floor
    assert values[: frames // 2].max() > 0 and values[frames // 2 :].max() > 0


def _rows(root: Path, split: str) -> tuple[dict, list[str]]:
    return store.load_split(root, split), utterances.read_utterance_ids(root)[split]


# --- LJSpeech ----------------------------------------------------------------------------------


def test_fetch_ljspeech_tar_bz2_and_convert(lj) -> None:
    files, clips = lj
    archive = sfx.tar_bytes(files, "w:bz2")
    with serve({"/data/speech/LJSpeech-1.1.tar.bz2": archive}) as server:
        url = server.base_url + "/data/speech/LJSpeech-1.1.tar.bz2"
        out = fetch.fetch("ljspeech", url=url, progress=False)
    assert out == paths.dataset_dir("ljspeech") == build.ensure_dataset("ljspeech")
    manifest = store.verify(out)
    assert manifest.name == "ljspeech"
    assert (manifest.source_kind, manifest.target_kind) == ("text", "speech")
    assert (manifest.source_channels, manifest.target_channels, manifest.image_size) == (0, 80, 0)
    assert manifest.audio == MelConfig().to_dict()
    assert manifest.domains == ["default"]
    listed = [line[0] for line in sfx.LJ_LINES]
    assert manifest.splits == {"train": len(listed) - 1, "test": 1}
    assert manifest.provenance["skipped"] == {"max_seconds": 10.0, "too_long": 1, "bad_audio": {}}
    assert utterances.read_too_long_ids(out) == [sfx.LJ_LONG[0]]
    assert manifest.provenance["archive_sha256"] == hashlib.sha256(archive).hexdigest()
    assert manifest.provenance[fetch.FETCH_KEY]["max_seconds"] == 10.0
    texts = {line[0]: sfx.lj_expected_text(line) for line in sfx.LJ_LINES}
    assert texts["LJ001-0002"] == 'The printer said "good morning" to the clerk.'  # fallback
    seen = []
    for split in ("train", "test"):
        data, ids = _rows(out, split)
        assert len(data["target"]) == len(ids) == manifest.splits[split]
        for row, uid in enumerate(ids):
            assert data["source"][row] == texts[uid]
            assert int(data["domain"][row]) == 0
            _check_frames(data["target"][row], clips[uid])
            assert int(data["target"].lengths[row]) == len(data["target"][row])
        seen += ids
    # the test split's audio is kept as the built-in corpus keeps it: 16 kHz FLAC, trimmed as
    # its mel was, listed with a checksum
    data, ids = _rows(out, "test")
    for row, uid in enumerate(ids):
        name = f"audio/test/{row:05d}.flac"
        assert name in manifest.files
        wave, rate = sf.read(str(out / name), dtype="float32")
        assert rate == 16000 and wave.ndim == 1
        assert len(wave) // 256 + 1 == len(data["target"][row])
        assert len(wave) / rate < clips[uid].speech_seconds + 0.05
    assert sorted(seen) == sorted(listed)  # every short utterance once, in one split
    labels = [*store.load_split(out, "train")["label"], *store.load_split(out, "test")["label"]]
    assert sorted(int(x) for x in labels) == list(range(len(listed)))
    # kept archive, recorded digest, no extraction left behind; a second fetch reuses the folder
    downloads = fetch.downloads_dir()
    assert (downloads / "LJSpeech-1.1.tar.bz2").is_file()
    assert (downloads / "LJSpeech-1.1.sha256").is_file()
    assert not list(downloads.glob("*.extracted"))
    written = (out / store.MANIFEST).stat().st_mtime_ns
    assert fetch.fetch("ljspeech", url=url, progress=False) == out
    assert (out / store.MANIFEST).stat().st_mtime_ns == written


def test_ljspeech_styles_limit_and_max_seconds(tmp_path: Path, lj) -> None:
    files, clips = lj
    root = sfx.write_tree(tmp_path / "emt", files) / sfx.LJ_ROOT
    styles = ["happy", "neutral", "sad", "angry", "neutral", "sad"]
    lines = [(*line, style) for line, style in zip(sfx.LJ_LINES, styles, strict=True)]
    (root / "metadata.csv").write_bytes(sfx.lj_metadata(lines))
    out = ljspeech.convert_folder(root.parent, tmp_path / "out", progress=False)
    manifest = store.verify(out)
    assert manifest.domains == ["angry", "happy", "neutral", "sad"]
    assert manifest.provenance["style_column"] == 4
    assert manifest.provenance["source_folder"] == str(root.resolve())
    style_of = {line[0]: line[3] for line in lines}
    for split in ("train", "test"):
        data, ids = _rows(out, split)
        assert [manifest.domains[int(d)] for d in data["domain"]] == [style_of[u] for u in ids]
    # id|text|style: the style in column 3 is not read as the normalized text
    short = [(uid, raw, style) for (uid, raw, _), style in zip(sfx.LJ_LINES, styles, strict=True)]
    (root / "metadata.csv").write_bytes(sfx.lj_metadata(short))
    rows, domains = ljspeech.read_corpus(root, style_column=3)
    assert domains == ["angry", "happy", "neutral", "sad"]
    assert rows[0].text == sfx.LJ_LINES[0][1] and rows[0].domain == domains.index("happy")
    # style_column=0 ignores the 4th column; limit keeps a fixed hashed sample of 4, of which
    # max_seconds (between the 2nd and 3rd longest file) skips the two longest
    (root / "metadata.csv").write_bytes(sfx.lj_metadata(lines))
    sample = utterances.hashed_sample(ljspeech.read_corpus(root)[0], 4)
    seconds = sorted((clips[u.uid].file_seconds, u.uid) for u in sample)
    out = ljspeech.convert_folder(
        root,
        tmp_path / "small",
        style_column=0,
        limit=4,
        max_seconds=(seconds[1][0] + seconds[2][0]) / 2,
        progress=False,
    )
    manifest = store.verify(out)
    assert manifest.domains == ["default"]
    assert sorted(utterances.read_too_long_ids(out)) == sorted(uid for _, uid in seconds[2:])
    ids = utterances.read_utterance_ids(out)
    assert sorted(ids["train"] + ids["test"]) == sorted(uid for _, uid in seconds[:2])
    with pytest.raises(ConfigError, match="style_column"):
        ljspeech.read_metadata(root / "metadata.csv", style_column=1)
    with pytest.raises(ConfigError, match="max_seconds"):
        ljspeech.convert_folder(root, tmp_path / "x", max_seconds=0, progress=False)
    with pytest.raises(ConfigError, match="test_fraction"):
        ljspeech.convert_folder(root, tmp_path / "x", test_fraction=1.5, progress=False)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"LJ001-0001|ok|ok\nLJ001-0002 no separator\n", r"metadata\.csv, line 2: expected id"),
        (b"LJ001-0001|ok|ok\n\n|text|text\n", r"metadata\.csv, line 3: '' is not a usable"),
        (b"../../etc/passwd|x|x\n", r"line 1: '\.\./\.\./etc/passwd' is not a usable"),
        (b"LJ001-0001|ok|ok\nLJ001-0001|again|again\n", r"line 2: utterance id 'LJ001-0001' al"),
        (b"LJ001-0001|ok|ok\nLJ001-0002| | \n", r"line 2: utterance 'LJ001-0002' has no trans"),
        (b"LJ001-0001|ok|ok|happy\nLJ001-0002|ok|ok\n", r"line 2: no style in column 4"),
        (b"LJ001-0001|ok|ok|happy\nLJ001-0002|ok|ok| \n", r"line 2: the style .* is empty"),
        (b"LJ001-0001|ok|ok\nLJ001-0002|caf\xe9|x\n", r"metadata\.csv, line 2: not UTF-8"),
        (b"\n \n", r"metadata\.csv lists no utterance"),
    ],
)
def test_malformed_metadata_names_file_and_line(tmp_path: Path, content: bytes, match) -> None:
    (tmp_path / "metadata.csv").write_bytes(content)
    with pytest.raises(DataError, match=match):
        ljspeech.read_metadata(tmp_path / "metadata.csv")


def test_missing_and_corrupt_wavs(tmp_path: Path, lj) -> None:
    files, _ = lj
    root = sfx.write_tree(tmp_path / "lj", files) / sfx.LJ_ROOT
    (root / "wavs" / "LJ002-0001.wav").unlink()
    with pytest.raises(DataError, match=r"LJ002-0001\.wav is missing .*metadata\.csv, line 4"):
        ljspeech.convert_folder(root, tmp_path / "out", progress=False)
    with pytest.raises(DataError, match=r"LJ002-0001\.wav is missing"):  # skip_bad: still wrong
        ljspeech.convert_folder(root, tmp_path / "out", skip_bad=True, progress=False)
    (root / "wavs" / "LJ002-0001.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    with pytest.raises(DataError, match=r"LJ002-0001\.wav.*metadata\.csv, line 4.*skip_bad"):
        ljspeech.convert_folder(root, tmp_path / "out", progress=False)
    with pytest.warns(UserWarning, match=r"skipping .*LJ002-0001\.wav"):
        out = ljspeech.convert_folder(root, tmp_path / "out", skip_bad=True, progress=False)
    manifest = store.verify(out)
    assert sum(manifest.splits.values()) == len(sfx.LJ_LINES) - 1
    assert list(manifest.provenance["skipped"]["bad_audio"]) == [str(root / "wavs/LJ002-0001.wav")]


def test_ljspeech_wrong_or_damaged_archive(tmp_path: Path, libri) -> None:
    not_lj = sfx.tar_bytes({"LibriSpeech/README.TXT": b"hello\n"}, "w:bz2")
    with serve({"/a.tar.bz2": not_lj, "/b.tar.bz2": b"BZh91AY&SY" + bytes(200)}) as server:
        with pytest.raises(DataError, match=r"no metadata\.csv inside .*wrong archive"):
            fetch.fetch(
                "ljspeech", tmp_path / "1", url=server.base_url + "/a.tar.bz2", progress=False
            )
        with pytest.raises(DataError, match=r"LJSpeech-1\.1\.tar\.bz2: damaged or not a tar"):
            fetch.fetch(
                "ljspeech", tmp_path / "2", url=server.base_url + "/b.tar.bz2", progress=False
            )
    assert not (paths.dataset_dir("ljspeech") / store.MANIFEST).exists()


# --- LibriSpeech -------------------------------------------------------------------------------


def test_fetch_librispeech_from_the_command_line(libri, capsys) -> None:
    served = {
        "/resources/12/train-clean-100.tar.gz": sfx.tar_bytes(libri["train"], "w:gz"),
        "/resources/12/test-clean.tar.gz": sfx.tar_bytes(libri["test"], "w:gz"),
    }
    with serve(served) as server:
        base = server.base_url + "/resources/12"
        args = ["data", "fetch", "librispeech-clean-100"]
        args += ["--url", f"train={base}/train-clean-100.tar.gz"]
        args += ["--url", f"test={base}/test-clean.tar.gz"]
        assert main(args) == 0
    out = paths.dataset_dir("librispeech-clean-100")
    assert str(out) in capsys.readouterr().out
    assert build.ensure_dataset("librispeech-clean-100") == out
    manifest = store.verify(out)
    assert (manifest.source_kind, manifest.target_kind) == ("text", "speech")
    assert manifest.domains == ["103", "1034", "1089"]  # speaker ids in numeric order
    assert manifest.splits == {"train": 5, "test": 2}
    assert manifest.provenance["split_origin"] == {"train": "train-clean-100", "test": "test-clean"}
    assert manifest.provenance["unlisted_audio_files"] == 0
    transcripts = {
        sfx.libri_uid(speaker, chapter, k): text
        for tree in (sfx.LIBRI_TRAIN, sfx.LIBRI_TEST)
        for speaker, chapters in tree.items()
        for chapter, texts in chapters.items()
        for k, text in enumerate(texts)
    }
    expected_ids = {
        "train": ["103-1240-0000", "103-1240-0001", "103-1241-0000"]
        + ["1034-121119-0000", "1034-121119-0001"],
        "test": ["1089-134686-0000", "1089-134686-0001"],
    }
    for split, expected in expected_ids.items():
        data, ids = _rows(out, split)
        assert ids == expected
        assert data["source"] == [transcripts[uid] for uid in ids]
        speakers = [manifest.domains[int(d)] for d in data["domain"]]
        assert speakers == [uid.split("-")[0] for uid in ids]
        for row, uid in enumerate(ids):
            _check_frames(data["target"][row], libri["clips"][uid])
    # only FLACs and transcripts were unpacked, and nothing is left in the downloads folder
    assert not list(fetch.downloads_dir().glob("*.extracted"))


def test_librispeech_without_test_clean_holds_out_by_hash(tmp_path: Path, libri) -> None:
    root = sfx.write_tree(tmp_path / "corpus", libri["train"])
    extra = root / "LibriSpeech/train-clean-100/1034/121119/1034-121119-0099.flac"
    extra.write_bytes(libri["clips"]["1034-121119-0000"].data)  # a FLAC no transcript lists
    out = librispeech.convert_folder(root, tmp_path / "out", limit=4, progress=False)
    manifest = store.verify(out)
    assert manifest.domains == ["103", "1034"]
    assert manifest.splits["train"] + manifest.splits["test"] == 4 and manifest.splits["test"] >= 1
    assert "hash of the utterance id" in manifest.provenance["split_origin"]["test"]
    assert manifest.provenance["unlisted_audio_files"] == 1
    assert manifest.provenance["source_folder"] == str(root.resolve())


def test_librispeech_bad_transcripts_and_audio(tmp_path: Path, libri) -> None:
    root = sfx.write_tree(tmp_path / "c", libri["train"]) / "LibriSpeech" / "train-clean-100"
    trans = root / "103/1240/103-1240.trans.txt"
    good = trans.read_bytes()
    cases = [
        (b"103-1240-0000 ONE\n103-1241-0001 WRONG CHAPTER\n", r"line 2: '103-1241-0001' is not"),
        (b"103-1240-0000 ONE\n103-1240-0001\n", r"line 2: utterance 103-1240-0001 has no trans"),
        (b"103-1240-0000 A\n103-1240-0000 B\n", r"line 2: utterance 103-1240-0000 is listed tw"),
        (b"103-1240-0000 \xff\n", r"103-1240\.trans\.txt, line 1: not UTF-8"),
    ]
    for content, match in cases:
        trans.write_bytes(content)
        with pytest.raises(DataError, match=match):
            librispeech.read_subset(root)
    trans.write_bytes(good + b"103-1240-0002 A LINE WITHOUT ITS FLAC\n")
    with pytest.raises(DataError, match=r"103-1240-0002\.flac is missing .*trans\.txt, line 3"):
        librispeech.convert_folder(root.parent.parent, tmp_path / "out", progress=False)
    trans.write_bytes(good)
    flac = root / "1034/121119/1034-121119-0001.flac"
    flac.write_bytes(flac.read_bytes()[:60])  # a truncated FLAC: header only
    with pytest.raises(DataError, match=r"1034-121119-0001\.flac.*121119\.trans\.txt, line 2"):
        librispeech.convert_folder(root.parent.parent, tmp_path / "out", progress=False)
    with pytest.warns(UserWarning, match=r"1034-121119-0001\.flac"):
        out = librispeech.convert_folder(
            root.parent.parent, tmp_path / "out", skip_bad=True, progress=False
        )
    skipped = store.verify(out).provenance["skipped"]
    assert list(skipped["bad_audio"]) == [str(flac)]
    with pytest.raises(DataError, match=r"no train-clean-100 folder .*wrong archive"):
        librispeech.convert_folder(tmp_path / "nowhere", tmp_path / "out2", progress=False)


def test_librispeech_test_archive_of_the_wrong_subset(tmp_path: Path, libri) -> None:
    dev, _ = sfx.librispeech_files("dev-clean", sfx.LIBRI_TEST)
    served = {
        "/train-clean-100.tar.gz": sfx.tar_bytes(libri["train"], "w:gz"),
        "/test-clean.tar.gz": sfx.tar_bytes(dev, "w:gz"),
    }
    with serve(served) as server:
        urls = {
            "train": f"{server.base_url}/train-clean-100.tar.gz",
            "test": f"{server.base_url}/test-clean.tar.gz",
        }
        with pytest.raises(DataError, match=r"test-clean\.tar\.gz: no LibriSpeech/test-clean"):
            fetch.fetch("librispeech-clean-100", tmp_path, url=urls, progress=False)


# --- fetch machinery: bz2, mirrors, options ----------------------------------------------------


def test_publisher_mirrors_are_tried_in_turn(tmp_path: Path, monkeypatch, lj, capsys) -> None:
    files, _ = lj
    archive = sfx.tar_bytes(files, "w:bz2")
    page = b"<!DOCTYPE html><html><body>mirror maintenance</body></html>"
    with serve({"/good/LJSpeech-1.1.tar.bz2": archive, "/page/LJSpeech-1.1.tar.bz2": page}) as s:
        spec = fetch.PUBLISHED["ljspeech"]
        source = dataclasses.replace(
            spec.sources[0],
            url=f"{s.base_url}/gone/LJSpeech-1.1.tar.bz2",  # 404
            mirrors=(f"{s.base_url}/page/LJSpeech-1.1.tar.bz2", f"{s.base_url}/good/LJSpeech-1.1.tar.bz2"),
        )  # fmt: skip
        monkeypatch.setitem(
            fetch.PUBLISHED, "ljspeech", dataclasses.replace(spec, sources=(source,))
        )
        out = fetch.fetch("ljspeech", tmp_path, progress=False)
        assert store.read_manifest(out).provenance["url"] == source.mirrors[1]
        printed = capsys.readouterr().out
        assert "HTTP 404" in printed and "answered with a web page" in printed
        # every address failing: one error naming them all
        dead = dataclasses.replace(source, mirrors=(source.mirrors[0],))
        monkeypatch.setitem(fetch.PUBLISHED, "ljspeech", dataclasses.replace(spec, sources=(dead,)))
        with pytest.raises(DataError, match=r"from any of 2 addresses .*gone.*page"):
            fetch.fetch("ljspeech", tmp_path / "again", force=True, progress=False)


def test_speech_entries_and_options() -> None:
    assert set(build.FETCHABLE) == set(fetch.PUBLISHED)
    lj_source = fetch.PUBLISHED["ljspeech"].sources[0]
    assert lj_source.url == "https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2"
    assert fetch._stem(Path(lj_source.filename)) == "LJSpeech-1.1"
    train, test = fetch.PUBLISHED["librispeech-clean-100"].sources
    assert train.url == "https://www.openslr.org/resources/12/train-clean-100.tar.gz"
    assert test.url == "https://www.openslr.org/resources/12/test-clean.tar.gz"
    assert "https://us.openslr.org/resources/12/test-clean.tar.gz" in test.mirrors
    assert train.keep("LibriSpeech/train-clean-100/19/198/19-198-0001.flac")
    assert train.keep("LibriSpeech/train-clean-100/19/198/19-198.trans.txt")
    assert not train.keep("LibriSpeech/SPEAKERS.TXT")
    with pytest.raises(ConfigError, match="ljspeech has no option image_size"):
        fetch.fetch("ljspeech", image_size=64, progress=False)
    with pytest.raises(ConfigError, match="has no option style_column"):
        fetch.fetch("librispeech-clean-100", style_column=4, progress=False)


def test_hashed_split_is_stable_and_near_the_fraction() -> None:
    ids = [f"LJ{i // 100:03d}-{i % 100:04d}" for i in range(5000)]
    test = utterances.hashed_split(ids, 0.02)
    assert 60 <= len(test) <= 140  # 2 % of 5000 = 100
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    assert utterances.hashed_split(shuffled, 0.02) == test  # order does not matter
    assert utterances.hashed_split(ids[:2500], 0.02) == test & set(ids[:2500])  # nor the others
    assert len(utterances.hashed_split(["a", "b"], 0.02)) == 1  # at least one, never all
    with pytest.raises(DataError, match="at least 2 usable"):
        utterances.hashed_split(["a"], 0.02)


def test_flac_with_unusual_rate_and_stereo_is_read(tmp_path: Path) -> None:
    """A corpus recorded at 44.1 kHz stereo (not LJSpeech's rate) converts the same way."""
    samples, rate = sfx.espeak("a stereo recording at another rate")
    import soxr

    wave = soxr.resample(samples, rate, 44100).astype(np.float32)
    stereo = np.stack([wave, 0.5 * wave], axis=1)
    root = tmp_path / "corpus"
    (root / "wavs").mkdir(parents=True)
    for uid in ("a", "b"):
        sf.write(str(root / "wavs" / f"{uid}.wav"), stereo, 44100, subtype="PCM_24")
    (root / "metadata.csv").write_text("a|one\nb|two\n", encoding="utf-8")
    out = ljspeech.convert_folder(root, tmp_path / "out", name="my-voice", progress=False)
    manifest = store.verify(out)
    assert manifest.name == "my-voice" and manifest.splits == {"train": 1, "test": 1}
    mel = store.load_split(out, "train")["target"][0]
    expected = len(samples) / rate * FPS
    assert 0.7 * expected < len(mel) <= expected + 4


def test_tar_members_are_still_checked_for_bz2(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:bz2") as tar:
        info = tarfile.TarInfo("LJSpeech-1.1/../../escape.csv")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    (tmp_path / "evil.tar.bz2").write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match=r"refusing unsafe member .*'\.\.' in path"):
        fetch.safe_extract(tmp_path / "evil.tar.bz2", tmp_path / "x")
    assert not (tmp_path / "escape.csv").exists()
