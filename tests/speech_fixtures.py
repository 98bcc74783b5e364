"""Tiny speech corpora in the published LJSpeech and LibriSpeech formats, spoken by espeak-ng.

The recordings are real synthesized speech (espeak-ng, installed by ``scripts/setup.sh``), padded
with digital silence at both ends as real recordings have pauses, and stored as the corpora
store them: LJSpeech as 22,050 Hz 16-bit PCM WAV, LibriSpeech as 16 kHz FLAC. Archives are laid
out like the published ones (``LJSpeech-1.1/...`` in a ``.tar.bz2``, ``LibriSpeech/<subset>/...``
in a ``.tar.gz``).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import soundfile as sf

LJ_RATE = 22050
LIBRI_RATE = 16000
PAD_S = 0.4  # silence added before and after each utterance


@dataclass(frozen=True)
class Clip:
    """A synthesized utterance: its encoded file and the length of the speech inside it."""

    data: bytes
    speech_seconds: float  # espeak's output, before the padding
    file_seconds: float


def espeak(text: str, *, pitch: int = 50, speed: int = 175) -> tuple[np.ndarray, int]:
    """espeak-ng's float32 samples of ``text`` and their rate (22,050 Hz)."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "out.wav"
        subprocess.run(
            ["espeak-ng", "-v", "en-us", "-p", str(pitch), "-s", str(speed), "-w", str(wav), text],
            check=True,
            capture_output=True,
        )
        samples, rate = sf.read(str(wav), dtype="float32")
    return samples, rate


def clip(text: str, rate: int, fmt: str, **voice) -> Clip:
    """``text`` spoken, padded with silence, resampled to ``rate``, encoded as WAV or FLAC."""
    samples, native = espeak(text, **voice)
    if rate != native:
        import soxr

        samples = soxr.resample(samples, native, rate).astype(np.float32)
    pad = np.zeros(int(PAD_S * rate), np.float32)
    padded = np.concatenate([pad, samples, pad])
    buffer = io.BytesIO()
    sf.write(buffer, padded, rate, format=fmt, subtype="PCM_16")
    return Clip(buffer.getvalue(), len(samples) / rate, len(padded) / rate)


def tar_bytes(files: dict[str, bytes], mode: str) -> bytes:
    """A tar archive (``mode`` "w:bz2" or "w:gz") of ``files`` with their folder entries first,
    as ``tar`` writes a folder tree."""
    folders = sorted(
        {str(p) for name in files for p in PurePosixPath(name).parents if str(p) != "."}
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` (archive member name -> bytes) below ``root``, as unpacking would."""
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


# --- LJSpeech ----------------------------------------------------------------------------------

# (id, transcription, normalized transcription): numbers spelled out in the normalized column;
# one empty normalized column (the reader falls back to the transcription); quotes as in LJSpeech.
LJ_LINES = [
    ("LJ001-0001", "In 1863 the press printed 12 books.", "In eighteen sixty-three the press printed twelve books."),
    ("LJ001-0002", 'The printer said "good morning" to the clerk.', ""),
    ("LJ001-0003", "Paper was scarce and ink was dear.", "Paper was scarce and ink was dear."),
    ("LJ002-0001", "Mr. Smith read the letter twice.", "Mister Smith read the letter twice."),
    ("LJ002-0002", "The type was set by hand.", "The type was set by hand."),
    ("LJ002-0003", "Every page  was   checked.", "Every page  was   checked."),
]  # fmt: skip
# Longer than the default 10 s limit: skipped and counted.
LJ_LONG = (
    "LJ003-0001",
    "The long report",
    "The long report described, one by one and at great length, every press, every case of "
    "type, every bench and every window of the old printing house, and then it went on to "
    "describe the printers themselves, their habits, their wages and their long working days.",
)
LJ_ROOT = "LJSpeech-1.1"


def lj_expected_text(line: tuple[str, str, str]) -> str:
    return " ".join((line[2] or line[1]).split())


def lj_metadata(lines: list[tuple[str, ...]]) -> bytes:
    return "".join("|".join(fields) + "\n" for fields in lines).encode("utf-8")


def ljspeech_files(with_long: bool = True) -> tuple[dict[str, bytes], dict[str, Clip]]:
    """(archive members of a tiny LJSpeech-1.1, {utterance id: clip})."""
    lines = LJ_LINES + ([LJ_LONG] if with_long else [])
    clips = {
        uid: clip(lj_expected_text((uid, raw, norm)), LJ_RATE, "WAV") for uid, raw, norm in lines
    }
    files = {
        f"{LJ_ROOT}/README": b"LJ Speech Dataset (test fixture)\n",
        f"{LJ_ROOT}/metadata.csv": lj_metadata(lines),
    }
    for uid, c in clips.items():
        files[f"{LJ_ROOT}/wavs/{uid}.wav"] = c.data
    return files, clips


# --- LibriSpeech -------------------------------------------------------------------------------

LIBRI_TRAIN = {  # speaker -> chapter -> transcripts (upper case, as LibriSpeech writes them)
    "1034": {"121119": ["THE SHIP SAILED AT DAWN", "NOBODY SAW HER GO"]},
    "103": {
        "1240": ["CHAPTER ONE THE GARDEN GATE", "SHE OPENED IT SLOWLY"],
        "1241": ["THE ROSES WERE RED AND WHITE"],
    },
}
LIBRI_TEST = {"1089": {"134686": ["HE HOPED THERE WOULD BE STEW FOR DINNER", "IT WAS COLD"]}}
SPEAKER_PITCH = {"103": 70, "1034": 30, "1089": 50}


def libri_uid(speaker: str, chapter: str, k: int) -> str:
    return f"{speaker}-{chapter}-{k:04d}"


def librispeech_files(subset: str, tree: dict) -> tuple[dict[str, bytes], dict[str, Clip]]:
    """(archive members of one LibriSpeech subset, {utterance id: clip})."""
    files = {
        "LibriSpeech/README.TXT": b"LibriSpeech ASR corpus (test fixture)\n",
        "LibriSpeech/SPEAKERS.TXT": b";ID  |SEX| SUBSET | MINUTES | NAME\n",
    }
    clips = {}
    for speaker, chapters in tree.items():
        for chapter, texts in chapters.items():
            folder = f"LibriSpeech/{subset}/{speaker}/{chapter}"
            lines = []
            for k, text in enumerate(texts):
                uid = libri_uid(speaker, chapter, k)
                clips[uid] = clip(text.lower(), LIBRI_RATE, "FLAC", pitch=SPEAKER_PITCH[speaker])
                files[f"{folder}/{uid}.flac"] = clips[uid].data
                lines.append(f"{uid} {text}\n")
            files[f"{folder}/{speaker}-{chapter}.trans.txt"] = "".join(lines).encode()
    return files, clips


def tiny_tts_dataset(
    folder: Path, cfg, name: str = "tiny-speech", sentences: dict[str, list[str]] | None = None
) -> Path:
    """A built text→speech data set of 4 espeak-ng sentences in 2 styles (low-slow, high-fast),
    2 to train and 2 to test, made with the mel settings ``cfg`` (a ``MelConfig``);
    ``sentences`` ({"train": [...], "test": [...]}) replaces the 4 sentences."""
    import torch

    from m3dgan.audio import load_audio, wave_to_mel
    from m3dgan.audio.inputs import trim_silence
    from m3dgan.data.store import Manifest, write_dataset

    styles = ({"pitch": 20, "speed": 120}, {"pitch": 80, "speed": 220})
    sentences = sentences or {
        "train": ["The cat sat.", "Open the door."],
        "test": ["We like tea.", "Hi."],
    }
    folder.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, texts in sentences.items():
        rows: dict[str, list] = {"source": [], "target": [], "label": [], "domain": []}
        for k, text in enumerate(texts):
            for d, voice in enumerate(styles):
                samples, rate = espeak(text, **voice)
                sf.write(str(folder / "clip.wav"), samples, rate)
                wave = load_audio(folder / "clip.wav", cfg.sample_rate)
                rows["source"].append(text)
                rows["target"].append(wave_to_mel(trim_silence(wave, cfg), cfg))
                rows["label"].append(k)
                rows["domain"].append(d)
        splits[split] = {
            **rows,
            "label": torch.tensor(rows["label"]),
            "domain": torch.tensor(rows["domain"]),
        }
    manifest = Manifest(
        name=name,
        image_size=0,
        source_channels=0,
        target_channels=cfg.n_mels,
        source_kind="text",
        target_kind="speech",
        domains=["low", "high"],
        audio=cfg.to_dict(),
    )
    return write_dataset(folder / "data", manifest, splits)
