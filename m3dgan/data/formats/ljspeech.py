"""Reader for the LJSpeech layout, the layout of most single-speaker TTS corpora.

The published ``LJSpeech-1.1.tar.bz2`` unpacks to ``LJSpeech-1.1/`` holding:

- ``metadata.csv``: one utterance per line, UTF-8, no header, fields separated by ``|``:
  ``<id>|<transcription>|<normalized transcription>`` (the normalized column spells numbers,
  abbreviations and symbols out as they are spoken: "1863" -> "eighteen sixty-three"). Quotes
  are ordinary characters, not CSV quoting;
- ``wavs/<id>.wav``: the recording (LJSpeech: 22,050 Hz mono 16-bit PCM, 1 to 10 s).

Text: the normalized column, falling back to the raw transcription when it is empty or absent
(corpora with only ``<id>|<text>``), in the project's normal form
(:func:`m3dgan.data.textnorm.normalise_text`).

Styles: corpora recorded in several styles or emotions (EMT-4-like ones) often add a column.
``style_column`` names it by its 1-based number; by default (None) the 4th column is the style
when the file has one, and ``style_column=0`` ignores extra columns. The distinct style names,
sorted, become ``manifest.domains`` and each row's domain its style's index; without a style
column every row has domain 0 of the single domain ``"default"``. When the style is in column 3,
column 3 is not read as text.

Conversion (:mod:`m3dgan.data.formats.utterances`): audio at 16 kHz trimmed of edge silence ->
log-mel, utterances longer than ``max_seconds`` skipped and counted, the test split chosen by a
hash of the utterance id (``test_fraction``, default 2 %, at least one utterance). Malformed
metadata lines and missing WAVs are DataErrors naming the file and line; corrupt audio too unless
``skip_bad``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from m3dgan.audio import MelConfig
from m3dgan.data.formats import utterances as utt
from m3dgan.data.textnorm import normalise_text
from m3dgan.errors import ConfigError, DataError

NAME = "ljspeech"
ARCHIVE_ROOT = "LJSpeech-1.1"
METADATA = "metadata.csv"
WAVS = "wavs"
AUTO_STYLE_COLUMN = 4
NO_STYLE_DOMAIN = "default"
TERMS = "LJ Speech 1.1 is in the public domain (https://keithito.com/LJ-Speech-Dataset/)"


@dataclass(frozen=True)
class Entry:
    """One line of metadata.csv."""

    uid: str
    text: str
    style: str | None
    line: int


def find_root(folder: Path) -> Path:
    """The folder holding ``metadata.csv``: ``folder`` itself or the one below it (archives
    unpack to ``LJSpeech-1.1/``); DataError when there is none or several."""
    folder = Path(folder)
    if (folder / METADATA).is_file():
        return folder
    found = sorted(p.parent for p in folder.glob(f"*/{METADATA}"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(
            f"{folder}: no {METADATA} inside (expected the LJSpeech layout: metadata.csv and "
            "wavs/<id>.wav; wrong archive?)"
        )
    raise DataError(f"{folder}: several {METADATA} files ({', '.join(map(str, found))})")


def _check_style_column(style_column: int | None) -> None:
    if style_column is None:
        return
    if isinstance(style_column, bool) or not isinstance(style_column, int) or style_column < 0:
        raise ConfigError(
            f"style_column must be a column number (2 or more; 0 = no style), got {style_column!r}"
        )
    if style_column == 1:
        raise ConfigError("style_column 1 is the utterance id; the style must be another column")


def _safe_id(uid: str) -> bool:
    return bool(uid) and not uid.startswith(".") and not any(c in uid for c in "/\\\0")


def _parse_line(
    fields: list[str], where: str, style_column: int | None, auto_style: bool
) -> tuple[str, str, str | None]:
    """(id, text, style) of one split line; DataError naming ``where`` when malformed."""
    if len(fields) < 2:
        raise DataError(f"{where}: expected id|transcription|normalized transcription, no '|'")
    uid = fields[0].strip()
    if not _safe_id(uid):
        raise DataError(f"{where}: {uid!r} is not a usable utterance id (it names wavs/<id>.wav)")
    column = AUTO_STYLE_COLUMN if auto_style else style_column or 0
    style = None
    if column:
        if len(fields) < column:
            raise DataError(
                f"{where}: no style in column {column} (the line has {len(fields)} columns)"
            )
        style = fields[column - 1].strip()
        if not style:
            raise DataError(f"{where}: the style (column {column}) is empty")
    normalized = fields[2] if len(fields) > 2 and column != 3 else ""
    text = normalise_text(normalized) or normalise_text(fields[1])
    if not text:
        raise DataError(f"{where}: utterance {uid!r} has no transcription")
    return uid, text, style


def read_metadata(path: Path, style_column: int | None = None) -> list[Entry]:
    """The entries of an LJSpeech-style ``metadata.csv`` in file order (see the module doc)."""
    path = Path(path)
    _check_style_column(style_column)
    if not path.is_file():
        raise DataError(f"{path} is missing (is this an LJSpeech-style corpus?)")
    try:
        lines = path.read_bytes().decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not UTF-8 text ({exc.reason})") from exc
    rows = [(number, line.split("|")) for number, line in enumerate(lines, 1) if line.strip()]
    if not rows:
        raise DataError(f"{path} lists no utterance")
    auto_style = style_column is None and any(len(f) >= AUTO_STYLE_COLUMN for _, f in rows)
    entries, seen = [], {}
    for number, fields in rows:
        where = f"{path}, line {number}"
        uid, text, style = _parse_line(fields, where, style_column, auto_style)
        if uid in seen:
            raise DataError(f"{where}: utterance id {uid!r} already on line {seen[uid]}")
        seen[uid] = number
        entries.append(Entry(uid, text, style, number))
    return entries


def read_corpus(
    root: Path, style_column: int | None = None
) -> tuple[list[utt.Utterance], list[str]]:
    """(utterances in metadata order, domain names) of the corpus at ``root``."""
    root = Path(root)
    metadata = root / METADATA
    entries = read_metadata(metadata, style_column)
    styled = entries[0].style is not None
    domains = sorted({e.style for e in entries}) if styled else [NO_STYLE_DOMAIN]
    index = {name: i for i, name in enumerate(domains)}
    rows = [
        utt.Utterance(
            uid=e.uid,
            text=e.text,
            audio=root / WAVS / f"{e.uid}.wav",
            domain=index[e.style] if styled else 0,
            where=f"{metadata}, line {e.line}",
        )
        for e in entries
    ]
    return rows, domains


def convert_folder(
    root: Path,
    out: Path,
    *,
    name: str = NAME,
    provenance: dict | None = None,
    progress: bool = True,
    limit: int | None = None,
    max_seconds: float = utt.DEFAULT_MAX_SECONDS,
    test_fraction: float = utt.DEFAULT_TEST_FRACTION,
    style_column: int | None = None,
    skip_bad: bool = False,
) -> Path:
    """Convert an LJSpeech-layout folder (or the folder above it) into a speech data set."""
    utt.check_options(max_seconds, test_fraction)
    root = find_root(Path(root))
    rows, domains = read_corpus(root, style_column)
    rows = utt.hashed_sample(rows, limit)
    cfg = MelConfig()
    skipped = utt.Skipped()
    part = utt.convert(
        rows,
        cfg,
        max_seconds=max_seconds,
        skip_bad=skip_bad,
        skipped=skipped,
        progress=progress,
        desc=name,
    )
    splits = utt.split_by_hash(part, test_fraction, skipped, name=name, listed=len(rows))
    styled = domains != [NO_STYLE_DOMAIN]
    info = {
        "format": "LJSpeech layout: metadata.csv (id|text|normalized text[|style]) + wavs/<id>.wav",
        "split_origin": f"hash of the utterance id, test fraction {test_fraction}",
        "style_column": style_column if style_column is not None else AUTO_STYLE_COLUMN * styled,
        "limit": limit,
        "listed": len(rows),
        "terms": TERMS if name == NAME else "see the corpus's own licence",
        **(provenance if provenance is not None else {"source_folder": str(root.resolve())}),
    }
    return utt.write_speech_dataset(
        out,
        name=name,
        splits=splits,
        domains=domains,
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
    """The fetch converter: ``inputs["archive"]`` is the unpacked LJSpeech-1.1 archive."""
    return convert_folder(
        inputs["archive"], out, name=name, provenance=provenance, progress=progress, **options
    )
