"""Builder for ``speech``: English sentences (text) → the same sentence spoken (mel), four styles.

The offline stand-in for the paper's text→speech task on EMT-4 (four emotions): sentences from
Debian's fortunes files (:mod:`m3dgan.data.builtin.fortunes`, 11,796 clean sentences of 4-12
words), spoken by espeak-ng's ``en-us+klatt5`` voice (:mod:`m3dgan.data.builtin.espeak`) in four
speaking styles that play the role of the emotions (``domain``):

============  =====  =====  =========  ===========  ==========================================
style         pitch  speed  amplitude  pitch range  why
============  =====  =====  =========  ===========  ==========================================
neutral       50     165    100        medium       espeak's defaults, a little slower
cheerful      80     210    100        x-high       high, fast, lively intonation
sad           20     125    70         x-low        low, slow, flat, quieter
soft          55     150    30         low          quiet, calm (a whisper-ish level)
============  =====  =====  =========  ===========  ==========================================

**How well the styles separate.** Measured on 160 random sentences, each rendered in every style
(80 sentences to train, the other 80 to test, so test sentences are unseen): features = mean and
standard deviation over time of the normalised log-mel (160 numbers), standardised;

- logistic regression: 100.0 % on the test sentences' mels; 97.2 % on the same mels after
  mel → Griffin-Lim (32 iterations) → mel (the classifier trained on clean mels; the errors are
  8 of 80 neutral clips called sad); 100.0 % when trained on Griffin-Lim audio as well
  (that variant and the confusion counts come from the first run, not the bench script);
- nearest centroid: 80.6 % on mels, 63.4 % after Griffin-Lim.

Among 8 candidate styles these four tie for the best set: of the 55 four-style sets holding a
neutral style, only one other also scores 100 % on clean mels and 97.2 % after Griffin-Lim, with
a lower nearest-centroid score (76.6 %); one set scores 97.5 % after Griffin-Lim but 99.4 % on
clean mels, with two sad styles and no cheerful one. ``bench/speech_styles.py`` reruns
the measurement (18.5 min on two busy cores; ``bench/results/speech_styles/results.json``). Mean
clip lengths after trimming: neutral 2.7 s, cheerful 2.2 s, sad 3.5 s, soft 3.0 s.

**The full build** (seed 0, fortunes 1:1.99.1, espeak-ng 1.51): 10,983 train rows (one per
sentence; neutral 2,775, cheerful 2,658, sad 2,765, soft 2,785; 223 clips outside 1-6 s dropped,
144 of them cheerful clips of short sentences) and 2,196 test rows (549 sentences x 4 styles; 41
sentences dropped), 8.3 h + 1.7 h of speech; 8.5 min on two cores shared with other work, 2.1 GB
peak memory; 446 MB on disk (train mels 286 MB, test mels 58 MB, test FLACs 102 MB).

**Splits, by sentence.** The sentences are shuffled (seeded); ``TEST_FRACTION`` of them (at least
``MIN_TEST`` for a full build, ``MIN_TEST_LIMITED`` with ``--limit``) go to *test*, where each is
rendered in **all four** styles — parallel content for the content × style grid and for style
accuracy — and the rest to *train*, where each is rendered in **one** style, assigned round-robin
over the shuffled sentences so the styles are balanced. A clip outside ``MIN_SECONDS`` ..
``MAX_SECONDS`` after trimming is dropped (in test, the sentence's four clips are dropped
together); the manifest counts the drops. Rows: ``source`` = the sentence, ``target`` = its mel,
``domain`` = style index, ``label`` = the sentence's index in the cleaned fortunes list (shared
by a test sentence's four rows). The test clips are also kept as 16 kHz FLAC files,
``audio/test/<row:05d>.flac``, for metrics that listen (a reference ASR, a style judge on audio).
"""

from __future__ import annotations

import io
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from m3dgan.audio.config import MelConfig
from m3dgan.audio.mel import wave_to_mel
from m3dgan.data.builtin import espeak, fortunes
from m3dgan.data.builtin.espeak import Style
from m3dgan.data.store import SPEECH, TEXT, Manifest
from m3dgan.errors import DataError
from m3dgan.extras import require  # soundfile: the speech extra, imported when used

NAME = "speech"
NPM_PACKAGES: tuple[str, ...] = ()  # made from Debian packages (espeak-ng, fortunes)
STYLES = (
    Style("neutral", pitch=50, speed=165, amplitude=100, pitch_range="medium"),
    Style("cheerful", pitch=80, speed=210, amplitude=100, pitch_range="x-high"),
    Style("sad", pitch=20, speed=125, amplitude=70, pitch_range="x-low"),
    Style("soft", pitch=55, speed=150, amplitude=30, pitch_range="low"),
)
TEST_FRACTION = 0.05
MIN_TEST = 200  # test sentences in a full build (x4 styles = 800 rows at least)
MIN_TEST_LIMITED = 3  # with --limit: enough for a grid and a smoke test
MIN_SECONDS, MAX_SECONDS = 1.0, 6.0
WORKERS = 2  # espeak-ng processes at a time (the work is mostly in them)
AUDIO_DIR = "audio/test"


@dataclass(frozen=True)
class Clip:
    """One rendered row: its mel (float16 [T, n_mels]), length in seconds, FLAC bytes or b""."""

    mel: torch.Tensor
    seconds: float
    flac: bytes


def audio_file(row: int) -> str:
    """Path of a test row's FLAC inside the data set folder."""
    return f"{AUDIO_DIR}/{row:05d}.flac"


def split_sentences(
    n: int, rng: np.random.Generator, limit: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Sentence indices (train, test): shuffled, capped at ``limit``, ``TEST_FRACTION`` to test."""
    order = rng.permutation(n)
    if limit is not None:
        order = order[:limit]
    if len(order) < 2:
        raise DataError(f"need at least 2 sentences for a train and a test split, got {len(order)}")
    floor = MIN_TEST if limit is None else MIN_TEST_LIMITED
    n_test = min(max(round(TEST_FRACTION * len(order)), floor), len(order) // 2)
    return order[n_test:], order[:n_test]


def flac_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    sf = require("soundfile", "the speech corpus")
    sf.write(buffer, wave, sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def render_clip(text: str, style: Style, cfg: MelConfig, keep_audio: bool) -> Clip:
    """Speak ``text`` in ``style`` and compute its mel (and FLAC bytes when ``keep_audio``)."""
    wave = espeak.render(text, style, cfg)
    mel = wave_to_mel(wave, cfg).to(torch.float16)
    return Clip(
        mel, len(wave) / cfg.sample_rate, flac_bytes(wave, cfg.sample_rate) if keep_audio else b""
    )


def render_all(
    jobs: list[tuple[str, Style, bool]], cfg: MelConfig, progress: bool, workers: int = WORKERS
) -> list[Clip]:
    """Render (text, style, keep_audio) jobs, ``workers`` espeak-ng processes at a time.

    Threads suffice: each job spends its time in the espeak-ng process, soxr and torch's STFT,
    all of which run without holding the GIL."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one STFT per job; the jobs themselves run in parallel
    try:
        with (
            ThreadPoolExecutor(max_workers=workers) as pool,
            tqdm(
                total=len(jobs), desc=f"{NAME}: espeak-ng", unit="clip", disable=not progress
            ) as bar,
        ):
            clips = []
            for clip in pool.map(lambda job: render_clip(job[0], job[1], cfg, job[2]), jobs):
                clips.append(clip)
                bar.update()
            return clips
    finally:
        torch.set_num_threads(torch_threads)


def _fits(clip: Clip) -> bool:
    return MIN_SECONDS <= clip.seconds <= MAX_SECONDS


def _rows(texts: list[str], labels: list[int], clips: list[Clip], styles: list[int]) -> dict:
    return {
        "source": texts,
        "target": [c.mel for c in clips],
        "label": torch.tensor(labels, dtype=torch.int64),
        "domain": torch.tensor(styles, dtype=torch.int64),
    }


def build(
    packages: dict[str, Path],
    *,
    limit: int | None = None,
    seed: int = 0,
    progress: bool = True,
    fortunes_dir: Path = fortunes.FORTUNES_DIR,
) -> tuple[Manifest, dict[str, dict], dict[str, bytes]]:
    """Make the data set in memory: (manifest, splits, test FLAC files); ``limit`` caps the
    sentences (train + test) for quick builds."""
    del packages  # no npm material: espeak-ng and fortunes are Debian packages
    cfg = MelConfig()
    version = espeak.espeak_version()  # fails early, with an install hint, when missing
    sentences, files = fortunes.collect_sentences(fortunes_dir)
    rng = np.random.default_rng(seed)
    train_ids, test_ids = split_sentences(len(sentences), rng, limit)
    train_styles = [i % len(STYLES) for i in range(len(train_ids))]  # round-robin, shuffled ids
    if progress:
        print(
            f"{NAME}: {len(sentences)} clean sentences in {len(files)} fortunes files; "
            f"rendering {len(train_ids)} train sentences x 1 style and {len(test_ids)} test "
            f"sentences x {len(STYLES)} styles"
        )
    jobs = [(sentences[i], STYLES[s], False) for i, s in zip(train_ids, train_styles, strict=True)]
    jobs += [(sentences[i], style, True) for i in test_ids for style in STYLES]
    workers = int(os.environ.get("M3DGAN_SPEECH_WORKERS", WORKERS))
    clips = render_all(jobs, cfg, progress, max(1, workers))
    train_clips, test_clips = clips[: len(train_ids)], clips[len(train_ids) :]

    dropped: Counter[str] = Counter()
    train = ([], [], [], [])  # texts, labels, clips, styles
    for i, s, clip in zip(train_ids, train_styles, train_clips, strict=True):
        if not _fits(clip):
            dropped[f"train/{STYLES[s].name}"] += 1
            continue
        for column, value in zip(train, (sentences[i], int(i), clip, s), strict=True):
            column.append(value)
    test = ([], [], [], [])
    for k, i in enumerate(test_ids):
        group = test_clips[k * len(STYLES) : (k + 1) * len(STYLES)]
        if not all(_fits(c) for c in group):
            dropped["test sentences"] += 1
            continue
        for s, clip in enumerate(group):
            for column, value in zip(test, (sentences[i], int(i), clip, s), strict=True):
                column.append(value)
    if not train[0] or not test[0]:
        raise DataError(
            f"{NAME}: no {'train' if not train[0] else 'test'} clip lasts {MIN_SECONDS}-"
            f"{MAX_SECONDS} s (dropped {dict(dropped)}); use a larger --limit"
        )
    splits = {"train": _rows(*train), "test": _rows(*test)}
    extra = {audio_file(row): clip.flac for row, clip in enumerate(test[2])}
    seconds = {
        split: round(float(sum(c.seconds for c in part[2])), 1)
        for split, part in (("train", train), ("test", test))
    }
    manifest = Manifest(
        name=NAME,
        image_size=0,
        source_channels=0,
        target_channels=cfg.n_mels,
        source_kind=TEXT,
        target_kind=SPEECH,
        domains=[s.name for s in STYLES],
        audio=cfg.to_dict(),
        provenance={
            "description": (
                "English sentences (Debian fortunes) -> espeak-ng speech as normalised log-mels; "
                "domain = speaking style; test sentences in every style, audio in audio/test/"
            ),
            "synthesiser": {"program": version, "voice": espeak.VOICE},
            "styles": [s.to_dict() for s in STYLES],
            "fortunes": {
                "folder": str(fortunes_dir),
                "files": files,
                "licence": "Debian package fortunes (see /usr/share/doc/fortunes/copyright)",
                "min_words": fortunes.MIN_WORDS,
                "max_words": fortunes.MAX_WORDS,
            },
            "sentences": {
                "clean": len(sentences),
                "train": len(set(train[1])),
                "test": len(set(test[1])),
            },
            "clip_seconds": {"min": MIN_SECONDS, "max": MAX_SECONDS, "total": seconds},
            "dropped": dict(dropped),
            "train_rows_per_style": {
                STYLES[s].name: n for s, n in sorted(Counter(train[3]).items())
            },
        },
    )
    return manifest, splits, extra
