"""Transcripts as the speech metrics score them: one normal form, then word and character errors.

Every recogniser spells a sentence its own way: the fortunes text says ``"Don't panic!"``,
pocketsphinx answers ``don't panic``, the judge ASR only knows lowercase letters, the apostrophe
and the space. Scoring raw strings would count capitals and punctuation as recognition errors,
so every transcript and every reference goes through :func:`normalise_transcript` first (the
judge ASR also trains on that form), and WER/CER are computed on the result with jiwer.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from m3dgan.errors import DataError
from m3dgan.extras import require  # jiwer: the speech extra, imported when used

# Joiners inside a word that a speaker does not pronounce as a pause: "well-known" -> "well known".
_SPACES = re.compile(r"[\s\-\u2010-\u2015/_]+")
_KEEP = re.compile(r"[^a-z0-9' ]")
_QUOTES = re.compile(r"(?<![a-z0-9])'|'(?![a-z0-9])")  # quote marks, not apostrophes in words


def normalise_transcript(text: str) -> str:
    """Lowercase ASCII words separated by single spaces; apostrophes kept only inside words.

    Accents are folded (``café`` -> ``cafe``), curly apostrophes straightened, hyphens, dashes
    and slashes become spaces, every other punctuation mark is removed.
    """
    text = unicodedata.normalize("NFKD", text).replace("\u2019", "'").replace("\u2018", "'")
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = _SPACES.sub(" ", text)
    text = _KEEP.sub("", text)
    text = _QUOTES.sub("", text)
    return " ".join(text.split())


def wer_cer(hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    """Corpus word and character error rates of ``hypotheses`` against ``references``.

    Both sides are normalised with :func:`normalise_transcript`. The rates are corpus rates
    (all edits / all reference words or characters, spaces included for CER), as jiwer computes
    them for lists; they can exceed 1 when a recogniser inserts words. An empty hypothesis is
    allowed (every reference word is then a deletion); an empty reference is a DataError.
    """
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise ValueError("hypotheses and references must be lists of strings, not one string")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not references:
        raise DataError("no transcripts to score")
    refs = [normalise_transcript(r) for r in references]
    hyps = [normalise_transcript(h) for h in hypotheses]
    empty = [i for i, r in enumerate(refs) if not r]
    if empty:
        raise DataError(
            f"reference {empty[0]} ({references[empty[0]]!r}) has no words after normalisation"
        )
    jiwer = require("jiwer", "WER/CER")
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    return {
        "wer": float(words.wer),
        "cer": float(chars.cer),
        "sentences": len(refs),
        "words": int(words.hits + words.substitutions + words.deletions),
        "substitutions": int(words.substitutions),
        "deletions": int(words.deletions),
        "insertions": int(words.insertions),
        "exact": sum(h == r for h, r in zip(hyps, refs, strict=True)) / len(refs),
    }
