"""Reader for the LibriSpeech layout (read English audiobooks, many speakers).

Each published subset archive (``train-clean-100.tar.gz``, ``test-clean.tar.gz``, ...) unpacks
to ``LibriSpeech/<subset>/<speaker>/<chapter>/`` holding ``<speaker>-<chapter>.trans.txt`` (one
line per utterance: ``<speaker>-<chapter>-<nnnn> TRANSCRIPT``, upper case, no punctuation but
apostrophes) and one ``<speaker>-<chapter>-<nnnn>.flac`` (16 kHz mono) per utterance, plus
``LibriSpeech/{README,SPEAKERS,CHAPTERS,BOOKS,LICENSE}.TXT``.

The data set ``librispeech-clean-100``: source = transcript (text), target = speech (mel),
domain = speaker (``manifest.domains`` = the speaker ids, numerically sorted), label =
utterance index. ``train-clean-100`` gives the train split and ``test-clean`` the test split
when it is there; its 40 speakers are not among train-clean-100's 251, so test rows have speaker
domains training never saw (LibriSpeech is split that way on purpose: speaker-independent test).
Without ``test-clean``, a hashed hold-out of the train subset's utterances is the test split.

Utterances longer than ``max_seconds`` (default 10 s) are skipped and counted; LibriSpeech's
utterances run up to ~35 s and average ~12 s, so with the default a large share of
train-clean-100 is left out: raise ``max_seconds`` to keep more (mel memory grows with it).
``limit`` caps the train split's utterances (a fixed hashed sample) and the test split in the
same proportion as the full subsets (at least one). Transcript lines that do not parse, ids that
do not match their folder, and missing FLACs are DataErrors naming the file and line; corrupt
audio too unless ``skip_bad`` (see :mod:`m3dgan.data.formats.utterances`).
"""

from __future__ import annotations

import math
from pathlib import Path

from m3dgan.audio import MelConfig
from m3dgan.data.formats import utterances as utt
from m3dgan.data.textnorm import normalise_text
from m3dgan.errors import DataError

NAME = "librispeech-clean-100"
ARCHIVE_ROOT = "LibriSpeech"
TRAIN_SUBSET = "train-clean-100"
TEST_SUBSET = "test-clean"
TRANS_SUFFIX = ".trans.txt"
TERMS = "LibriSpeech, CC BY 4.0, Panayotov et al. 2015 (https://www.openslr.org/12/)"

Row = tuple[str, str, Path, str, str]  # (utterance id, text, flac, speaker, where)


def find_subset(folder: Path, subset: str) -> Path | None:
    """The ``<subset>`` folder in ``folder``, ``folder/LibriSpeech`` or one level below."""
    folder = Path(folder)
    for candidate in (folder / subset, folder / ARCHIVE_ROOT / subset):
        if candidate.is_dir():
            return candidate
    found = sorted(p for p in folder.glob(f"*/{subset}") if p.is_dir())
    return found[0] if len(found) == 1 else None


def read_transcripts(path: Path, speaker: str, chapter: str) -> list[tuple[str, str, int]]:
    """(utterance id, normalised text, line number) of one ``.trans.txt`` file."""
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not UTF-8 text ({exc.reason})") from exc
    prefix = f"{speaker}-{chapter}-"
    rows, seen = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        uid, _, text = line.strip().partition(" ")
        where = f"{path}, line {number}"
        tail = uid.removeprefix(prefix)
        if not uid.startswith(prefix) or not tail.isdigit():
            raise DataError(
                f"{where}: {uid!r} is not an utterance id of this chapter ({prefix}<number>)"
            )
        text = normalise_text(text)
        if not text:
            raise DataError(f"{where}: utterance {uid} has no transcript")
        if uid in seen:
            raise DataError(f"{where}: utterance {uid} is listed twice")
        seen.add(uid)
        rows.append((uid, text, number))
    if not rows:
        raise DataError(f"{path} lists no utterance")
    return rows


def read_subset(subset_dir: Path) -> tuple[list[Row], int]:
    """Every listed utterance of one subset folder, sorted by (speaker, chapter, number), and
    the number of FLAC files no transcript lists (ignored)."""
    subset_dir = Path(subset_dir)
    transcripts = sorted(subset_dir.glob(f"*/*/*{TRANS_SUFFIX}"))
    if not transcripts:
        raise DataError(
            f"{subset_dir}: no <speaker>/<chapter>/<speaker>-<chapter>{TRANS_SUFFIX} inside "
            "(is this a LibriSpeech subset?)"
        )
    rows: list[Row] = []
    unlisted = 0
    for trans in transcripts:
        chapter_dir = trans.parent
        speaker, chapter = chapter_dir.parent.name, chapter_dir.name
        if trans.name != f"{speaker}-{chapter}{TRANS_SUFFIX}":
            raise DataError(
                f"{trans}: expected {speaker}-{chapter}{TRANS_SUFFIX} in folder {speaker}/{chapter}"
            )
        listed = set()
        for uid, text, number in read_transcripts(trans, speaker, chapter):
            rows.append(
                (uid, text, chapter_dir / f"{uid}.flac", speaker, f"{trans}, line {number}")
            )
            listed.add(f"{uid}.flac")
        unlisted += sum(1 for f in chapter_dir.glob("*.flac") if f.name not in listed)

    def order(row: Row) -> tuple:
        return tuple(int(p) if p.isdigit() else p for p in row[0].split("-"))

    return sorted(rows, key=order), unlisted


def _speaker_order(speaker: str) -> tuple:
    return (0, int(speaker), "") if speaker.isdigit() else (1, 0, speaker)


def _utterances(rows: list[Row], index: dict[str, int]) -> list[utt.Utterance]:
    return [
        utt.Utterance(uid, text, flac, index[spk], where) for uid, text, flac, spk, where in rows
    ]


def convert_folder(
    root: Path,
    out: Path,
    *,
    test_root: Path | None = None,
    name: str = NAME,
    provenance: dict | None = None,
    progress: bool = True,
    limit: int | None = None,
    max_seconds: float = utt.DEFAULT_MAX_SECONDS,
    test_fraction: float = utt.DEFAULT_TEST_FRACTION,
    train_subset: str = TRAIN_SUBSET,
    test_subset: str = TEST_SUBSET,
    skip_bad: bool = False,
) -> Path:
    """Convert a LibriSpeech folder (``root`` holds ``LibriSpeech/<train_subset>`` or the subset
    itself; ``test_root``, default ``root``, may hold ``<test_subset>``) into a data set."""
    utt.check_options(max_seconds, test_fraction)
    train_dir = find_subset(root, train_subset)
    if train_dir is None:
        raise DataError(
            f"{root}: no {train_subset} folder (expected {ARCHIVE_ROOT}/{train_subset}/"
            "<speaker>/<chapter>/; wrong archive?)"
        )
    test_dir = find_subset(test_root if test_root is not None else root, test_subset)
    train_rows, unlisted = read_subset(train_dir)
    test_rows: list[Row] = []
    if test_dir is not None:
        test_rows, unlisted_test = read_subset(test_dir)
        unlisted += unlisted_test
    speakers = sorted({r[3] for r in train_rows + test_rows}, key=_speaker_order)
    index = {speaker: i for i, speaker in enumerate(speakers)}
    train = utt.hashed_sample(_utterances(train_rows, index), limit)
    cfg, skipped = MelConfig(), utt.Skipped()
    convert_opts = dict(max_seconds=max_seconds, skip_bad=skip_bad, skipped=skipped)
    if test_dir is not None:
        test_cap = None
        if limit is not None:
            test_cap = max(1, math.ceil(limit * len(test_rows) / len(train_rows)))
        test = utt.hashed_sample(_utterances(test_rows, index), test_cap)
        train_part = utt.convert(
            train, cfg, **convert_opts, progress=progress, desc=f"{name} {train_subset}"
        )
        test_part = utt.convert(
            test, cfg, **convert_opts, progress=progress, desc=f"{name} {test_subset}"
        )
        splits = {"train": train_part, "test": test_part}
        listed = len(train) + len(test)
        split_origin = {"train": train_subset, "test": test_subset}
    else:
        part = utt.convert(train, cfg, **convert_opts, progress=progress, desc=name)
        splits = utt.split_by_hash(part, test_fraction, skipped, name=name, listed=len(train))
        listed = len(train)
        split_origin = {
            "train": train_subset,
            "test": f"{train_subset}, hash of the utterance id, test fraction {test_fraction}",
        }
    info = {
        "format": "LibriSpeech layout: <subset>/<speaker>/<chapter>/*.trans.txt + *.flac",
        "split_origin": split_origin,
        "domains_are": "speaker ids",
        "limit": limit,
        "listed": listed,
        "unlisted_audio_files": unlisted,
        "terms": TERMS,
        **(provenance if provenance is not None else {"source_folder": str(Path(root).resolve())}),
    }
    return utt.write_speech_dataset(
        out,
        name=name,
        splits=splits,
        domains=speakers,
        cfg=cfg,
        provenance=info,
        skipped=skipped,
        max_seconds=max_seconds,
        progress=progress,
    )


def convert(
    inputs: dict[str, Path],
    out: Path,
    *,
    name: str = NAME,
    provenance: dict,
    progress: bool,
    **options,
) -> Path:
    """The fetch converter: ``inputs["train"]`` and ``inputs["test"]`` are the unpacked
    train-clean-100 and test-clean archives."""
    test_subset = options.get("test_subset", TEST_SUBSET)
    if "test" in inputs and find_subset(inputs["test"], test_subset) is None:
        archive = provenance.get("test", {}).get("archive", inputs["test"])
        raise DataError(
            f"{archive}: no {ARCHIVE_ROOT}/{test_subset} folder inside (wrong archive?)"
        )
    return convert_folder(
        inputs["train"],
        out,
        test_root=inputs.get("test"),
        name=name,
        provenance=provenance,
        progress=progress,
        **options,
    )
