"""English sentences from the Debian ``fortunes`` files, cleaned so a speech synthesiser reads
them as written.

The built-in speech corpus needs many short, ordinary English sentences with an unambiguous
reading (the text is the model's source and the transcript a reference ASR is scored against).
Debian's ``fortunes`` package ships ~10,000 quotations, jokes and aphorisms as plain text files
under ``/usr/share/games/fortunes/`` (records separated by lines holding only ``%``; the ``off/``
folder holds the offensive ones, which we skip).

Cleaning, record by record:

1. drop the attribution and everything after it (a line starting with ``--`` or ``- ``, usually
   ``-- Mark Twain``) and lines with control characters (backspace "overstriking" art);
2. join wrapped lines and paragraphs, drop double quotes (not spoken), turn a ``--`` dash into
   a comma (a pause, as a reader would make it) and a run of marks (``!!!``, ``...``) into one;
3. split into sentences after ``.``, ``!`` or ``?`` followed by white space, except after common
   abbreviations (Mr., Dr., e.g., ...);
4. keep a sentence when it starts with a capital letter, ends with ``.``, ``!`` or ``?``, has
   ``MIN_WORDS``..``MAX_WORDS`` words, holds only ASCII letters, spaces and ``.,;:'?!-`` (no
   digits: "1984" has several readings), and has no all-capital word of two or more letters
   (acronyms are spelt out letter by letter, shouting is read as words: either way the text
   would not say how it sounds);
5. deduplicate case-insensitively, keeping the first (files in name order, records in order).

With the bounds below (4-12 words) this yields 11,796 sentences from the 43 files of fortunes
1:1.99.1 (measured with :func:`collect_sentences`; 4-20 words would give 17,544).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from m3dgan.errors import DataError

FORTUNES_DIR = Path("/usr/share/games/fortunes")
MIN_WORDS = 4  # fewer: too little speech to carry a style, and many are headings or fragments
MAX_WORDS = 12  # more: clips past ~5 s, slow to train on a CPU and hard for attention to align
SKIP_DIRS = ("off",)  # offensive fortunes
ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "st",
        "jr",
        "sr",
        "prof",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "mt",
        "gen",
        "col",
        "capt",
        "sgt",
        "lt",
        "rev",
        "hon",
    ]
)
_ALLOWED = re.compile(r"^[A-Za-z .,;:'?!-]+$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ATTRIBUTION = re.compile(r"^\s*(--|-\s|\u2014)")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SHOUTED = re.compile(r"\b[A-Z]{2,}\b")


def fortune_files(root: Path = FORTUNES_DIR) -> list[Path]:
    """The text files of a fortunes folder, in name order (index ``.dat`` files and the
    ``.u8`` copies skipped, as is the ``off/`` folder)."""
    if not root.is_dir():
        raise DataError(
            f"{root} not found: the speech corpus is made from Debian's fortunes files; "
            "install them with `sudo apt-get install fortunes` (scripts/setup.sh does)"
        )
    files = [
        p
        for p in sorted(root.iterdir())
        if p.is_file() and p.suffix not in (".dat", ".u8") and p.name not in SKIP_DIRS
    ]
    if not files:
        raise DataError(f"{root} holds no fortunes files; reinstall the fortunes package")
    return files


def records(text: str) -> Iterator[str]:
    """The fortunes of one file: blocks separated by lines holding only ``%``."""
    block: list[str] = []
    for line in text.splitlines():
        if line.strip() == "%":
            if block:
                yield "\n".join(block)
            block = []
        else:
            block.append(line)
    if block:
        yield "\n".join(block)


def record_text(record: str) -> str:
    """One fortune → one line of prose: attribution dropped, lines joined, quotes removed."""
    kept = []
    for line in record.splitlines():
        if _ATTRIBUTION.match(line):
            break  # the attribution and whatever continues it
        if _CONTROL.search(line):
            return ""  # overstruck or binary art: not prose
        kept.append(line.strip())
    text = " ".join(kept).replace('"', "").replace("--", ", ")
    text = re.sub(r"([!?.])[!?.]+", r"\1", text)  # "!!!!!" or "..." -> one mark
    text = re.sub(r"\s+,", ",", text)
    return re.sub(r"\s+", " ", text).strip()


def split_sentences(text: str) -> list[str]:
    """Split prose after sentence ends, but not after an abbreviation such as ``Mr.``."""
    pieces = _SENTENCE_END.split(text)
    out: list[str] = []
    for piece in pieces:
        last = out[-1].rsplit(" ", 1)[-1].rstrip(".").lower() if out else ""
        if out and out[-1].endswith(".") and last in ABBREVIATIONS:
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return [p.strip() for p in out if p.strip()]


def is_clean(sentence: str, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> bool:
    """True for a sentence that reads one way aloud (see the module docstring, step 4)."""
    words = sentence.split()
    return (
        min_words <= len(words) <= max_words
        and bool(_ALLOWED.match(sentence))
        and sentence[0].isupper()
        and sentence[-1] in ".!?"
        and not _SHOUTED.search(sentence)
        and any(c.isalpha() for c in sentence)
    )


def clean_sentences(
    texts: Iterable[str], min_words: int = MIN_WORDS, max_words: int = MAX_WORDS
) -> list[str]:
    """Every clean sentence of the fortunes files' contents ``texts``, deduplicated
    case-insensitively, in order of first appearance."""
    seen: set[str] = set()
    out: list[str] = []
    for text in texts:
        for record in records(text):
            for sentence in split_sentences(record_text(record)):
                key = sentence.lower()
                if key not in seen and is_clean(sentence, min_words, max_words):
                    seen.add(key)
                    out.append(sentence)
    return out


def collect_sentences(
    root: Path = FORTUNES_DIR, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS
) -> tuple[list[str], list[str]]:
    """(clean sentences, names of the files read) from the fortunes folder ``root``."""
    files = fortune_files(root)
    texts = (p.read_text(encoding="utf-8", errors="replace") for p in files)
    sentences = clean_sentences(texts, min_words, max_words)
    if not sentences:
        raise DataError(f"no clean English sentences found in the fortunes files under {root}")
    return sentences, [p.name for p in files]
