"""Recorded utterances (text + audio file) -> a speech data set, shared by the corpus readers.

The LJSpeech and LibriSpeech readers only parse their layouts into :class:`Utterance` rows; this
module does the rest the same way for both, so every fetched speech corpus looks alike:

- **audio -> mel**: each file goes through :func:`m3dgan.audio.inputs.read_mels`, exactly as a
  user's audio does at inference: decoded (any rate, mixed to mono, resampled to the data set's
  16 kHz), stripped of leading and trailing silence, turned into a normalised log-mel; stored as
  float16;
- **long utterances**: a file longer than ``max_seconds`` (default :data:`DEFAULT_MAX_SECONDS`,
  read from the file header, before decoding) is skipped and counted: attention-based speech
  models train on bounded lengths, and the mel of a 35 s LibriSpeech utterance would dominate
  a batch's padding;
- **bad audio**: a file that cannot be decoded, is empty, silent or too short stops the
  conversion with a :class:`DataError` naming the file and the metadata line that lists it,
  because a silently shrunken corpus makes results incomparable (the same choice as the pix2pix
  reader). ``skip_bad=True`` instead skips such files with a warning; the manifest's provenance
  lists each skipped file and why. A file the metadata names but that does not exist is always
  an error: it means a broken or wrong archive, not one damaged recording;
- **splits**: :func:`hashed_split` puts an utterance in the test split when a hash of its id
  falls below the test fraction, so the split does not depend on the order files are listed in,
  on ``limit`` or on which other utterances were skipped (except that a tiny corpus whose hashes
  all miss still gets one test utterance);
- **the data set**: source = text, target = speech (mel), label = utterance index (a sentence
  id, as in the built-in speech corpus), domain = style or speaker index. The utterance ids of
  each split are kept in ``utterances.json`` so every row can be traced back to its recording,
  and the test split's audio (16 kHz, trimmed) as ``audio/test/<row:05d>.flac``, as the
  built-in speech corpus keeps it, so evaluation can score real test audio.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from m3dgan.audio import AudioError, MelConfig, load_audio
from m3dgan.audio.inputs import read_mels, trim_silence
from m3dgan.data import store
from m3dgan.errors import ConfigError, DataError
from m3dgan.extras import require  # soundfile: the speech extra, imported when used

DEFAULT_MAX_SECONDS = 10.0
DEFAULT_TEST_FRACTION = 0.02
UTTERANCES_FILE = "utterances.json"
TEST_AUDIO_DIR = "audio/test"


@dataclass(frozen=True)
class Utterance:
    """One recording as a corpus lists it."""

    uid: str  # the corpus's id, e.g. "LJ001-0001" or "103-1240-0000"
    text: str
    audio: Path
    domain: int  # index into the data set's domain names (style or speaker)
    where: str  # where the corpus lists it, for messages: "<file>, line <n>"


@dataclass
class SpeechSplit:
    """The converted rows of one split, in order."""

    uids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    mels: list[torch.Tensor] = field(default_factory=list)  # float16 [T_i, n_mels]
    domains: list[int] = field(default_factory=list)
    audio: list[Path] = field(default_factory=list)  # the recordings, for the kept test audio

    def add(self, uid: str, text: str, mel: torch.Tensor, domain: int, audio: Path) -> None:
        self.uids.append(uid)
        self.texts.append(text)
        self.mels.append(mel)
        self.domains.append(domain)
        self.audio.append(audio)

    def __len__(self) -> int:
        return len(self.uids)


@dataclass
class Skipped:
    """What a conversion left out, for the manifest's provenance and the user's summary."""

    too_long: list[str] = field(default_factory=list)  # utterance ids
    bad: dict[str, str] = field(default_factory=dict)  # audio file -> why

    def summary(self, max_seconds: float) -> dict:
        """Counts for the manifest (the long ids, thousands in LibriSpeech, go to
        ``utterances.json`` instead)."""
        return {"max_seconds": max_seconds, "too_long": len(self.too_long), "bad_audio": self.bad}


def check_options(max_seconds: float, test_fraction: float) -> None:
    """Refuse impossible conversion options before any audio is read."""
    ok_number = lambda v: isinstance(v, int | float) and not isinstance(v, bool)  # noqa: E731
    if not ok_number(max_seconds) or not max_seconds > 0:
        raise ConfigError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")
    if not ok_number(test_fraction) or not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be between 0 and 1, got {test_fraction!r}")


def _hash_unit(uid: str, salt: str) -> float:
    """A stable pseudo-random number in [0, 1) for ``uid`` (the same on every machine)."""
    digest = hashlib.sha256(f"{salt}:{uid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def hashed_split(uids: Iterable[str], test_fraction: float) -> set[str]:
    """The ids that go to the test split: those whose hash is below ``test_fraction``, and at
    least one (the id with the smallest hash) so that a small corpus still has a test split."""
    check_options(DEFAULT_MAX_SECONDS, test_fraction)
    scores = {uid: _hash_unit(uid, "split") for uid in uids}
    if len(scores) < 2:
        raise DataError(
            f"a speech corpus needs at least 2 usable utterances (train and test), got {len(scores)}"
        )
    test = {uid for uid, score in scores.items() if score < test_fraction}
    if not test:
        test = {min(scores, key=scores.get)}
    if len(test) == len(scores):  # never leave the train split empty
        test.discard(max(test, key=scores.get))
    return test


def split_by_hash(
    part: SpeechSplit, test_fraction: float, skipped: Skipped, *, name: str, listed: int
) -> dict[str, SpeechSplit]:
    """``part`` cut into "train" and "test" by :func:`hashed_split`, each in ``part``'s order."""
    if len(part) < 2:
        raise DataError(
            f"{name}: only {len(part)} usable utterance(s) of {listed} listed "
            f"({len(skipped.too_long)} longer than max_seconds, {len(skipped.bad)} bad); "
            "need at least 2 for a train and a test split"
        )
    test_ids = hashed_split(part.uids, test_fraction)
    splits = {"train": SpeechSplit(), "test": SpeechSplit()}
    for i, uid in enumerate(part.uids):
        splits["test" if uid in test_ids else "train"].add(
            uid, part.texts[i], part.mels[i], part.domains[i], part.audio[i]
        )
    return splits


def hashed_sample(items: list[Utterance], limit: int | None) -> list[Utterance]:
    """``limit`` utterances picked by a hash of their id (a fixed random sample that does not
    depend on the listing order), in their original order; all of them when ``limit`` is None."""
    if limit is None or limit >= len(items):
        return items
    chosen = set(sorted(items, key=lambda u: _hash_unit(u.uid, "sample"))[:limit])
    return [u for u in items if u in chosen]


def duration_seconds(path: Path, where: str) -> float:
    """Duration from the file header (no decoding); AudioError when the header is unreadable."""
    sf = require("soundfile", "reading speech corpora")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{path} (listed in {where}): not a readable audio file ({exc})") from exc
    return info.frames / info.samplerate if info.samplerate else 0.0


def utterance_mel(utt: Utterance, cfg: MelConfig) -> torch.Tensor:
    """The float16 log-mel [T, n_mels] of one utterance's trimmed audio."""
    try:
        return read_mels(utt.audio, cfg).to(torch.float16)
    except AudioError as exc:
        raise AudioError(f"{exc} (listed in {utt.where})") from exc


def convert(
    utterances: list[Utterance],
    cfg: MelConfig,
    *,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    skip_bad: bool = False,
    skipped: Skipped | None = None,
    progress: bool = True,
    desc: str = "utterances",
) -> SpeechSplit:
    """Convert ``utterances`` (in order) into one split; long and (with ``skip_bad``) bad files
    are left out and recorded in ``skipped``. Labels are assigned when the data set is written."""
    check_options(max_seconds, DEFAULT_TEST_FRACTION)
    skipped = skipped if skipped is not None else Skipped()
    out = SpeechSplit()
    bar = tqdm(utterances, desc=desc, unit="utt", disable=not progress)
    for utt in bar:
        if not utt.audio.is_file():
            raise DataError(f"{utt.audio} is missing (listed in {utt.where})")
        try:
            if duration_seconds(utt.audio, utt.where) > max_seconds:
                skipped.too_long.append(utt.uid)
                continue
            mel = utterance_mel(utt, cfg)
        except AudioError as exc:
            if not skip_bad:
                raise DataError(
                    f"{exc}; pass skip_bad=true (--option skip_bad=true) to skip bad files"
                ) from exc
            warnings.warn(f"skipping {exc}", stacklevel=2)
            skipped.bad[str(utt.audio)] = str(exc)
            continue
        out.add(utt.uid, utt.text, mel, utt.domain, utt.audio)
        bar.set_postfix(long=len(skipped.too_long), bad=len(skipped.bad), refresh=False)
    return out


def encode_flac(wave: np.ndarray, sample_rate: int) -> bytes:
    """16-bit FLAC bytes of a float waveform in [-1, 1] (lossless, about half of WAV's size)."""
    buffer = io.BytesIO()
    sf = require("soundfile", "speech corpora")
    sf.write(buffer, np.clip(wave, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def kept_test_audio(part: SpeechSplit, cfg: MelConfig, progress: bool = True) -> dict[str, bytes]:
    """``audio/test/<row:05d>.flac``: each test row's recording at the data set's rate, trimmed
    as its mel was, as the built-in speech corpus keeps its test audio (real-audio WER, the
    Griffin-Lim ceiling and references for the report are computed from these files)."""
    files = {}
    rows = tqdm(part.audio, desc="test audio", unit="utt", disable=not progress)
    for row, path in enumerate(rows):
        wave = trim_silence(load_audio(path, cfg.sample_rate), cfg)
        files[f"{TEST_AUDIO_DIR}/{row:05d}.flac"] = encode_flac(wave, cfg.sample_rate)
    return files


def write_speech_dataset(
    out: Path,
    *,
    name: str,
    splits: dict[str, SpeechSplit],
    domains: list[str],
    cfg: MelConfig,
    provenance: dict,
    skipped: Skipped,
    max_seconds: float,
    progress: bool = True,
) -> Path:
    """Write the splits as a store data set (text source, speech target); labels number the
    utterances across all splits in split order, ``utterances.json`` maps rows to ids (and
    lists the utterances skipped as too long), and the test split's audio is kept
    (:func:`kept_test_audio`). ``provenance["skipped"]`` gets :meth:`Skipped.summary`."""
    for split, part in splits.items():
        if not len(part):
            raise DataError(
                f"{name}: the {split} split is empty after skipping {len(skipped.too_long)} "
                f"utterances longer than {max_seconds} s and {len(skipped.bad)} bad ones; "
                "raise max_seconds or check the audio"
            )
    provenance = {**provenance, "skipped": skipped.summary(max_seconds)}
    rows, next_label = {}, 0
    for split, part in splits.items():
        labels = torch.arange(next_label, next_label + len(part), dtype=torch.int64)
        next_label += len(part)
        rows[split] = {
            "source": list(part.texts),
            "target": list(part.mels),
            "label": labels,
            "domain": torch.tensor(part.domains, dtype=torch.int64),
        }
    manifest = store.Manifest(
        name=name,
        image_size=0,
        source_channels=0,
        target_channels=cfg.n_mels,
        domains=list(domains),
        source_kind=store.TEXT,
        target_kind="speech",
        audio=cfg.to_dict(),
        provenance=provenance,
    )
    ids = {"splits": {split: part.uids for split, part in splits.items()}}
    ids["too_long"] = skipped.too_long
    extra = {UTTERANCES_FILE: json.dumps(ids, ensure_ascii=False).encode("utf-8")}
    extra.update(kept_test_audio(splits["test"], cfg, progress))
    return store.write_dataset(Path(out), manifest, rows, extra)


def read_utterance_ids(root: Path) -> dict[str, list[str]]:
    """The corpus ids of each split's rows, as :func:`write_speech_dataset` saved them."""
    return json.loads((Path(root) / UTTERANCES_FILE).read_text(encoding="utf-8"))["splits"]


def read_too_long_ids(root: Path) -> list[str]:
    """The ids of the utterances left out for being longer than ``max_seconds``."""
    return json.loads((Path(root) / UTTERANCES_FILE).read_text(encoding="utf-8"))["too_long"]
